"""Prometheus metrics of one server process (its own registry, so tests can run several)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("checkgate_ingest_messages", "MQTT messages received", ["kind"], registry=r)
        self.events_stored = Counter("checkgate_ingest_events_stored", "New events stored", registry=r)
        self.duplicates = Counter("checkgate_ingest_duplicates", "Redelivered events already stored", registry=r)
        self.dead_letters = Counter("checkgate_ingest_dead_letters", "Messages rejected to the dead-letter table",
                                    registry=r)
        self.late_events = Counter("checkgate_ingest_late_events", "Events stored long after the gate decided them",
                                   registry=r)
        self.db_errors = Counter("checkgate_ingest_db_errors", "Failed batch writes (retried)", registry=r)
        self.batch_size = Histogram("checkgate_ingest_batch_size", "Messages per write batch", registry=r,
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
        self.lag = Histogram("checkgate_ingest_lag_seconds", "Stored time minus decided time", registry=r,
                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400))
        self.queue_depth = Gauge("checkgate_ingest_queue_depth", "Messages waiting for the writer", registry=r)
        self.connected = Gauge("checkgate_ingest_connected", "1 while connected to the broker", registry=r)

    def add_gate_collector(self, count_online) -> None:
        """`count_online()` -> (online, total), read at scrape time from the database."""
        self.registry.register(_GateCollector(count_online))


class _GateCollector:
    def __init__(self, count_online) -> None:
        self._count_online = count_online

    def collect(self):
        online = GaugeMetricFamily("checkgate_gates_online", "Gates whose retained state says online")
        known = GaugeMetricFamily("checkgate_gates_known", "Gates the server has heard of")
        try:
            n_online, n_total = self._count_online()
        except Exception:  # a scrape must not fail because the database is briefly unavailable
            logger.exception("gate count for metrics failed")
            return
        online.add_metric([], n_online)
        known.add_metric([], n_total)
        yield online
        yield known
