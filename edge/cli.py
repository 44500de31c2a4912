"""`checkgate edge ...`: run the gate daemon, validate its config, read its counters."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import signal
import sys
import threading

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    edge = sub.add_parser("edge", help="the gate daemon", description="The gate daemon and its tools.")
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="ACTION", parser_class=type(edge))
    def usage(args) -> int:
        edge.print_help()
        return 2

    edge.set_defaults(func=usage)

    run = edge_sub.add_parser("run", help="run the gate daemon", description="Run the gate daemon.")
    run.add_argument("--config", required=True, help="the gate's YAML/JSON config file")
    run.add_argument("--validate-config", action="store_true", help="check the config file and exit (0 good, 2 bad)")
    run.set_defaults(func=cmd_run)

    stats = edge_sub.add_parser("stats", help="decided / delivered / pending counts and device states",
                                description="Counters of a gate daemon, read from its data folder.")
    stats.add_argument("--config", required=True, help="the gate's config file")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=cmd_stats)

    voices = edge_sub.add_parser("voices", help="generate the voice prompt files (espeak-ng)",
                                 description="Generate the zh-CN and en prompt audio into the cache folder.")
    voices.add_argument("--config", required=True, help="the gate's config file")
    voices.set_defaults(func=cmd_voices)


def _load(path: str):
    from checkgate.config import load_config_or_report
    from edge.config import EdgeConfig

    return load_config_or_report(EdgeConfig, path, "edge")


def _validate_sections(config) -> str | None:
    """Check the sections that are typed by their own areas (policy, measurement)."""
    from checkgate.config import ConfigError, parse_config

    try:
        from edge.policy import Policy

        parse_config(Policy, config.policy, "policy")
        from drivers.thermometer.measurement import MeasurementConfig

        parse_config(MeasurementConfig, config.thermometer.measurement, "thermometer.measurement")
        from drivers.qr import QrConfig

        parse_config(QrConfig, config.camera.qr, "camera.qr")
    except (ConfigError, ValueError) as err:
        return str(err)
    return None


def cmd_run(args) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    problem = _validate_sections(config)
    if problem:
        print(f"checkgate edge: bad config: {problem}", file=sys.stderr)
        return 2
    if args.validate_config:
        print(f"{args.config}: ok (gate {config.gate_id})")
        return 0
    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)
    from edge.daemon import EdgeDaemon

    base = pathlib.Path(args.config).resolve().parent
    daemon = EdgeDaemon(config, base)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: daemon.pause_visitors())
    server = None
    try:
        daemon.start()
        if config.screen.enabled:
            server = _start_screen(daemon)
        stop.wait()
    finally:
        if server is not None:
            server.should_exit = True
        daemon.stop()
    return 0


def _start_screen(daemon):
    try:
        from edge.screen.app import start_screen_server
    except ModuleNotFoundError:
        logger.info("local screen not installed in this build")
        return None
    return start_screen_server(daemon)


def cmd_stats(args) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    from edge.outbox import Outbox

    base = pathlib.Path(args.config).resolve().parent
    data = config.resolve(base, config.data_dir)
    stats_file = data / "stats.json"
    live = {}
    if stats_file.exists():
        try:
            live = json.loads(stats_file.read_text())
        except ValueError:
            live = {}
    outbox_path = data / "outbox.sqlite3"
    if not outbox_path.exists():
        print(f"checkgate edge: no outbox at {outbox_path} (has the gate run?)", file=sys.stderr)
        return 1
    box = Outbox(outbox_path, config.gate_id)
    s = box.stats()
    box.close()
    out = {"gate_id": config.gate_id, "decided": s["decided"], "delivered": s["decided"] - s["pending"],
           "pending": s["pending"], "last_seq": s["last_seq"],
           "oldest_pending_age_s": s["oldest_pending_age_s"],
           "devices": {k: (live.get("health") or {}).get(k) for k in ("thermometer", "camera", "uplink")},
           "faults": (live.get("health") or {}).get("faults", [])}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:22} {v}")
    return 0


def cmd_voices(args) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    from edge.audio import Voice

    base = pathlib.Path(args.config).resolve().parent
    voice = Voice(config.audio, config.resolve(base, config.data_dir))
    made = voice.prepare(("zh-CN", "en"))
    print(f"{len(made)} prompt files in {voice.cache}")
    return 0 if made else 1
