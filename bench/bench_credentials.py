"""Credentials benchmarks: verifications per second and the cost of a full decide().

- pass: `Verifier.verify()` of a signed pass (base45, CBOR, Ed25519, claims, status list);
  baseline: the bare Ed25519 signature check alone (cryptography).
- DCC ES256 / PS256: `verify_hc1()` of official test certificates (common/CO3, common/CO1)
  through every step incl. JSON schema and value sets; baseline: the bare signature check.
- decide(): a full policy evaluation with anti-passback and household history (40 entries).
- trust lookup scaling: pass verification with 1 and with 10,000 issuer keys in the trust
  list, and DCC verification with 1 and 10,000 signer kids: the ratio should stay ~1.0.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import pathlib
import tempfile

from common import BenchResult, Row, summarize, time_calls

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _pass_setup(n_keys: int):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from edge.credentials import keys, passes
    from edge.credentials.status import StatusList
    from edge.credentials.trust import TrustList
    from edge.credentials.verifier import Verifier

    tmp = tempfile.mkdtemp()
    priv, pub = keys.generate_keypair(tmp, kid="k1")
    key = keys.load_private_key(priv)
    trust = TrustList({"k1": keys.load_public_key(pub)})
    for i in range(n_keys - 1):
        trust.add(f"x{i:06d}", ed25519.Ed25519PrivateKey.generate().public_key())
    now = dt.datetime.now(dt.UTC)
    status = StatusList({f"p_{i}": "red" for i in range(1000)}, version=1, issued_at=now)
    payload = passes.issue_pass(key, "k1", "p_7f3a9c", "resident", zones=["north"], household="h_1",
                                expires=now + dt.timedelta(days=30), window=("06:00", "22:00"))
    return Verifier(trust, status), payload, now, key, trust.get("k1")


def _dcc_setup(case_name: str, extra_kids: int):
    from edge.credentials.dcc import DccTrustStore, Signer, load_schemas, load_valuesets

    case = json.loads((SHARED / "data/dcc/common/2DCode/raw" / f"{case_name}.json").read_text())
    signer = Signer.from_der(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    folder = SHARED / "data" / "dcc"
    store = DccTrustStore([signer], valuesets=load_valuesets(folder / "valuesets"), schemas=load_schemas(folder / "schemas"))
    for _ in range(extra_kids):  # other countries' signers: only the kid index grows
        store.by_kid.setdefault(os.urandom(8), []).append(signer)
    return case["PREFIX"], store, dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"]), signer


def _raw_signature_check(signer, prefix: str):
    """The bare COSE signature verification of a DCC, for the baseline column."""
    import zlib

    import base45
    import cbor2

    from edge.credentials import dcc

    obj = cbor2.loads(zlib.decompress(base45.b45decode(prefix[4:])))
    while isinstance(obj, cbor2.CBORTag):
        obj = obj.value
    protected, _, payload, sig = obj
    alg = cbor2.loads(protected)[1]
    message = cbor2.dumps(["Signature1", protected, b"", payload])
    return lambda: dcc._signature_ok(signer, alg, sig, message)


def run(args) -> BenchResult:
    import logging

    from edge.credentials import passes
    from edge.credentials.dcc import verify_hc1
    from edge.policy import DecisionInputs, PastPass, Policy, decide
    from edge.types import TemperatureResult

    logging.getLogger("edge.credentials").setLevel(logging.ERROR)
    n = 300 if args.quick else 3000
    rows, metrics = [], {}

    verifier, payload, now, key, pub = _pass_setup(1)
    parsed = passes.parse_pass(payload)
    msg = parsed.signed_message()
    base_med, _ = summarize(time_calls(lambda: pub.verify(parsed.signature, msg), n))
    med, p95 = summarize(time_calls(lambda: verifier.verify(payload, now), n))
    rows.append(Row("pass verify", "ms", med, p95, "Ed25519 verify only", base_med, f"{1000 / med:,.0f}/s"))
    metrics["pass_verify_per_s"] = round(1000 / med)
    metrics["pass_verify_ms_median"] = round(med, 4)

    big_verifier, big_payload, big_now, _, _ = _pass_setup(10_000)
    big_med, big_p95 = summarize(time_calls(lambda: big_verifier.verify(big_payload, big_now), n))
    rows.append(Row("pass verify, 10k issuer keys", "ms", big_med, big_p95, "1 key", med, "trust lookup is a dict"))
    metrics["pass_verify_ms_10k_keys"] = round(big_med, 4)

    for alg, case in (("ES256", "CO3"), ("PS256", "CO1")):
        prefix, store, at, signer = _dcc_setup(case, 0)
        assert verify_hc1(prefix, store, at).ok, f"{case} must verify"
        base_med, _ = summarize(time_calls(_raw_signature_check(signer, prefix), n))
        med_dcc, p95_dcc = summarize(time_calls(lambda p=prefix, s=store, a=at: verify_hc1(p, s, a), n))
        rows.append(Row(f"DCC verify {alg} ({case})", "ms", med_dcc, p95_dcc, "signature only", base_med,
                        f"{1000 / med_dcc:,.0f}/s"))
        metrics[f"dcc_{alg.lower()}_verify_per_s"] = round(1000 / med_dcc)
        if alg == "ES256":
            prefix, big_store, at, _ = _dcc_setup(case, 10_000)
            med_big, p95_big = summarize(time_calls(lambda p=prefix, s=big_store, a=at: verify_hc1(p, s, a), n))
            rows.append(Row("DCC verify ES256, 10k signer kids", "ms", med_big, p95_big, "1 kid", med_dcc, ""))
            metrics["dcc_es256_verify_ms_10k_kids"] = round(med_big, 4)

    cred = verifier.verify(payload, now)
    history = tuple(PastPass(f"p_{i % 20}", now - dt.timedelta(minutes=7 * i), "in" if i % 2 else "out",
                             household=f"h_{i % 9 + 10}") for i in range(40))
    policy = Policy(anti_passback_s=120, household_quota={"max_outings": 2, "period_h": 48, "max_out_h": 2},
                    kind_windows={"visitor": ("08:00", "18:00")})
    inputs = DecisionInputs(credentials=(cred,), temperature=TemperatureResult("normal", body_c=36.6),
                            recent_passes=history, zone="north", direction="out")
    decision = decide(inputs, policy, now)
    med, p95 = summarize(time_calls(lambda: decide(inputs, policy, now), n))
    rows.append(Row("decide() full policy", "ms", med, p95, note=f"outcome {decision.outcome}, 40 history entries"))
    metrics["decide_ms_median"] = round(med, 4)
    metrics["decide_ms_p95"] = round(p95, 4)
    return BenchResult(rows=rows, metrics=metrics)
