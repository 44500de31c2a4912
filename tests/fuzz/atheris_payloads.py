#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris / libFuzzer) of the pass and EU DCC parsers.

    .venv/bin/python tests/fuzz/atheris_payloads.py -atheris_runs=200000 [corpus_dir]

Complements fuzz_payloads.py: libFuzzer steers mutations by the branches they reach inside
our parsers (instrumented) instead of mutating blindly. The first input byte picks the
target; the rest is the payload (as QR text for passes and DCCs, raw bytes for signed
documents). Any exception other than a documented rejection, or any accepted input, is
a crash that libFuzzer reports with the input that caused it.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sys
import tempfile

import atheris

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports():
    import base45
    import cbor2

    from edge.credentials import _cbor, dcc, passes, signed
    from edge.credentials.allowlist import AllowList

from edge.credentials import keys  # noqa: E402
from edge.credentials.trust import TrustList  # noqa: E402
from edge.credentials.verifier import Verifier  # noqa: E402

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_tmp = tempfile.mkdtemp()
_priv, _pub = keys.generate_keypair(_tmp, kid="k1")
VERIFIER = Verifier(TrustList({"k1": keys.load_public_key(_pub)}), allowlist=AllowList.from_csv_text("EMP-0001\n"),
                    dcc_trust=dcc.DccTrustStore([], {}, {}))
KEYRING = {"k1": keys.load_public_key(_pub)}
GENUINE_STATUS_BODY = {"subjects": {"p_1": "red"}}
GENUINE: set[tuple] = set()  # (kid, claims, signature) of the seed passes


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    target, body = data[0] % 4, data[1:]
    if target == 0:  # a pass: raw envelope bytes behind the prefix
        result = VERIFIER.verify("CG1:" + base45.b45encode(body).decode(), now=NOW)
    elif target == 1:  # a DCC: raw zlib stream behind the prefix
        result = VERIFIER.verify("HC1:" + base45.b45encode(body).decode(), now=NOW)
    elif target == 2:  # any text the camera could hand over
        result = VERIFIER.verify(body.decode("utf-8", "replace"), now=NOW)
    else:
        try:
            doc = signed.verify_document(body, KEYRING, "status")
        except signed.DocumentRejected:
            return
        if (doc.version, doc.body) != (1, GENUINE_STATUS_BODY):
            raise RuntimeError("an unsigned or forged document was accepted")
        return
    if result.valid:
        # Accepted only if the signed content is exactly a seed's (a re-encoding of a real pass).
        parsed = passes.parse_pass("CG1:" + base45.b45encode(body).decode()) if target == 0 else None
        if parsed is None or (parsed.kid, parsed.claims_bytes, parsed.signature) not in GENUINE:
            raise RuntimeError(f"fuzzed input accepted: {data!r}")
        return
    assert result.reasons


def seed_corpus() -> str:
    """Valid passes, the DCC test cases and a signed document, so mutations start deep."""
    import json

    folder = pathlib.Path(tempfile.mkdtemp(prefix="corpus-"))
    key = keys.load_private_key(_priv)
    seed_pass = passes.issue_pass(key, "k1", "p_1", "resident", zones=["n"], expires=2**32, household="h",
                                  window=("06:00", "22:00"))
    parsed = passes.parse_pass(seed_pass)
    GENUINE.add((parsed.kid, parsed.claims_bytes, parsed.signature))
    seeds = [b"\0" + base45.b45decode(seed_pass[4:]),
             b"\3" + signed.sign_document("status", 1, GENUINE_STATUS_BODY, key, "k1")]
    shared = ROOT.parent / "shared" / "data" / "dcc"
    for path in sorted(shared.glob("*/2DCode/raw/*.json")):
        prefix = json.loads(path.read_text()).get("PREFIX", "")
        try:
            seeds.append(b"\1" + base45.b45decode(prefix[4:]))
        except ValueError:
            seeds.append(b"\2" + prefix.encode())
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:03d}").write_bytes(seed)
    return str(folder)


def main() -> None:
    _ = (cbor2, _cbor, passes)  # instrumented above
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(seed_corpus())
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
