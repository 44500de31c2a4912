"""The FastAPI application: REST API, dashboard pages, metrics, background jobs."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import pathlib

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from checkgate.csrf import CrossOriginProtection
from server.alerts import AlertFeed
from server.auth import configure_password_hashing
from server.config import ServerConfig
from server.control import ControlService, Signer
from server.ingest import IngestService, OneShotPublisher
from server.jobs import PeriodicJob
from server.metrics import ServerMetrics
from server.store import Store, utcnow

logger = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"


class RetentionJob(PeriodicJob):
    """Clears personal fields of events older than retention_days, every interval."""

    name = "retention"
    run_at_start = True

    def __init__(self, store: Store, days: int, interval_s: float):
        super().__init__(interval_s)
        self.store, self.days = store, days

    def run_once(self) -> int:
        return self.store.purge_personal(utcnow() - dt.timedelta(days=self.days))


def _publisher(config: ServerConfig, ingest: IngestService | None):
    if ingest is not None:
        return lambda topic, payload: ingest.publish(topic, payload, retain=True)
    return OneShotPublisher(config.mqtt).publish


def create_app(config: ServerConfig, store: Store, ingest: IngestService | None = None,
               metrics: ServerMetrics | None = None, run_jobs: bool = True,
               signer: Signer | None = None) -> FastAPI:
    """The app; `signer` defaults to the config's signing_key (raises if it cannot be read)."""
    configure_password_hashing(config.password_hash.time_cost, config.password_hash.memory_kib,
                               config.password_hash.parallelism)
    if signer is None and config.signing_key is not None:
        signer = Signer.from_file(config.signing_key, config.signing_kid)
    metrics = metrics or (ingest.metrics if ingest else ServerMetrics())
    alert_feed = AlertFeed(store)
    if ingest is not None:
        ingest.on_alert = alert_feed.notify  # a stored fever reaches the dashboards without waiting for a poll

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from server.repair import GapRepair

        retention = RetentionJob(store, config.retention_days, config.retention_interval_s)
        repair = None
        if ingest is not None:
            ingest.start()
            if run_jobs and config.ingest.gap_repair_interval_s > 0:
                repair = GapRepair(store, lambda topic, payload: ingest.publish(topic, payload, retain=False),
                                   config.ingest.gap_repair_interval_s)
                repair.start()
        if run_jobs:
            retention.start()
        try:
            yield
        finally:
            if repair is not None:
                repair.stop()
            if run_jobs:
                retention.stop()
            if ingest is not None:
                ingest.stop()
            alert_feed.stop()

    app = FastAPI(title="checkgate server", version="1", lifespan=lifespan,
                  description="Central server of the checkpoint gates: events, statistics, gates, passes, "
                              "status lists and signed control documents.")
    app.state.config = config
    app.state.store = store
    app.state.ingest = ingest
    app.state.metrics = metrics
    app.state.alert_feed = alert_feed
    app.state.control = ControlService(store, signer, _publisher(config, ingest))

    def count_online():
        rows = store.gates()
        return sum(1 for g in rows if g.online), len(rows)

    metrics.add_gate_collector(count_online)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        ok_db = True
        try:
            store.last_event_id()
        except Exception:
            logger.exception("health check: database unavailable")
            ok_db = False
        body = {"ok": ok_db, "database": ok_db,
                "mqtt": None if ingest is None else ingest.connected,
                "queue_depth": None if ingest is None else ingest.queue_depth}
        return JSONResponse(body, status_code=200 if ok_db else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if ingest is not None:
            metrics.queue_depth.set(ingest.queue_depth)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    from server import api, web

    app.include_router(api.router)
    app.include_router(web.router)
    app.add_middleware(CrossOriginProtection, trusted_origins=config.http.trusted_origins)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
