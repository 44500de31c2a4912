"""`checkgate server ...`: run the central server, migrate its database, manage users.

Heavy imports (SQLAlchemy, FastAPI, uvicorn) stay inside the functions so that
`checkgate --help` stays fast.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2


def register(subparsers) -> None:
    server = subparsers.add_parser("server", help="the central server (MQTT ingest, API, dashboard)")
    sub = server.add_subparsers(dest="server_command", metavar="SUBCOMMAND")
    server.set_defaults(func=lambda args: (server.print_help(), EXIT_USAGE)[1])

    run = sub.add_parser("run", help="run the server: ingest, REST API and dashboard")
    run.add_argument("--config", required=True, help="YAML or JSON config file")
    run.set_defaults(func=cmd_run)

    mig = sub.add_parser("migrate", help="create or upgrade the database schema")
    mig.add_argument("--config", required=True)
    mig.add_argument("--json", action="store_true")
    mig.set_defaults(func=cmd_migrate)

    check = sub.add_parser("check-config", help="validate a config file and print the effective settings")
    check.add_argument("--config", required=True)
    check.set_defaults(func=cmd_check_config)

    user = sub.add_parser("create-user", help="add a dashboard/API user (or reset a password)")
    user.add_argument("--config", required=True)
    user.add_argument("--username", required=True)
    user.add_argument("--role", choices=["admin", "steward"], required=True)
    user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.set_defaults(func=cmd_create_user)

    purge = sub.add_parser("purge", help="run the retention job once (clear personal fields past retention_days)")
    purge.add_argument("--config", required=True)
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(func=cmd_purge)


def _load(path: str):
    from checkgate.config import load_config_or_report
    from server.config import ServerConfig

    return load_config_or_report(ServerConfig, path, "server")


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    shown = config.model_dump(mode="json")
    for secret in ("api_token",):
        if shown.get(secret):
            shown[secret] = "***"
    if shown["mqtt"].get("password"):
        shown["mqtt"]["password"] = "***"
    print(json.dumps(shown, indent=2))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    from server.store import migrate

    version = migrate(config.database_url)
    print(json.dumps({"revision": version}) if args.json else f"database at revision {version}")
    return EXIT_OK


def cmd_create_user(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    from server.auth import UserError, configure_password_hashing, create_user
    from server.store import Store, migrate

    configure_password_hashing(config.password_hash.time_cost, config.password_hash.memory_kib,
                               config.password_hash.parallelism)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    migrate(config.database_url)
    store = Store(config.database_url, timezone=config.timezone)
    try:
        create_user(store, args.username, password, args.role)
        store.audit("cli", "user_saved", args.username, {"role": args.role})
    except UserError as err:
        print(f"checkgate server: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    print(f"user {args.username} ({args.role}) saved")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    from server.app import RetentionJob
    from server.store import Store, migrate

    migrate(config.database_url)
    store = Store(config.database_url, timezone=config.timezone)
    try:
        cleared = RetentionJob(store, config.retention_days, config.retention_interval_s).run_once()
    finally:
        store.close()
    print(json.dumps({"cleared": cleared}) if args.json else f"cleared personal fields of {cleared} events")
    return EXIT_OK


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
                 "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    if config.log_json:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())
    import uvicorn

    from server.app import create_app
    from server.control import Signer
    from server.ingest import IngestService
    from server.store import Store, migrate

    signer = None
    if config.signing_key is not None:
        try:
            signer = Signer.from_file(config.signing_key, config.signing_kid)
        except (OSError, ValueError) as err:
            print(f"checkgate server: bad config: key 'signing_key': {err}", file=sys.stderr)
            return EXIT_USAGE
    migrate(config.database_url)
    store = Store(config.database_url, timezone=config.timezone)
    ingest = IngestService(config, store) if config.ingest_enabled else None
    app = create_app(config, store, ingest, signer=signer)
    logger.info("server on http://%s:%d (database %s)", config.http.host, config.http.port,
                config.database_url.split("@")[-1])
    try:
        # open alert streams (server-sent events) would otherwise hold a shutdown forever
        uvicorn.run(app, host=config.http.host, port=config.http.port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=3)
    finally:
        store.close()
    return EXIT_OK
