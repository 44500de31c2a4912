"""Signed passes, keys, signed control documents, trust/status lists, allow-list, Verifier."""

from __future__ import annotations

import base64
import datetime as dt
import json

import base45
import cbor2
import pytest

from edge.credentials import keys, passes
from edge.credentials.allowlist import AllowList, pseudonym
from edge.credentials.signed import DocumentRejected, sign_document, verify_document
from edge.credentials.status import StatusList, status_body
from edge.credentials.trust import TrustList, trust_body
from edge.credentials.verifier import Verifier

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    priv_path, pub_path = keys.generate_keypair(folder, kid="k1")
    return keys.load_private_key(priv_path), keys.load_public_key(pub_path), priv_path, pub_path


@pytest.fixture
def trust(issuer):
    return TrustList({"k1": issuer[1]})


def make_pass(issuer, **kw):
    args = dict(subject="p_7f3a9c", kind="resident", zones=["north"], not_before=NOW - dt.timedelta(days=1),
                expires=LATER, household="h_01")
    args.update(kw)
    return passes.issue_pass(issuer[0], "k1", **args)


def status_list(issuer, entries=None, version=3, issued_at=NOW):
    doc = sign_document("status", version, status_body(entries or {}), issuer[0], "k1", issued_at=issued_at)
    return StatusList.from_document(doc, {"k1": issuer[1]})


# --- keys -------------------------------------------------------------------------

def test_keygen_writes_private_and_public_files_with_kid(tmp_path):
    priv, pub = keys.generate_keypair(tmp_path)
    assert "pub" not in priv.name and "pub" in pub.name
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    kid = keys.kid_of_file(pub)
    assert kid == keys.kid_of_file(priv) == keys.key_id(keys.load_public_key(pub))
    assert len(kid) == 16


def test_key_loading_rejects_wrong_files(tmp_path):
    bogus = tmp_path / "x.pem"
    bogus.write_text("not a key")
    with pytest.raises(keys.KeyFileError):
        keys.load_public_key(bogus)
    with pytest.raises(keys.KeyFileError):
        keys.load_private_key(tmp_path / "missing.key")
    with pytest.raises(keys.KeyFileError):
        keys.generate_keypair(tmp_path, kid="bad kid!")


# --- passes -------------------------------------------------------------------------

def test_valid_pass_verifies_with_all_claims(issuer, trust):
    payload = make_pass(issuer, window=("06:00", "22:00"))
    assert payload.startswith("CG1:") and len(payload) < 220
    assert set(payload[4:]) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")  # QR alphanumeric mode
    result = Verifier(trust, status_list(issuer)).verify(payload, now=NOW)
    assert result.valid and result.kind == "pass" and result.reasons == ()
    assert (result.subject, result.pass_kind, result.zones, result.household) == ("p_7f3a9c", "resident", ("north",), "h_01")
    assert result.window == ("06:00", "22:00") and result.health == "green" and result.issuer == "k1"
    assert result.status_version == 3


def test_pass_carries_no_personal_data():
    with pytest.raises(ValueError):
        passes.issue_pass(None, "k1", "Zhang San 330102199001011234", "resident")


def flip_bit(payload: str, bit: int) -> str:
    raw = bytearray(base45.b45decode(payload[4:]))
    raw[bit // 8] ^= 1 << (bit % 8)
    return "CG1:" + base45.b45encode(bytes(raw)).decode()


def test_every_single_bit_flip_is_rejected(issuer, trust):
    payload = make_pass(issuer)
    verifier = Verifier(trust, status_list(issuer))
    n_bits = len(base45.b45decode(payload[4:])) * 8
    reasons = set()
    for bit in range(n_bits):
        result = verifier.verify(flip_bit(payload, bit), now=NOW)
        assert not result.valid, f"bit {bit} flipped still verifies"
        reasons.update(result.reasons)
    assert reasons <= {"bad_signature", "malformed", "unknown_key"}
    assert "bad_signature" in reasons


def test_every_character_substitution_is_rejected(issuer, trust):
    payload = make_pass(issuer)
    verifier = Verifier(trust)
    for i in range(4, len(payload)):
        edited = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:]
        assert not verifier.verify(edited, now=NOW).valid


def test_pass_signed_by_another_key_under_a_trusted_kid_is_bad_signature(issuer, trust, tmp_path):
    other = keys.load_private_key(keys.generate_keypair(tmp_path)[0])
    forged = passes.issue_pass(other, "k1", "p_7f3a9c", "resident", expires=LATER)
    result = Verifier(trust).verify(forged, now=NOW)
    assert not result.valid and result.reasons == ("bad_signature",)


def test_unknown_key_id(issuer, trust):
    payload = passes.issue_pass(issuer[0], "k9", "p_7f3a9c", "resident", expires=LATER)
    result = Verifier(trust).verify(payload, now=NOW)
    assert result.reasons == ("unknown_key",) and result.issuer == "k9"


@pytest.mark.parametrize("at, reason", [(LATER + dt.timedelta(hours=1), "expired"),
                                        (NOW - dt.timedelta(days=2), "not_yet_valid")])
def test_pass_time_checks(issuer, trust, at, reason):
    result = Verifier(trust, status_list(issuer, issued_at=at)).verify(make_pass(issuer), now=at)
    assert not result.valid and result.reasons == (reason,)


def test_small_clock_skew_is_tolerated(issuer, trust):
    verifier = Verifier(trust, skew_s=120)
    assert verifier.verify(make_pass(issuer), now=LATER + dt.timedelta(seconds=60)).valid


@pytest.mark.parametrize("entry, field, value", [("yellow", "health", "yellow"), ("red", "health", "red")])
def test_status_colours_are_reported(issuer, trust, entry, field, value):
    result = Verifier(trust, status_list(issuer, {"p_7f3a9c": entry})).verify(make_pass(issuer), now=NOW)
    assert result.valid and getattr(result, field) == value


def test_revoked_pass_is_invalid(issuer, trust):
    result = Verifier(trust, status_list(issuer, {"p_7f3a9c": "revoked"})).verify(make_pass(issuer), now=NOW)
    assert not result.valid and result.revoked and result.reasons == ("revoked",)


def test_status_list_age_and_staleness_are_reported(issuer, trust):
    old = status_list(issuer, issued_at=NOW - dt.timedelta(hours=30))
    result = Verifier(trust, old, max_status_age_s=24 * 3600).verify(make_pass(issuer), now=NOW)
    assert result.valid and result.list_stale and result.status_age_s == pytest.approx(30 * 3600)
    assert Verifier(trust, None).verify(make_pass(issuer), now=NOW).status_age_s is None


@pytest.mark.parametrize("garbage", ["", "CG1:", "CG1:%%%", "CG1:" + "A" * 5000, "HELLO WORLD", "\x00\xff",
                                     "CG1:" + base45.b45encode(cbor2.dumps([1, 2, 3])).decode(),
                                     "CG1:" + base45.b45encode(cbor2.dumps(["k1", b"x", b"y" * 64]) + b"\0").decode()])
def test_garbage_is_rejected_without_raising(trust, garbage):
    result = Verifier(trust).verify(garbage, now=NOW)
    assert not result.valid and result.reasons


def test_claims_with_extra_unknown_key_are_rejected_even_if_signed(issuer, trust):
    claims = cbor2.dumps({1: "p_1", 2: 1, 99: "x"})
    sig = issuer[0].sign(passes.signing_input("k1", claims))
    payload = "CG1:" + base45.b45encode(cbor2.dumps(["k1", claims, sig])).decode()
    assert Verifier(trust).verify(payload, now=NOW).reasons == ("malformed",)


# --- signed documents ---------------------------------------------------------------

def test_signed_document_roundtrip_and_rejections(issuer, tmp_path):
    keyring = {"k1": issuer[1]}
    doc = sign_document("status", 5, {"subjects": {"a": "red"}}, issuer[0], "k1", issued_at=NOW)
    got = verify_document(doc, keyring, "status", min_version=5)
    assert (got.doc_type, got.version, got.kid, got.body, got.issued_at) == ("status", 5, "k1", {"subjects": {"a": "red"}}, NOW)
    assert got.age_s(NOW + dt.timedelta(minutes=1)) == pytest.approx(60)
    with pytest.raises(DocumentRejected, match="older"):
        verify_document(doc, keyring, "status", min_version=6)
    with pytest.raises(DocumentRejected, match="wrong document type"):
        verify_document(doc, keyring, "trust")
    with pytest.raises(DocumentRejected, match="unknown signing key"):
        verify_document(doc, {"k2": issuer[1]}, "status")
    envelope = json.loads(doc)
    payload = json.loads(base64.urlsafe_b64decode(envelope["payload"] + "=="))
    payload["body"]["subjects"]["a"] = "green"
    envelope["payload"] = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(DocumentRejected, match="bad signature"):
        verify_document(json.dumps(envelope).encode(), keyring, "status")
    with pytest.raises(DocumentRejected, match="unsigned"):
        verify_document(json.dumps({"type": "status", "version": 9, "body": {}}).encode(), keyring, "status")
    for junk in (b"", b"\xff\xfe", b"[]", b'{"format": "checkgate.signed/1", "kid": "k1", "payload": "!!", "sig": "x"}'):
        with pytest.raises(DocumentRejected):
            verify_document(junk, keyring, "status")


def test_trust_list_from_signed_document_rotates_keys(issuer, tmp_path):
    new_priv, new_pub = keys.generate_keypair(tmp_path, kid="k2")
    new_key = keys.load_private_key(new_priv)
    body = trust_body({"k1": issuer[1], "k2": keys.load_public_key(new_pub)})
    doc = sign_document("trust", 2, body, issuer[0], "k1", issued_at=NOW)
    trust = TrustList.from_document(doc, {"k1": issuer[1]}, min_version=1)
    assert set(trust.keys) == {"k1", "k2"} and trust.version == 2
    assert trust.age_s(NOW + dt.timedelta(hours=1)) == pytest.approx(3600)
    assert TrustList({"k1": issuer[1]}).age_s(NOW) is None  # pinned keys never go stale
    payload = passes.issue_pass(new_key, "k2", "p_2", "worker", expires=LATER)
    result = Verifier(trust).verify(payload, now=NOW)
    assert result.valid and result.trust_age_s == pytest.approx(0)


def test_status_list_rejects_unknown_status(issuer):
    doc = sign_document("status", 1, {"subjects": {"a": "purple"}}, issuer[0], "k1")
    with pytest.raises(ValueError, match="unknown status"):
        StatusList.from_document(doc, {"k1": issuer[1]})


# --- allow-list -----------------------------------------------------------------------

def test_allowlist_import_and_verification(tmp_path, trust):
    csv_file = tmp_path / "badges.csv"
    csv_file.write_text("badge_id,subject,kind,zones\nEMP-00017,w_17,worker,north;south\nEMP-00018,,,\n"
                        "bad id!,x,worker,\nEMP-00017,dup,worker,\nEMP-00019,v_1,alien,\n", encoding="utf-8")
    allow = AllowList.from_csv(csv_file)
    assert len(allow) == 2 and [line for line, _ in allow.rejected_rows] == [4, 5, 6]
    verifier = Verifier(trust, StatusList({"w_17": "yellow"}, issued_at=NOW), allowlist=allow)
    worker = verifier.verify("EMP-00017", now=NOW)
    assert worker.valid and worker.kind == "allowlist" and worker.subject == "w_17" and worker.health == "yellow"
    assert worker.zones == ("north", "south")
    anonymous = verifier.verify("EMP-00018", now=NOW)
    assert anonymous.subject == pseudonym("EMP-00018") and "EMP" not in anonymous.subject
    assert verifier.verify("EMP-99999", now=NOW).reasons == ("not_in_allowlist",)
    assert Verifier(trust).verify("EMP-00017", now=NOW).reasons == ("unknown_format",)


# --- CLI with signed lists -------------------------------------------------------------

def test_cli_verify_with_signed_trust_and_status_documents(issuer, tmp_path, capsys):
    from checkgate.cli import main

    _, _, priv_path, pub_path = issuer
    rotated_priv, rotated_pub = keys.generate_keypair(tmp_path / "new", kid="k2")
    trust_doc = tmp_path / "trust.signed"
    trust_doc.write_bytes(sign_document("trust", 3, trust_body({"k2": keys.load_public_key(rotated_pub)}),
                                        issuer[0], "k1"))
    status_doc = tmp_path / "status.signed"
    status_doc.write_bytes(sign_document("status", 8, status_body({"p_y": "yellow", "p_gone": "revoked"}),
                                         issuer[0], "k1"))
    new_key = keys.load_private_key(rotated_priv)
    base = ["verify", "--json", "--trust", str(pub_path), "--trust", str(trust_doc), "--status", str(status_doc)]
    base += ["--at", NOW.isoformat()]
    yellow = passes.issue_pass(new_key, "k2", "p_y", "resident", expires=LATER)
    assert main([*base, yellow]) == 0
    assert json.loads(capsys.readouterr().out)["health"] == "yellow"
    gone = passes.issue_pass(new_key, "k2", "p_gone", "resident", expires=LATER)
    assert main([*base, gone]) == 1
    assert json.loads(capsys.readouterr().out)["reasons"] == ["revoked"]
    # A trust document signed by a key the gate does not pin is refused as bad input.
    forged = tmp_path / "forged.signed"
    forged.write_bytes(sign_document("trust", 4, trust_body({}), new_key, "k2"))
    assert main(["verify", "--trust", str(pub_path), "--trust", str(forged), yellow]) == 2
    assert "unknown signing key" in capsys.readouterr().err


def test_naive_time_is_taken_as_utc(issuer, trust):
    naive = NOW.replace(tzinfo=None)
    result = Verifier(trust, status_list(issuer)).verify(make_pass(issuer), now=naive)
    assert result.valid and result.status_age_s == pytest.approx(0)


def test_a_single_zone_string_is_one_zone(issuer, trust):
    payload = passes.issue_pass(issuer[0], "k1", "p_1", "resident", zones="north", expires=LATER)
    assert Verifier(trust).verify(payload, now=NOW).zones == ("north",)


def test_badge_pseudonyms_can_be_keyed(trust):
    id_card = "330102199001011234"  # an ID-card number used as a badge: must not be recoverable
    plain = AllowList.from_csv_text(id_card + "\n").get(id_card).subject
    keyed = AllowList.from_csv_text(id_card + "\n", key=b"site secret").get(id_card).subject
    assert plain == pseudonym(id_card) and keyed == pseudonym(id_card, b"site secret") and keyed != plain
    assert id_card not in keyed and keyed != pseudonym(id_card, b"other site")


def test_lists_swap_atomically_while_codes_are_verified(issuer, trust):
    """The daemon verifies on its screening thread while the uplink thread swaps in new
    status lists: no errors, and every result comes from one whole list. (The verifier reads
    each list once per verification; a torn read is rare enough that this test is a smoke
    test for it, not a proof.)"""
    import threading

    payload = make_pass(issuer)
    red = StatusList({"p_7f3a9c": "red"}, version=2, issued_at=NOW)
    green = StatusList({}, version=3, issued_at=NOW)
    verifier = Verifier(trust, red)
    stop = threading.Event()
    seen: set[tuple[str, int]] = set()
    errors: list[BaseException] = []

    def screen():
        try:
            while not stop.is_set():
                result = verifier.verify(payload, now=NOW)
                seen.add((result.health, result.status_version))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to expose a torn read
    try:
        threads = [threading.Thread(target=screen) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(2000):
            verifier.set_status(green if i % 2 else red)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert seen <= {("red", 2), ("green", 3)} and seen
