"""The central server's configuration (one YAML/JSON file, unknown keys rejected)."""

from __future__ import annotations

import logging
import pathlib
from typing import Literal

from pydantic import Field, field_validator

from checkgate.config import StrictModel, known_timezone

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///checkgate-server.sqlite3"


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca: pathlib.Path | None = None
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    tls_insecure: bool = False
    # Fixed and unique per server instance: the broker keeps this session's queue
    # while the server restarts. Two instances must not share it.
    client_id: str = Field("checkgate-server", min_length=1, max_length=64)
    # Instances with the same group split the gates' events between them.
    share_group: str | None = Field("checkgate-ingest", pattern=r"^[A-Za-z0-9_-]+$")
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)  # MQTT 5 only
    # MQTT 5: clean start off and a session expiry, so the broker drops a decommissioned
    # server's queue by itself. "3.1.1" costs paho less CPU per message (no v5 property
    # objects: 9,669 vs 9,978-10,920 events/s end to end into PostgreSQL, docs/benchmarks.md);
    # its persistent session then lives as long as the broker's persistent_client_expiration
    # (`checkgate provision broker` sets it).
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)


class HttpConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Cookie `Secure` flag: turn on behind HTTPS.
    secure_cookies: bool = False
    # Origins (scheme://host[:port]) whose browsers may post to this server besides its own
    # Host: needed only behind a reverse proxy that rewrites the Host header.
    trusted_origins: list[str] = []


class IngestConfig(StrictModel):
    batch_size: int = Field(1000, ge=1, le=20000)
    # How long the writer waits to fill a batch once it has at least one message.
    batch_wait_ms: int = Field(20, ge=0, le=5000)
    queue_size: int = Field(50000, ge=100)
    # An event whose decision is older than this when it arrives was held at the gate
    # (offline period): it is stored with `late = true`.
    late_after_s: float = Field(120.0, gt=0)
    # Ask gates to resend seq ranges missing for two rounds of this interval (0: off).
    gap_repair_interval_s: float = Field(15.0, ge=0)


class PasswordHashConfig(StrictModel):
    """argon2id cost; the defaults are argon2-cffi's (about 0.1 s and 64 MiB per login on a PC).
    Hashes carry their own parameters, so changing these never locks anyone out."""

    time_cost: int = Field(3, ge=1, le=20)
    memory_kib: int = Field(65536, ge=1024, le=4 * 1024 * 1024)
    parallelism: int = Field(4, ge=1, le=64)


class ServerConfig(StrictModel):
    database_url: str = DEFAULT_DATABASE_URL
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    # A static admin bearer token for scripts and the demo. None: only user tokens.
    api_token: str | None = Field(None, min_length=16)
    retention_days: int = Field(21, ge=1, le=3650)
    # How often the retention job runs (seconds).
    retention_interval_s: float = Field(3600.0, gt=0)
    # Ed25519 private key (PEM) used to sign passes and control documents.
    signing_key: pathlib.Path | None = None
    signing_kid: str = "k1"
    # Daily rollups and reports follow the checkpoint office's local day.
    timezone: str = "Asia/Shanghai"
    # A gate whose retained state says online but from which nothing was heard for
    # this long is shown as stale.
    gate_stale_after_s: float = Field(300.0, gt=0)
    # Run the MQTT ingest (off: API and dashboard only, e.g. a read replica).
    ingest_enabled: bool = True
    session_hours: float = Field(12.0, gt=0)
    password_hash: PasswordHashConfig = Field(default_factory=PasswordHashConfig)
    # One JSON object per log line (for journald/Loki/ELK) instead of plain text.
    log_json: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        return known_timezone(v)
