"""Printable pass cards for people without a smartphone.

A CSV of residents becomes a PDF of credit-card-sized cards (10 per A4 page, with cut
marks): the person's name is printed for the volunteer to read, the QR code holds only
the signed pass (pseudonymous subject, kind, zones, dates), never the name.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import pathlib
import secrets

logger = logging.getLogger(__name__)

CARD_W, CARD_H = 85.6, 54.0  # ISO/IEC 7810 ID-1, millimetres
COLS, ROWS = 2, 5
MARGIN_X, MARGIN_Y = (210 - COLS * CARD_W) / 2, (297 - ROWS * CARD_H) / 2
QR_MM = 44.0
KIND_LABELS = {"resident": "居民 Resident", "worker": "工作人员 Worker", "visitor": "访客 Visitor",
               "vehicle": "车辆 Vehicle"}
# A Latin font plus a fallback with Chinese glyphs (Debian: fonts-dejavu-core, fonts-droid-fallback
# or fonts-wqy-microhei); without them the card falls back to a core PDF font (Latin-1 only).
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
               "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")
CJK_FONTS = ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


class CardsError(ValueError):
    pass


def _first_file(candidates) -> str | None:
    return next((c for c in candidates if c and pathlib.Path(c).is_file()), None)


def read_rows(csv_path: str | os.PathLike, default_expires: dt.datetime | None) -> list[dict]:
    from edge.credentials.cli import parse_time

    try:
        text = pathlib.Path(csv_path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CardsError(f"{csv_path}: cannot read: {err}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "name" not in [f.strip() for f in reader.fieldnames]:
        raise CardsError(f"{csv_path}: needs a header row with at least a 'name' column")
    rows = []
    for lineno, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not row.get("name"):
            raise CardsError(f"{csv_path} line {lineno}: empty name")
        try:
            expires = parse_time(row["expires"]) if row.get("expires") else default_expires
        except ValueError:
            raise CardsError(f"{csv_path} line {lineno}: expires {row['expires']!r} is not ISO 8601") from None
        rows.append({"line": lineno, "name": row["name"], "subject": row.get("subject") or "",
                     "kind": row.get("kind") or "resident", "household": row.get("household") or None,
                     "zones": [z for z in (row.get("zones") or "").replace(",", ";").split(";") if z],
                     "expires": expires})
    return rows


def make_cards(csv_path: str | os.PathLike, key_path: str | os.PathLike, out_pdf: str | os.PathLike,
               default_expires: dt.datetime | None = None, title: str = "出入通行证 Pass",
               progress: bool = True, font: str | None = None) -> int:
    """Issue one pass per CSV row and lay the cards out in a PDF; returns the number of cards.

    Rows without a subject get a fresh random pseudonym; the name -> subject mapping is
    written beside the PDF (`<out>.subjects.csv`) for the server's pass registry.
    """
    import segno
    from fpdf import FPDF
    from tqdm import tqdm

    from edge.credentials import keys, passes

    try:
        private_key = keys.load_private_key(key_path)
        kid = keys.kid_of_file(key_path)
    except keys.KeyFileError as err:
        raise CardsError(str(err)) from None
    rows = read_rows(csv_path, default_expires)
    if not rows:
        raise CardsError(f"{csv_path}: no rows")
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title("checkgate pass cards")
    family, font_path = "Helvetica", _first_file([font, *LATIN_FONTS])
    cjk_path = _first_file(CJK_FONTS)
    if font_path:
        pdf.add_font("cardfont", fname=font_path)
        family = "cardfont"
        if cjk_path:
            pdf.add_font("cardcjk", fname=cjk_path)
            pdf.set_fallback_fonts(["cardcjk"])
    else:
        logger.warning("no Unicode font found: names outside Latin-1 will print as '?'")
    mapping = []
    now = dt.datetime.now(dt.UTC)
    for i, row in enumerate(tqdm(rows, desc="cards", unit="card", disable=not progress)):
        subject = row["subject"] or f"p_{secrets.token_hex(5)}"
        try:
            payload = passes.issue_pass(private_key, kid, subject, row["kind"], zones=row["zones"],
                                        expires=row["expires"], household=row["household"], issued_at=now)
        except ValueError as err:
            raise CardsError(f"{csv_path} line {row['line']}: {err}") from None
        mapping.append((row["name"], subject))
        slot = i % (COLS * ROWS)
        if slot == 0:
            pdf.add_page()
            _cut_marks(pdf)
        x = MARGIN_X + (slot % COLS) * CARD_W
        y = MARGIN_Y + (slot // COLS) * CARD_H
        _draw_qr(pdf, segno.make_qr(payload, error="m"), x + CARD_W - QR_MM - 2, y + (CARD_H - QR_MM) / 2, QR_MM)
        text_w = CARD_W - QR_MM - 6
        pdf.set_xy(x + 3, y + 4)
        pdf.set_font(family, size=8)
        pdf.cell(text_w, 4, _printable(title, font_path))
        pdf.set_xy(x + 3, y + 11)
        pdf.set_font(family, size=15)
        pdf.multi_cell(text_w, 7, _printable(row["name"], font_path), max_line_height=7)
        pdf.set_font(family, size=7)
        details = [KIND_LABELS.get(row["kind"], row["kind"]),
                   ("区域 Zones: " + ", ".join(row["zones"])) if row["zones"] else "区域 Zones: all",
                   "有效期至 Until: " + (row["expires"].strftime("%Y-%m-%d") if row["expires"] else "-"),
                   f"ID {subject}"]
        pdf.set_xy(x + 3, y + 31)
        for line in details:
            pdf.set_x(x + 3)
            pdf.cell(text_w, 4, _printable(line, font_path), new_x="LMARGIN", new_y="NEXT")
    out_pdf = pathlib.Path(out_pdf)
    pdf.output(str(out_pdf))
    with open(out_pdf.with_suffix(out_pdf.suffix + ".subjects.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "subject"])
        writer.writerows(mapping)
    logger.info("%d pass cards written to %s (key %s)", len(rows), out_pdf.name, kid)
    return len(rows)


def _draw_qr(pdf, qr, x: float, y: float, size: float, quiet_zone: int = 4) -> None:
    """The QR code as vector rectangles (one per run of dark modules in a row): sharp at
    any printer resolution, and no image to encode and embed per card."""
    matrix = qr.matrix
    module = size / (len(matrix) + 2 * quiet_zone)
    pdf.set_fill_color(0, 0, 0)
    for row_index, row in enumerate(matrix):
        top = y + (row_index + quiet_zone) * module
        start = None
        for col, dark in enumerate([*row, 0]):
            if dark and start is None:
                start = col
            elif not dark and start is not None:
                pdf.rect(x + (start + quiet_zone) * module, top, (col - start) * module, module, style="F")
                start = None


def _printable(text: str, font_path: str | None) -> str:
    """Core PDF fonts only cover Latin-1: without a Unicode font, replace what they cannot show."""
    if font_path:
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def _cut_marks(pdf) -> None:
    pdf.set_draw_color(180, 180, 180)
    pdf.set_line_width(0.1)
    for c in range(COLS + 1):
        x = MARGIN_X + c * CARD_W
        pdf.line(x, MARGIN_Y - 4, x, MARGIN_Y - 1)
        pdf.line(x, MARGIN_Y + ROWS * CARD_H + 1, x, MARGIN_Y + ROWS * CARD_H + 4)
    for r in range(ROWS + 1):
        y = MARGIN_Y + r * CARD_H
        pdf.line(MARGIN_X - 4, y, MARGIN_X - 1, y)
        pdf.line(MARGIN_X + COLS * CARD_W + 1, y, MARGIN_X + COLS * CARD_W + 4, y)
