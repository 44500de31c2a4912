"""`checkgate verify` and `checkgate pass keygen|issue|cards`.

Heavy imports (cryptography, cbor2, image decoders) stay inside the handlers so that
`checkgate --help` does not pay for them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import pathlib
import sys

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="verify one code offline (signed pass, EU DCC, allow-list id)",
                              description="Verify one code offline: a signed pass (CG1:), an EU DCC (HC1:) "
                                          "or an allow-list badge id. Exit 0 valid, 1 invalid, 2 bad input.")
    p.add_argument("payload", nargs="?", help="the code's text (or use --image)")
    p.add_argument("--image", help="decode the code from an image file with the gate's decoding chain")
    p.add_argument("--trust", action="append", default=[], metavar="FILE",
                   help="issuer public key (PEM) or signed trust list; repeatable")
    p.add_argument("--trust-cert", action="append", default=[], metavar="B64DER",
                   help="EU DCC signer certificate, base64 DER; repeatable")
    p.add_argument("--status", metavar="FILE", help="signed status list (verified with the --trust keys)")
    p.add_argument("--allowlist", metavar="CSV", help="allow-list of badge ids")
    p.add_argument("--valuesets", metavar="DIR", help="EU DCC value sets folder (default: the bundled snapshot)")
    p.add_argument("--at", metavar="ISO8601", help="verify as of this time (default: now)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(func=cmd_verify)

    pp = subparsers.add_parser("pass", help="issuer keys, signed passes and printable pass cards")
    sub = pp.add_subparsers(dest="pass_command", metavar="ACTION")
    pp.set_defaults(func=lambda args: (pp.print_help(), EXIT_USAGE)[1])

    k = sub.add_parser("keygen", help="create an issuer key pair (Ed25519)")
    k.add_argument("--out", required=True, metavar="DIR", help="folder for <kid>.key and <kid>.pub.pem")
    k.add_argument("--kid", help="key id (default: derived from the public key)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_keygen)

    i = sub.add_parser("issue", help="issue one signed pass; prints its QR payload last")
    i.add_argument("--key", required=True, metavar="FILE", help="issuer private key")
    i.add_argument("--subject", required=True, help="pseudonymous subject id (never a name)")
    i.add_argument("--kind", required=True, choices=["resident", "worker", "visitor", "vehicle"])
    i.add_argument("--zones", default="", help="comma-separated zones (empty: every zone)")
    i.add_argument("--household", help="pseudonymous household id (for household quotas)")
    i.add_argument("--window", metavar="HH:MM-HH:MM", help="daily time window, gate local time")
    i.add_argument("--not-before", metavar="ISO8601")
    i.add_argument("--expires", metavar="ISO8601")
    i.add_argument("--png", metavar="FILE", help="also write the QR code as a PNG")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_issue)

    c = sub.add_parser("cards", help="printable pass cards (PDF) from a CSV of residents")
    c.add_argument("--csv", required=True, metavar="FILE",
                   help="columns: name, subject, kind, zones (';'), household, expires (header row required)")
    c.add_argument("--key", required=True, metavar="FILE", help="issuer private key")
    c.add_argument("--out", required=True, metavar="FILE.pdf")
    c.add_argument("--expires", metavar="ISO8601", help="default expiry for rows without one")
    c.add_argument("--title", default="出入通行证 Pass", help="heading printed on each card")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_cards)


def parse_time(text: str) -> dt.datetime:
    """ISO 8601; a time without offset is UTC."""
    value = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _usage(message: str) -> int:
    print(f"checkgate: {message}", file=sys.stderr)
    return EXIT_USAGE


def _load_trust(paths: list[str]):
    """PEM keys are pinned; signed trust documents are checked against them."""
    from edge.credentials import keys as keyfiles
    from edge.credentials.trust import TrustList

    pinned, documents = {}, []
    for path in paths:
        data = pathlib.Path(path).read_bytes()
        if b"-----BEGIN" in data:
            pinned[keyfiles.kid_of_file(path)] = keyfiles.load_public_key(path)
        else:
            documents.append((path, data))
    trust = TrustList(pinned, source="files")
    for path, data in documents:
        loaded = TrustList.from_document(data, pinned)
        for kid, key in loaded.keys.items():
            trust.add(kid, key)
        trust.version, trust.issued_at = loaded.version, loaded.issued_at
        logger.info("trust list %s: version %s, %d keys", path, loaded.version, len(loaded))
    return trust


def decode_image_codes(path: str) -> list[str]:
    """The texts of all codes in an image, with the gate's decoding chain where installed."""
    try:
        from drivers.qr import decode_file  # the gate's own chain (drivers area)
    except ImportError:
        decode_file = None
    if decode_file is not None:
        try:
            return [getattr(c, "text", c) for c in decode_file(path)]
        except (TypeError, AttributeError) as err:  # an interface mismatch must not break verify
            logger.warning("drivers.qr.decode_file unusable (%s); using the built-in chain", err)
    from edge.credentials.images import decode_file as fallback

    return fallback(path)


def cmd_verify(args: argparse.Namespace) -> int:
    from edge.credentials.signed import DocumentRejected

    if bool(args.payload) == bool(args.image):
        return _usage("verify: give either PAYLOAD or --image FILE")
    try:
        at = parse_time(args.at) if args.at else dt.datetime.now(dt.UTC)
    except ValueError:
        return _usage(f"verify: --at {args.at!r} is not an ISO 8601 time")
    try:
        verifier = _build_verifier(args)
    except (OSError, ValueError, DocumentRejected) as err:
        return _usage(f"verify: cannot load trust material: {err}")
    if args.image:
        try:
            codes = decode_image_codes(args.image)
        except (OSError, ValueError) as err:
            return _usage(f"verify: cannot read image {args.image}: {err}")
        if not codes:
            _print_result(args, {"valid": False, "kind": None, "subject": None, "reasons": ["no_code"]})
            return EXIT_NEGATIVE
        payload = next((c for c in codes if c.startswith(("CG1:", "HC1:"))), codes[0])
    else:
        payload = args.payload
    result = verifier.verify(payload, now=at)
    out = {"valid": result.valid, "kind": result.kind, "subject": result.subject, "reasons": list(result.reasons),
           "issuer": result.issuer, "pass_kind": result.pass_kind, "health": result.health,
           "zones": list(result.zones), "expires": result.expires, "dcc_type": result.dcc_type}
    _print_result(args, out)
    return EXIT_OK if result.valid else EXIT_NEGATIVE


def _build_verifier(args: argparse.Namespace):
    from edge.credentials.allowlist import AllowList
    from edge.credentials.status import StatusList
    from edge.credentials.verifier import Verifier

    trust = _load_trust(args.trust)
    status = StatusList.from_file(args.status, trust.keys) if args.status else None
    allowlist = AllowList.from_csv(args.allowlist) if args.allowlist else None
    dcc_trust = None
    if args.trust_cert or args.valuesets:
        from edge.credentials.dcc import DccTrustStore

        dcc_trust = DccTrustStore.from_base64_certs(args.trust_cert, valuesets_dir=args.valuesets)
    return Verifier(trust, status, allowlist=allowlist, dcc_trust=dcc_trust)


def _print_result(args: argparse.Namespace, out: dict) -> None:
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return
    from edge.reasons import message

    if out["valid"]:
        print(f"VALID {out['kind']} subject={out['subject']}" + (f" health={out['health']}" if out.get("health") else ""))
    else:
        print(f"INVALID {out['kind']}: " + "; ".join(f"{r} ({message(r, 'en')})" for r in out["reasons"]))


def cmd_keygen(args: argparse.Namespace) -> int:
    from edge.credentials import keys

    try:
        priv, pub = keys.generate_keypair(args.out, kid=args.kid)
    except (OSError, ValueError) as err:
        return _usage(f"pass keygen: {err}")
    kid = keys.kid_of_file(pub)
    if args.json:
        print(json.dumps({"kid": kid, "private_key": str(priv), "public_key": str(pub)}))
    else:
        print(f"key id {kid}\nprivate key {priv} (keep it secret)\npublic key  {pub}")
    return EXIT_OK


def cmd_issue(args: argparse.Namespace) -> int:
    from edge.credentials import keys, passes

    try:
        key = keys.load_private_key(args.key)
        kid = keys.kid_of_file(args.key)
        window = tuple(args.window.split("-")) if args.window else None
        payload = passes.issue_pass(
            key, kid, args.subject, args.kind, zones=[z for z in args.zones.split(",") if z],
            not_before=parse_time(args.not_before) if args.not_before else None,
            expires=parse_time(args.expires) if args.expires else None,
            household=args.household, window=window, issued_at=dt.datetime.now(dt.UTC))
    except (OSError, ValueError) as err:
        return _usage(f"pass issue: {err}")
    if not args.expires:
        print("checkgate: warning: this pass never expires; only the status list can revoke it", file=sys.stderr)
    if args.png:
        import segno

        segno.make_qr(payload, error="m").save(args.png, scale=8, border=4)
    if args.json:
        print(json.dumps({"kid": kid, "subject": args.subject, "chars": len(payload), "payload": payload}))
    print(payload)
    return EXIT_OK


def cmd_cards(args: argparse.Namespace) -> int:
    from edge.credentials import cards

    try:
        count = cards.make_cards(args.csv, args.key, args.out, default_expires=parse_time(args.expires) if args.expires else None,
                                 title=args.title, progress=not args.no_progress)
    except cards.CardsError as err:
        return _usage(f"pass cards: {err}")
    except (OSError, ValueError) as err:
        return _usage(f"pass cards: {err}")
    print(f"{count} cards written to {args.out}", file=sys.stderr)
    return EXIT_OK
