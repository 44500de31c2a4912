"""A small sample of the payload fuzzing (the long run is tests/fuzz/fuzz_payloads.py).

Every parser of untrusted input either returns a rejection with a reason or raises its
documented rejection error: never another exception, never a pass.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import pathlib

import base45
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.credentials import keys, passes
from edge.credentials.allowlist import AllowList
from edge.credentials.dcc import DccTrustStore, verify_hc1
from edge.credentials.signed import DocumentRejected, verify_document
from edge.credentials.trust import TrustList
from edge.credentials.verifier import Verifier

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FUZZ = pathlib.Path(__file__).parent / "fuzz" / "fuzz_payloads.py"
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@pytest.fixture(scope="module")
def verifier(tmp_path_factory):
    priv, pub = keys.generate_keypair(tmp_path_factory.mktemp("k"), kid="k1")
    return Verifier(TrustList({"k1": keys.load_public_key(pub)}), allowlist=AllowList.from_csv_text("EMP-0001\n"),
                    dcc_trust=DccTrustStore([], {}, {}))


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20) | st.binary(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.integers(-300, 10) | st.text(max_size=4),
                                                                      children, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300), st.text(alphabet=B45, max_size=300).map(lambda t: "CG1:" + t),
                      st.text(alphabet=B45, max_size=300).map(lambda t: "HC1:" + t)))
def test_any_text_is_rejected_cleanly(verifier, text):
    result = verifier.verify(text, now=NOW)
    assert not result.valid and result.reasons
    if text.startswith("HC1:"):
        assert result.reasons[0].startswith("dcc_")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=CBOR_VALUES, kid=st.sampled_from(["k1", "k2", 7, None]))
def test_any_cbor_inside_a_pass_envelope_is_rejected(verifier, value, kid):
    bodies = [cbor2.dumps(value), cbor2.dumps([kid, cbor2.dumps(value), b"\0" * 64]),
              cbor2.dumps([kid, value if isinstance(value, bytes) else cbor2.dumps(value), value])]
    for body in bodies:
        result = verifier.verify("CG1:" + base45.b45encode(body).decode(), now=NOW)
        assert not result.valid and result.reasons[0] in {"malformed", "bad_signature", "unknown_key"}


@settings(max_examples=200, deadline=None)
@given(value=CBOR_VALUES, tag=st.sampled_from([None, 18, 61, 98]))
def test_any_cbor_inside_a_dcc_is_rejected(value, tag):
    import zlib

    obj = value if tag is None else cbor2.CBORTag(tag, value)
    payload = "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(obj))).decode()
    result = verify_hc1(payload, DccTrustStore([], {}, {}), NOW)
    assert not result.ok and result.reason.startswith("dcc_")


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_a_signed_document_are_rejected(data):
    with pytest.raises(DocumentRejected):
        verify_document(data, {}, "status")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400))
def test_any_csv_text_loads_without_raising(text):
    allow = AllowList.from_csv_text(text)
    assert all(AllowList.looks_like_badge(b) for b in allow.entries)


def test_issue_parse_roundtrip_never_loses_a_claim(tmp_path):
    priv, _ = keys.generate_keypair(tmp_path, kid="k1")
    key = keys.load_private_key(priv)
    payload = passes.issue_pass(key, "k1", "p_1", "vehicle", zones=["a", "b"], not_before=0, expires=2**33,
                                household="h", window=("23:00", "05:00"))
    claims = passes.parse_claims(passes.parse_pass(payload).claims_bytes)
    assert (claims.kind, claims.zones, claims.not_before, claims.expires, claims.window) == \
        ("vehicle", ("a", "b"), 0, 2**33, ("23:00", "05:00"))


def test_mutation_fuzz_sample(tmp_path, shared_dir):
    """800 mutated inputs per target through the same harness as the long run."""
    spec = importlib.util.spec_from_file_location("fuzz_payloads", FUZZ)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.run(800, seed=3, only=None, shared=shared_dir, workdir=tmp_path)
    assert summary["findings"] == []
    assert summary["total_inputs"] == 800 * 5
