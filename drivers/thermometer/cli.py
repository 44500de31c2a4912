"""`checkgate thermo decode|simulate|read`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .registry import PROTOCOLS

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2


def register(subparsers) -> None:
    thermo = subparsers.add_parser("thermo", help="serial IR thermometers: decode, simulate, read")
    sub = thermo.add_subparsers(dest="thermo_command", metavar="ACTION", parser_class=type(thermo))
    thermo.set_defaults(func=lambda args: (thermo.print_help(), EXIT_USAGE)[1])

    dec = sub.add_parser("decode", help="decode a byte stream (hex argument or raw bytes on stdin)")
    dec.add_argument("--protocol", required=True, choices=PROTOCOLS)
    dec.add_argument("--hex", help="the bytes as hex (spaces and colons allowed); default: raw stdin")
    dec.add_argument("--json", action="store_true", help="one JSON object per frame")
    dec.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="codec option, e.g. slave=2, roi=[8,15,10,21], spot=mean3x3 (repeatable)")
    dec.set_defaults(func=cmd_decode)

    sim = sub.add_parser("simulate", help="a device simulator on a new pseudo-terminal")
    sim.add_argument("--protocol", required=True, choices=PROTOCOLS)
    from .simulator import SCENARIOS  # light: stdlib only

    sim.add_argument("--scenario", choices=sorted(SCENARIOS), help="scripted scene, repeated")
    sim.add_argument("--ambient", type=float, default=24.0, help="ambient temperature °C (default 24)")
    sim.add_argument("--skin", type=float,
                     help="skin temperature °C: of the scenario's visitor, or without a scenario a person who stays")
    sim.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    sim.add_argument("--json", action="store_true", help="print the port as JSON")
    sim.set_defaults(func=cmd_simulate)

    rd = sub.add_parser("read", help="readings from a device or a simulator")
    rd.add_argument("--port", required=True, help="serial device, e.g. /dev/serial0 or /dev/serial/by-id/...")
    rd.add_argument("--protocol", required=True, choices=PROTOCOLS)
    rd.add_argument("--baud", type=int, help="fixed baud rate (default: the device's default, probing alternates)")
    rd.add_argument("--count", type=int, help="stop after N readings")
    rd.add_argument("--timeout", type=float, default=10.0,
                    help="give up (exit 1) when no reading arrives for this many seconds (default 10)")
    rd.add_argument("--json", action="store_true", help="one JSON object per reading")
    rd.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="driver or codec option, e.g. continuous=false, emissivity=0.98 (repeatable)")
    rd.set_defaults(func=cmd_read)


def _parse_options(items: list[str]) -> dict:
    """KEY=VALUE pairs; values are read as JSON where they can be (numbers, lists, true/false)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        options[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return options


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(ch for ch in text if ch not in " :\t\r\n,")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    return bytes.fromhex(cleaned)


def cmd_decode(args: argparse.Namespace) -> int:
    from .registry import make_codec

    if args.hex is not None:
        try:
            data = _parse_hex(args.hex)
        except ValueError as err:
            print(f"thermo decode: --hex is not valid hex: {err}", file=sys.stderr)
            return EXIT_USAGE
    else:
        data = sys.stdin.buffer.read()
    try:
        codec = make_codec(args.protocol, **_parse_options(args.option))
    except (TypeError, ValueError) as err:
        print(f"thermo decode: {err}", file=sys.stderr)
        return EXIT_USAGE
    results = codec.feed(data) + codec.flush()
    good = 0
    for result in results:
        good += result.ok
        if args.json:
            print(json.dumps(result.to_json()))
        elif result.ok:
            fields = result.to_json()
            shown = ", ".join(f"{k}={v}" for k, v in fields.items() if k not in ("ok",) and v is not None)
            print(f"ok     {shown}")
        else:
            print(f"reject {result.cause}: {result.detail} [{result.raw[:24].hex(' ')}]")
    if not args.json:
        rejected = sum(codec.rejected.values())
        print(f"{good} frame(s) decoded, {rejected} rejected", file=sys.stderr)
    return EXIT_OK if good else EXIT_NEGATIVE


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import ThermoSimulator

    sim = ThermoSimulator(args.protocol, args.scenario, scenario_skin_c=args.skin)
    sim.set_ambient(args.ambient)
    if args.skin is not None and args.scenario is None:
        sim.set_person(args.skin)
    sim.start()
    if args.json:
        print(json.dumps({"port": sim.port, "pts": sim.pts, "protocol": args.protocol}), flush=True)
    else:
        print(sim.port, flush=True)
        print(f"(pty {sim.pts}; {args.protocol} at {sim.device.baud} baud; Ctrl-C to stop)", file=sys.stderr)
    try:
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return EXIT_OK


def cmd_read(args: argparse.Namespace) -> int:
    from .reader import open_thermometer

    if args.count is not None and args.count < 1:
        print("thermo read: --count must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        driver = open_thermometer(args.port, args.protocol, args.baud, **_parse_options(args.option))
    except (TypeError, ValueError) as err:
        print(f"thermo read: {err}", file=sys.stderr)
        return EXIT_USAGE
    driver.start()
    got = 0
    try:
        while args.count is None or got < args.count:
            reading = driver.get(timeout=args.timeout)
            if reading is None:
                health = driver.health()
                print(f"thermo read: no reading for {args.timeout:g}s: {health['state']} ({health['detail']})",
                      file=sys.stderr)
                if health["rejected"]:
                    print(f"  rejected frames by cause: {health['rejected']}", file=sys.stderr)
                for item in driver.diagnostics()[-8:]:  # what the wire actually carried
                    print(f"  {item['what']:>20} {item['data'][:96]}", file=sys.stderr)
                return EXIT_NEGATIVE
            got += 1
            if args.json:
                print(json.dumps(reading.to_json()), flush=True)
            else:
                parts = [f"object {_fmt(reading.object_c)}", f"ambient {_fmt(reading.ambient_c)}"]
                if reading.body_c is not None:
                    parts.append(f"body {_fmt(reading.body_c)}")
                print("  ".join(parts), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        driver.stop()
    return EXIT_OK


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} °C"
