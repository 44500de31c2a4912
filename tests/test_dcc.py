"""EU DCC: every case of ../shared/data/dcc agrees with its flags, denied at the flagged step."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import zlib

import base45
import cbor2
import pytest

from checkgate.cli import main
from edge.credentials.dcc import (
    DccTrustStore,
    load_schemas,
    load_valuesets,
    revocation_hash_for_uvci,
    verify_hc1,
)
from edge.credentials.trust import TrustList
from edge.credentials.verifier import Verifier

# The step each EXPECTED flag tests -> the reason codes that mean "denied at that step".
FLAG_REASONS = {
    "EXPECTEDUNPREFIX": {"dcc_prefix"},
    "EXPECTEDB45DECODE": {"dcc_base45"},
    "EXPECTEDCOMPRESSION": {"dcc_zlib"},
    "EXPECTEDDECODE": {"dcc_cose", "dcc_cwt"},
    "EXPECTEDVERIFY": {"dcc_cose", "dcc_kid", "dcc_signature"},
    "EXPECTEDEXPIRATIONCHECK": {"dcc_time"},
    "EXPECTEDSCHEMAVALIDATION": {"dcc_schema", "dcc_value_set"},
    "EXPECTEDVALIDOBJECT": {"dcc_schema", "dcc_cwt"},
    "EXPECTEDVALIDJSON": {"dcc_schema", "dcc_cwt"},
    "EXPECTEDKEYUSAGE": {"dcc_key_usage"},
}


def all_cases(shared):
    return sorted((shared / "data" / "dcc").glob("*/2DCode/raw/*.json"))


def case_id(path) -> str:
    return f"{path.parents[2].name}/{path.stem}"


@functools.cache
def _reference_data(folder):
    return folder, load_valuesets(folder / "valuesets"), load_schemas(folder / "schemas")


@pytest.fixture
def dcc_data(shared_dir):
    return _reference_data(shared_dir / "data" / "dcc")


def store_for(case, dcc_data):
    der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
    from edge.credentials.dcc import Signer

    return DccTrustStore([Signer.from_der(der)], valuesets=dcc_data[1], schemas=dcc_data[2])


def test_every_case_agrees_with_its_flags(shared_dir, dcc_data):
    cases = all_cases(shared_dir)
    assert len(cases) >= 49
    disagree = []
    for path in cases:
        case = json.loads(path.read_text())
        flags = case["EXPECTEDRESULTS"]
        now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
        result = verify_hc1(case["PREFIX"], store_for(case, dcc_data), now)
        # The picture flag concerns the PNG inside the case, not the payload (Q1: its PREFIX is valid).
        failed_flags = [k for k, v in flags.items() if v is False and k != "EXPECTEDPICTUREDECODE"]
        if failed_flags:
            allowed = set().union(*(FLAG_REASONS[f] for f in failed_flags))
            if result.ok or result.reason not in allowed:
                disagree.append((case_id(path), failed_flags, result.reason or "accepted"))
        elif not result.ok:
            disagree.append((case_id(path), "valid", result.reason, result.detail))
    assert not disagree


@pytest.mark.parametrize("name, reason", [("CO5", "dcc_signature"), ("CO16", "dcc_time"), ("CO17", "dcc_time"),
                                          ("CO22", "dcc_kid"), ("Z2", "dcc_zlib"), ("B1", "dcc_base45"),
                                          ("H3", "dcc_prefix"), ("CO6", "dcc_key_usage"), ("DGC2", "dcc_schema")])
def test_negative_cases_name_their_step(shared_dir, dcc_data, name, reason):
    case = json.loads((shared_dir / "data/dcc/common/2DCode/raw" / f"{name}.json").read_text())
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    assert verify_hc1(case["PREFIX"], store_for(case, dcc_data), now).reason == reason


def load_case(shared_dir, rel):
    return json.loads((shared_dir / "data/dcc" / rel).read_text())


def test_time_is_checked_against_the_injected_clock(shared_dir, dcc_data):
    case = load_case(shared_dir, "common/2DCode/raw/CO28.json")
    store = store_for(case, dcc_data)
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    ok = verify_hc1(case["PREFIX"], store, now)
    assert ok.ok and ok.issued_at <= now.timestamp() <= ok.expires
    at = dt.datetime.fromtimestamp
    assert verify_hc1(case["PREFIX"], store, at(ok.expires, dt.UTC)).ok  # inclusive bounds
    assert verify_hc1(case["PREFIX"], store, at(ok.issued_at, dt.UTC)).ok
    assert verify_hc1(case["PREFIX"], store, at(ok.expires + 1, dt.UTC)).reason == "dcc_time"
    assert verify_hc1(case["PREFIX"], store, at(ok.issued_at - 1, dt.UTC)).reason == "dcc_time"


def test_unknown_signer_and_empty_store(shared_dir, dcc_data):
    case = load_case(shared_dir, "common/2DCode/raw/CO3.json")
    other = load_case(shared_dir, "common/2DCode/raw/CO1.json")  # a different DSC
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    assert verify_hc1(case["PREFIX"], store_for(other, dcc_data), now).reason == "dcc_kid"
    assert verify_hc1(case["PREFIX"], DccTrustStore([], {}, {}), now).reason == "dcc_kid"


def test_value_sets_are_data(shared_dir, dcc_data):
    case = load_case(shared_dir, "common/2DCode/raw/DGC6.json")
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
    from edge.credentials.dcc import Signer

    shrunk = dict(dcc_data[1])
    shrunk["co"] = frozenset({"ZZ"})  # a refreshed list without the issuing country
    store = DccTrustStore([Signer.from_der(der)], valuesets=shrunk, schemas=dcc_data[2])
    assert verify_hc1(case["PREFIX"], store, now).reason == "dcc_value_set"


def test_revocation_by_uvci(shared_dir, dcc_data):
    case = load_case(shared_dir, "common/2DCode/raw/DGC6.json")
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    uvci = case["JSON"]["v"][0]["ci"]
    from edge.credentials.dcc import Signer

    store = DccTrustStore([Signer.from_der(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))],
                          valuesets=dcc_data[1], schemas=dcc_data[2], revoked_hashes=[revocation_hash_for_uvci(uvci)])
    assert verify_hc1(case["PREFIX"], store, now).reason == "revoked"


def test_zlib_bomb_is_capped(shared_dir, dcc_data):
    case = load_case(shared_dir, "common/2DCode/raw/CO3.json")
    bomb = "HC1:" + base45.b45encode(zlib.compress(b"\0" * (2 * 1024 * 1024), 9)).decode()
    result = verify_hc1(bomb, store_for(case, dcc_data), dt.datetime.now(dt.UTC))
    assert result.reason == "dcc_zlib" and "beyond" in result.detail


@pytest.mark.parametrize("obj", [cbor2.CBORTag(98, [b"", {}, b"", b""]), [b"", {}, b""], 7, {"a": 1},
                                 cbor2.CBORTag(18, [b"\xa1\x04\x41", {}, b"", b""]),
                                 [b"", {4: "text-kid"}, b"", b""]])
def test_malformed_cose_structures_are_denied(shared_dir, dcc_data, obj):
    case = load_case(shared_dir, "common/2DCode/raw/CO3.json")
    payload = "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(obj))).decode()
    result = verify_hc1(payload, store_for(case, dcc_data), dt.datetime.now(dt.UTC))
    assert not result.ok and result.reason in {"dcc_cose", "dcc_kid"}


def test_verifier_routes_hc1_and_reports_pseudonymous_subject(shared_dir, dcc_data):
    case = load_case(shared_dir, "DE/2DCode/raw/1.json")
    verifier = Verifier(TrustList(), dcc_trust=store_for(case, dcc_data))
    result = verifier.verify(case["PREFIX"], now=dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"]))
    assert result.valid and result.kind == "dcc" and result.dcc_type in {"v", "t", "r"}
    assert result.subject.startswith("dcc_") and "Mustermann".lower() not in result.subject.lower()
    assert Verifier(TrustList()).verify(case["PREFIX"]).reasons == ("dcc_kid",)


IMAGE_CASES = [("AT/png/{}.png", "AT/2DCode/raw/{}.json", n) for n in range(1, 5)] + \
              [("CH/png/{}.png", "CH/2DCode/raw/{}.json", n) for n in range(1, 4)] + \
              [("DE/2DCode/png/{}.png", "DE/2DCode/raw/{}.json", n) for n in range(1, 5)]


@pytest.mark.parametrize("png, raw, n", IMAGE_CASES)
def test_cli_verify_image(shared_dir, capsys, png, raw, n):
    case = load_case(shared_dir, raw.format(n))
    code = main(["verify", "--json", "--trust-cert", case["TESTCTX"]["CERTIFICATE"], "--at",
                 case["TESTCTX"]["VALIDATIONCLOCK"], "--image", str(shared_dir / "data/dcc" / png.format(n))])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["valid"] is True and out["kind"] == "dcc", out


def test_cli_verify_dcc_payload_exit_codes(shared_dir, capsys):
    case = load_case(shared_dir, "common/2DCode/raw/CO5.json")
    args = ["verify", "--json", "--trust-cert", case["TESTCTX"]["CERTIFICATE"], "--at", case["TESTCTX"]["VALIDATIONCLOCK"]]
    assert main([*args, case["PREFIX"]]) == 1
    assert json.loads(capsys.readouterr().out)["reasons"] == ["dcc_signature"]
    assert main([*args[:-2], "--at", "yesterday", case["PREFIX"]]) == 2
    assert main(["verify", "--json", "--trust-cert", "!!notbase64", case["PREFIX"]]) == 2


@pytest.mark.parametrize("form", ["lines", "pem", "json"])
def test_trust_store_file_forms(shared_dir, tmp_path, form):
    case = load_case(shared_dir, "common/2DCode/raw/CO3.json")
    b64 = case["TESTCTX"]["CERTIFICATE"]
    path = tmp_path / "dsc.txt"
    if form == "lines":
        path.write_text(f"# test DSC\n{b64}\n")
    elif form == "pem":
        path.write_text("-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
                        + "\n-----END CERTIFICATE-----\n")
    else:
        path.write_text(json.dumps({"certs": [b64]}))
    store = DccTrustStore.from_file(path)
    assert len(store) == 1 and store.valuesets and store.schemas
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    assert verify_hc1(case["PREFIX"], store, now).ok
    assert verify_hc1(case["PREFIX"], DccTrustStore.with_certs([], like=store), now).reason == "dcc_kid"


def test_dcc_signers_arrive_with_a_signed_trust_list(shared_dir, dcc_data, tmp_path):
    from edge.credentials import keys
    from edge.credentials.signed import sign_document
    from edge.credentials.trust import trust_body

    priv, pub = keys.generate_keypair(tmp_path, kid="centre")
    control = {"centre": keys.load_public_key(pub)}
    case = load_case(shared_dir, "common/2DCode/raw/CO3.json")
    now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
    verifier = Verifier(TrustList(control), dcc_trust=DccTrustStore([], dcc_data[1], dcc_data[2]))
    assert verifier.verify(case["PREFIX"], now=now).reasons == ("dcc_kid",)
    doc = sign_document("trust", 2, trust_body(control, [base64.b64decode(case["TESTCTX"]["CERTIFICATE"])]),
                        keys.load_private_key(priv), "centre", issued_at=now - dt.timedelta(hours=2))
    verifier.set_trust(TrustList.from_document(doc, control))
    result = verifier.verify(case["PREFIX"], now=now)
    assert result.valid and result.trust_age_s == pytest.approx(7200)
    assert verifier.dcc_trust.schemas == dcc_data[2]  # schemas and value sets kept across the swap


def test_embedded_case_images_follow_the_picture_flag(shared_dir, tmp_path, capsys):
    """EXPECTEDPICTUREDECODE concerns the image in the case: readable ones decode to exactly
    the PREFIX (no trimming: base45 has a space); Q1's broken image is bad input, not a verdict."""
    from edge.credentials.images import decode_file

    checked = 0
    for path in all_cases(shared_dir):
        case = json.loads(path.read_text())
        if not case.get("2DCODE"):
            continue
        image = tmp_path / f"{case_id(path).replace('/', '-')}.png"
        image.write_bytes(base64.b64decode(case["2DCODE"]))
        if case["EXPECTEDRESULTS"].get("EXPECTEDPICTUREDECODE") is False:
            assert main(["verify", "--json", "--trust-cert", case["TESTCTX"]["CERTIFICATE"], "--image", str(image)]) == 2
            assert "cannot read image" in capsys.readouterr().err
        else:
            assert decode_file(str(image)) == [case["PREFIX"]]
        checked += 1
    assert checked >= 13


def _country_signer(country: str, now: dt.datetime):
    """A self-made ES256 document signer for `country` (subject C), valid around `now`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from edge.credentials.dcc import Signer

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, f"DSC test {country}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return key, Signer.from_der(cert.public_bytes(serialization.Encoding.DER))


def _hc1(key, kid: bytes, iss: str, dcc: dict, now: dt.datetime) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    protected = cbor2.dumps({1: -7, 4: kid})
    iat = int(now.timestamp()) - 3600
    cwt = cbor2.dumps({1: iss, 6: iat, 4: iat + 30 * 86400, -260: {1: dcc}})
    r, s = decode_dss_signature(key.sign(cbor2.dumps(["Signature1", protected, b"", cwt]), ec.ECDSA(hashes.SHA256())))
    cose = cbor2.CBORTag(18, [protected, {}, cwt, r.to_bytes(32, "big") + s.to_bytes(32, "big")])
    return "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(cose))).decode()


def test_a_signer_cannot_vouch_for_another_countrys_certificate(shared_dir, dcc_data):
    dcc = load_case(shared_dir, "common/2DCode/raw/DGC6.json")["JSON"]
    now = dt.datetime.now(dt.UTC)
    key, signer = _country_signer("DE", now)
    store = DccTrustStore([signer], valuesets=dcc_data[1], schemas=dcc_data[2])
    assert verify_hc1(_hc1(key, signer.kid, "DE", dcc, now), store, now).ok
    forged = verify_hc1(_hc1(key, signer.kid, "FR", dcc, now), store, now)
    assert not forged.ok and forged.reason == "dcc_issuer" and "FR" in forged.detail
