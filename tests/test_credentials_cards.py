"""Printed pass cards: the PDF, rendered to images, verifies at the gate; no name in the code."""

from __future__ import annotations

import csv
import json

import pytest

from checkgate.cli import main
from edge.credentials import cards
from edge.credentials.cli import decode_image_codes as decode_file  # the gate's chain (drivers.qr)


@pytest.fixture
def issuer_files(tmp_path):
    assert main(["pass", "keygen", "--out", str(tmp_path / "keys"), "--kid", "village-1"]) == 0
    return tmp_path / "keys" / "village-1.key", tmp_path / "keys" / "village-1.pub.pem"


def render_cards(pdf_path, out_dir, dpi=150):
    """Rasterise every page and cut it into single cards, as a phone photo of one card would show."""
    import pypdfium2 as pdfium

    scale = dpi / 25.4  # pixels per millimetre
    images = []
    doc = pdfium.PdfDocument(str(pdf_path))
    for page_no in range(len(doc)):
        page = doc[page_no].render(scale=dpi / 72).to_pil()
        for slot in range(cards.COLS * cards.ROWS):
            x = cards.MARGIN_X + (slot % cards.COLS) * cards.CARD_W
            y = cards.MARGIN_Y + (slot // cards.COLS) * cards.CARD_H
            card = page.crop(tuple(round(v * scale) for v in (x, y, x + cards.CARD_W, y + cards.CARD_H)))
            if card.convert("L").getextrema()[0] > 200:  # an empty slot on the last page
                continue
            path = out_dir / f"card-{page_no}-{slot}.png"
            card.save(path)
            images.append(path)
    doc.close()
    return images


def test_cards_pdf_renders_to_images_that_verify(tmp_path, issuer_files, capsys):
    priv, pub = issuer_files
    names = ["张三", "李四", "王小明", "Zhao Liu", "陈 静", "刘洋", "黄磊", "周杰", "吴芳", "徐强", "孙丽", "马超"]
    csv_path = tmp_path / "residents.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "subject", "kind", "zones", "household", "expires"])
        for i, name in enumerate(names):
            writer.writerow([name, f"p_{i:04d}" if i % 3 else "", "resident" if i % 4 else "worker", "north",
                             f"h_{i // 2}", ""])
    pdf_path = tmp_path / "cards.pdf"
    code = main(["pass", "cards", "--csv", str(csv_path), "--key", str(priv), "--out", str(pdf_path),
                 "--expires", "2099-01-01T00:00:00Z", "--no-progress"])
    assert code == 0 and pdf_path.stat().st_size > 0
    mapping = dict(csv.reader(open(f"{pdf_path}.subjects.csv", encoding="utf-8")))
    assert set(mapping) - {"name"} == set(names)
    images = render_cards(pdf_path, tmp_path)
    assert len(images) == len(names)  # 12 cards: two pages
    capsys.readouterr()
    seen = set()
    for image in images:
        texts = decode_file(str(image))
        assert len(texts) == 1 and texts[0].startswith("CG1:")
        assert not any(name.encode() in texts[0].encode() for name in names)
        assert main(["verify", "--json", "--trust", str(pub), "--image", str(image)]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["valid"] and out["kind"] == "pass" and out["zones"] == ["north"]
        seen.add(out["subject"])
    assert seen == set(mapping.values()) - {"subject"}


def test_cards_reject_bad_csv(tmp_path, issuer_files):
    priv, _ = issuer_files
    bad = tmp_path / "bad.csv"
    for content in ("subject,kind\np_1,resident\n", "name,kind\nA,spaceship\n", "name,expires\nA,next week\n"):
        bad.write_text(content, encoding="utf-8")
        assert main(["pass", "cards", "--csv", str(bad), "--key", str(priv), "--out", str(tmp_path / "x.pdf"),
                     "--no-progress"]) == 2
    assert main(["pass", "cards", "--csv", str(tmp_path / "missing.csv"), "--key", str(priv),
                 "--out", str(tmp_path / "x.pdf")]) == 2


def test_issue_png_verifies(tmp_path, issuer_files, capsys):
    priv, pub = issuer_files
    png = tmp_path / "pass.png"
    assert main(["pass", "issue", "--key", str(priv), "--subject", "v_0042", "--kind", "visitor", "--zones", "north,south",
                 "--window", "08:00-18:00", "--expires", "2099-01-01T00:00:00Z", "--png", str(png)]) == 0
    payload = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["verify", "--json", "--trust", str(pub), "--image", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["subject"] == "v_0042" and out["pass_kind"] == "visitor"
    assert main(["verify", "--json", "--trust", str(pub), "--at", "2100-01-01T00:00:00", payload]) == 1
    assert json.loads(capsys.readouterr().out)["reasons"] == ["expired"]
    assert main(["pass", "issue", "--key", str(priv), "--subject", "x y", "--kind", "visitor"]) == 2
    assert main(["verify", "--json", payload]) == 1  # no trust: unknown key, not a crash
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["reasons"] == ["unknown_key"]
    assert main(["verify", "--trust", str(tmp_path / "nope.pem"), payload]) == 2
    assert main(["verify", "--trust", str(pub)]) == 2


def test_verify_allowlist_badge_via_cli(tmp_path, capsys):
    badges = tmp_path / "badges.csv"
    badges.write_text("badge_id,subject,kind,zones\nFAC-0042,w_42,worker,plant-a\n", encoding="utf-8")
    assert main(["verify", "--json", "--allowlist", str(badges), "FAC-0042"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["valid"], out["kind"], out["subject"], out["zones"]) == (True, "allowlist", "w_42", ["plant-a"])
    assert main(["verify", "--json", "--allowlist", str(badges), "FAC-0043"]) == 1
    assert json.loads(capsys.readouterr().out)["reasons"] == ["not_in_allowlist"]
    assert main(["verify", "--allowlist", str(tmp_path / "none.csv"), "FAC-0042"]) == 2
