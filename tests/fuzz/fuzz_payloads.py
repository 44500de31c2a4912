#!/usr/bin/env python3
"""Mutation fuzzing of every payload parser of the credentials area (the long, dedicated run).

    .venv/bin/python tests/fuzz/fuzz_payloads.py [--iterations 100000] [--seed 1] [--only pass,dcc,...]

Not collected by pytest (no test_ prefix); tests/test_credentials_fuzz.py runs a small
sample of the same targets in the normal suite. For each target, valid seeds are
mutated at several layers (the QR text, the decoded bytes re-encoded so they pass
base45, the inner CBOR/zlib layer re-wrapped) and fed to the parser. A finding is:

- any exception escaping a parser that promises not to raise (a crash), or
- a mutated input accepted as valid whose signed content differs from its seed (a pass
  that should not be), or a decision of `pass` on such a credential.

Prints one JSON summary line; exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import pathlib
import random
import sys
import time
import traceback
import zlib

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import base45  # noqa: E402
import cbor2  # noqa: E402

from edge.credentials import keys, passes  # noqa: E402
from edge.credentials.allowlist import AllowList  # noqa: E402
from edge.credentials.dcc import DccTrustStore, Signer, load_schemas, load_valuesets, verify_hc1  # noqa: E402
from edge.credentials.signed import DocumentRejected, sign_document, verify_document  # noqa: E402
from edge.credentials.status import StatusList, status_body  # noqa: E402
from edge.credentials.trust import TrustList, trust_body  # noqa: E402
from edge.credentials.verifier import Verifier  # noqa: E402
from edge.policy import DecisionInputs, Policy, decide  # noqa: E402
from edge.types import TemperatureResult  # noqa: E402

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
INTERESTING = [0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x3f, 0x40, 0x5f, 0x60, 0x7f, 0x80, 0x9f,
               0xa0, 0xbf, 0xc0, 0xd2, 0xd8, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfa, 0xfb, 0xff]
B45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


# --- mutators -------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(10)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:  # flip one bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # random byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2 and buf:  # interesting byte (CBOR heads, lengths, tags)
            buf[rng.randrange(len(buf))] = rng.choice(INTERESTING)
        elif op == 3:  # insert
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        elif op == 4 and buf:  # delete a range
            end = min(len(buf), pos + rng.randrange(1, 16))
            del buf[pos:end]
        elif op == 5 and buf:  # duplicate a range
            end = min(len(buf), pos + rng.randrange(1, 32))
            buf[pos:pos] = buf[pos:end]
        elif op == 6:  # truncate
            del buf[pos:]
        elif op == 7 and pool:  # splice with another seed
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 8 and len(buf) > 4:  # swap two chunks
            a, b = sorted(rng.sample(range(len(buf)), 2))
            n = rng.randrange(1, min(8, len(buf) - b) + 1)
            buf[a:a + n], buf[b:b + n] = buf[b:b + n], buf[a:a + n]
        else:  # append junk
            buf += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    return bytes(buf)


def mutate_text(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.choice((1, 1, 2, 4))):
        op = rng.randrange(5)
        pos = rng.randrange(len(chars) + 1) if chars else 0
        if op == 0 and chars:
            chars[rng.randrange(len(chars))] = rng.choice(B45_ALPHABET)
        elif op == 1:
            chars.insert(pos, rng.choice(B45_ALPHABET + "abc\n\t\u00e9\u4e2d\x00"))
        elif op == 2 and chars:
            del chars[pos:pos + rng.randrange(1, 4)]
        elif op == 3:
            del chars[pos:]
        elif chars:
            chars[rng.randrange(len(chars))] = chr(rng.randrange(0x20, 0x3000))
    return "".join(chars)


def layered(prefix: str, body: bytes, rng: random.Random, pool: list[bytes], inner=None) -> str:
    """Mutate at one of three layers and re-wrap so deeper parsers are reached."""
    layer = rng.randrange(3 if inner else 2)
    if layer == 0:
        return mutate_text(prefix + base45.b45encode(body).decode(), rng)
    if layer == 1:
        return prefix + base45.b45encode(mutate_bytes(body, rng, pool)).decode()
    return prefix + base45.b45encode(inner(rng)).decode()


# --- targets ---------------------------------------------------------------------------

class Finding(Exception):
    pass


class PassTarget:
    name = "pass"

    def __init__(self, rng: random.Random, workdir: pathlib.Path):
        priv, pub = keys.generate_keypair(workdir, kid="k1")
        key = keys.load_private_key(priv)
        self.verifier = Verifier(TrustList({"k1": keys.load_public_key(pub)}),
                                 StatusList({"p_red": "red"}, version=1, issued_at=NOW))
        exp = NOW + dt.timedelta(days=30)
        self.seeds = [
            passes.issue_pass(key, "k1", "p_7f3a9c", "resident", zones=["north"], expires=exp, household="h_1",
                              window=("06:00", "22:00"), not_before=NOW - dt.timedelta(days=1)),
            passes.issue_pass(key, "k1", "p_2", "visitor", expires=exp),
            passes.issue_pass(key, "k1", "p_red", "worker", zones=["a", "b", "c"], expires=exp),
        ]
        self.bodies = [base45.b45decode(s[4:]) for s in self.seeds]
        self.signed = {self._content(s) for s in self.seeds}

    @staticmethod
    def _content(payload: str):
        try:
            parsed = passes.parse_pass(payload)
        except passes.PassRejected:
            return None
        return (parsed.kid, parsed.claims_bytes, parsed.signature)

    def _inner(self, rng: random.Random) -> bytes:
        kid, claims, sig = cbor2.loads(rng.choice(self.bodies))
        which = rng.randrange(3)
        if which == 0:
            claims = mutate_bytes(claims, rng, [])
        elif which == 1:
            sig = mutate_bytes(sig, rng, [])
        else:
            kid = rng.choice(["k1", "k2", "", "k1" * 20, 1, None])
        return cbor2.dumps([kid, claims, sig])

    def one(self, rng: random.Random) -> str:
        i = rng.randrange(len(self.seeds))
        payload = layered("CG1:", self.bodies[i], rng, self.bodies, self._inner)
        result = self.verifier.verify(payload, now=NOW)
        if result.valid and self._content(payload) not in self.signed:
            raise Finding(f"forged pass accepted: {payload!r}")
        decision = decide(DecisionInputs(credentials=(result,), temperature=TemperatureResult("normal"), zone="north"),
                          Policy(require=[["pass"]]), NOW)
        if decision.outcome == "pass" and self._content(payload) not in self.signed:
            raise Finding(f"forged pass decided pass: {payload!r}")
        return "valid" if result.valid else result.reasons[0]


class DccTarget:
    name = "dcc"

    def __init__(self, rng: random.Random, workdir: pathlib.Path, shared: pathlib.Path):
        folder = shared / "data" / "dcc"
        valuesets, schemas = load_valuesets(folder / "valuesets"), load_schemas(folder / "schemas")
        self.cases = []
        for path in sorted(folder.glob("*/2DCode/raw/*.json")):
            case = json.loads(path.read_text())
            store = DccTrustStore([Signer.from_der(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))],
                                  valuesets=valuesets, schemas=schemas)
            now = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"])
            if verify_hc1(case["PREFIX"], store, now).ok:
                cose = zlib.decompress(base45.b45decode(case["PREFIX"][4:]))
                self.cases.append((case["PREFIX"], store, now, cose))
        self.bodies = [base45.b45decode(c[0][4:]) for c in self.cases]
        self.signed = {self._content(c[3]) for c in self.cases}

    @staticmethod
    def _content(cose: bytes):
        try:
            obj = cbor2.loads(cose)
            while isinstance(obj, cbor2.CBORTag):
                obj = obj.value
            return (bytes(obj[0]), bytes(obj[2]), bytes(obj[3]))
        except Exception:
            return None

    def one(self, rng: random.Random) -> str:
        i = rng.randrange(len(self.cases))
        payload_seed, store, now, cose = self.cases[i]
        inner = lambda r: zlib.compress(mutate_bytes(cose, r, [c[3] for c in self.cases]))  # noqa: E731
        payload = layered("HC1:", self.bodies[i], rng, self.bodies, inner)
        result = verify_hc1(payload, store, now)
        if result.ok:
            try:
                content = self._content(zlib.decompress(base45.b45decode(payload[4:])))
            except Exception:
                content = None
            if content not in self.signed:
                raise Finding(f"altered DCC accepted: {payload!r}")
        return "valid" if result.ok else result.reason


class DocumentTarget:
    name = "signed_document"

    def __init__(self, rng: random.Random, workdir: pathlib.Path):
        priv, pub = keys.generate_keypair(workdir / "doc", kid="ctl")
        key = keys.load_private_key(priv)
        self.keyring = {"ctl": keys.load_public_key(pub)}
        self.seeds = [
            sign_document("status", 4, status_body({"p_1": "red", "p_2": "yellow", "p_3": "revoked"}), key, "ctl"),
            sign_document("trust", 2, trust_body(self.keyring), key, "ctl"),
            sign_document("config", 9, {"policy": {"anti_passback_s": 60}}, key, "ctl"),
        ]
        self.contents = {json.dumps(json.loads(base64.urlsafe_b64decode(json.loads(s)["payload"] + "==")),
                                    sort_keys=True) for s in self.seeds}

    def _envelope_mutation(self, rng: random.Random, seed: bytes) -> bytes:
        env = json.loads(seed)
        field = rng.choice(["payload", "sig", "kid", "format"])
        if field in ("payload", "sig"):
            raw = base64.urlsafe_b64decode(env[field] + "==")
            env[field] = base64.urlsafe_b64encode(mutate_bytes(raw, rng, [])).decode().rstrip("=")
        else:
            env[field] = rng.choice([None, 1, "", "ctl2", [], {"a": 1}, env[field] + "x"])
        return json.dumps(env).encode()

    def one(self, rng: random.Random) -> str:
        seed = rng.choice(self.seeds)
        data = self._envelope_mutation(rng, seed) if rng.random() < 0.6 else mutate_bytes(seed, rng, self.seeds)
        for doc_type, loader in (("status", StatusList.from_signed), ("trust", TrustList.from_signed),
                                 ("config", None)):
            try:
                doc = verify_document(data, self.keyring, doc_type)
            except DocumentRejected:
                continue
            content = {"type": doc.doc_type, "version": doc.version, "body": doc.body}
            originals = [json.loads(c) for c in self.contents]
            if not any(o["type"] == content["type"] and o["version"] == content["version"] and o["body"] == content["body"]
                       for o in originals):
                raise Finding(f"altered document accepted: {data!r:.200}")
            if loader is not None:
                try:
                    loader(doc)
                except ValueError:
                    pass
            return "valid"
        return "rejected"


class AllowListTarget:
    name = "allowlist_csv"

    def __init__(self, rng: random.Random, workdir: pathlib.Path):
        self.seed = b"badge_id,subject,kind,zones\nEMP-0001,w_1,worker,north;south\nEMP-0002,,,\n"

    def one(self, rng: random.Random) -> str:
        data = mutate_bytes(self.seed, rng, [self.seed])
        text = data.decode("utf-8", "replace")
        allow = AllowList.from_csv_text(text)
        for badge, entry in allow.entries.items():
            if not AllowList.looks_like_badge(badge) or entry.kind not in ("resident", "worker", "visitor", "vehicle"):
                raise Finding(f"bad allow-list entry accepted: {badge!r} {entry!r}")
        verifier = Verifier(TrustList(), allowlist=allow)
        probe = mutate_text("EMP-0001", rng)
        result = verifier.verify(probe, now=NOW)
        if result.valid and probe.strip() not in allow.entries:  # scanners add whitespace: stripped on purpose
            raise Finding(f"unlisted badge accepted: {probe!r}")
        return "parsed"


class PolicyTarget:
    name = "policy_config"

    def __init__(self, rng: random.Random, workdir: pathlib.Path):
        self.seed = {"require": [["pass", "temperature"], ["dcc", "temperature"]], "anti_passback_s": 60,
                     "kind_windows": {"visitor": ["08:00", "18:00"]}, "household_quota": {"max_outings": 1},
                     "fault_outcomes": {"camera_stalled": "deny"}, "stale_outcome": "manual"}
        self.values = [None, True, 0, -1, 1e308, "pass", "", "25:00", [], [[]], [["mask"]], [["pass", "mask"]],
                       {"fever": "pass"}, {"camera_stalled": "pass"}, {"camera_stalled": "ignore"}, ["purple"],
                       {"visitor": ["23:00", "01:00"]}, {"max_outings": 0}, "Asia/Shanghai", "Nowhere/Else",
                       [["code", "code", "code"]], {"silent": "retry"}, {"fever": "manual"}]

    def one(self, rng: random.Random) -> str:
        from checkgate.config import ConfigError, parse_config

        if rng.random() < 0.3:  # byte-level: the YAML/JSON file itself damaged
            text = json.dumps(self.seed).encode()
            try:
                obj = json.loads(mutate_bytes(text, rng, [text]))
            except (ValueError, RecursionError):
                return "not_json"
        else:  # structural: plausible keys with wrong or hostile values
            obj = json.loads(json.dumps(self.seed))
            for _ in range(rng.randrange(1, 4)):
                key = rng.choice([*self.seed, "temperature_outcomes", "accepted_statuses", "max_status_age_s",
                                  "default_fault_outcome", "missing_credential_outcome", "attended", "timezone",
                                  "bogus_key"])
                obj[key] = rng.choice(self.values)
        try:
            policy = parse_config(Policy, obj)
        except ConfigError:
            return "rejected"
        # Whatever a config says, a fault and a fever never pass.
        for inputs in (DecisionInputs(faults=frozenset({"camera_stalled"}), temperature=TemperatureResult("normal")),
                       DecisionInputs(temperature=TemperatureResult("fever"))):
            if decide(inputs, policy, NOW).outcome == "pass":
                raise Finding(f"policy lets a fault/fever pass: {obj!r:.200}")
        return "accepted"


def build_targets(rng: random.Random, workdir: pathlib.Path, shared: pathlib.Path) -> list:
    return [PassTarget(rng, workdir), DccTarget(rng, workdir, shared), DocumentTarget(rng, workdir),
            AllowListTarget(rng, workdir), PolicyTarget(rng, workdir)]


def run(iterations: int, seed: int, only: set[str] | None, shared: pathlib.Path, workdir: pathlib.Path,
        max_findings: int = 5) -> dict:
    import logging

    logging.disable(logging.WARNING)  # rejected inputs log at INFO/WARNING; keep the run quiet
    try:
        return _run(iterations, seed, only, shared, workdir, max_findings)
    finally:
        logging.disable(logging.NOTSET)  # the caller's logging (e.g. the rest of a test session) as it was


def _run(iterations: int, seed: int, only: set[str] | None, shared: pathlib.Path, workdir: pathlib.Path,
         max_findings: int) -> dict:
    rng = random.Random(seed)
    summary: dict = {"seed": seed, "iterations_per_target": iterations, "targets": {}, "findings": []}
    for target in build_targets(rng, workdir, shared):
        if only and target.name not in only:
            continue
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        for _ in range(iterations):
            try:
                outcome = target.one(rng)
            except Finding as finding:
                summary["findings"].append({"target": target.name, "finding": str(finding)[:500]})
                outcome = "FINDING"
            except Exception as err:  # a crash: the parser promised not to raise
                summary["findings"].append({"target": target.name, "crash": repr(err)[:300],
                                            "trace": traceback.format_exc()[-800:]})
                outcome = "CRASH"
            counts[outcome] = counts.get(outcome, 0) + 1
            if len(summary["findings"]) >= max_findings:
                break
        elapsed = time.perf_counter() - t0
        summary["targets"][target.name] = {"inputs": sum(counts.values()), "seconds": round(elapsed, 1),
                                           "per_second": round(sum(counts.values()) / elapsed), "outcomes": counts}
    summary["total_inputs"] = sum(t["inputs"] for t in summary["targets"].values())
    return summary


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="comma-separated targets: pass, dcc, signed_document, allowlist_csv, policy_config")
    args = parser.parse_args(argv)
    shared = ROOT.parent / "shared"
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(args.iterations, args.seed, set(args.only.split(",")) if args.only else None, shared,
                      pathlib.Path(tmp))
    print(json.dumps(summary, ensure_ascii=False))
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
