"""The gate's one typed config file (YAML or JSON).

Every section rejects unknown keys, so a typo is reported with the key's full path
(`checkgate edge run --validate-config` checks a file and exits 2 when it is bad).
"""

from __future__ import annotations

import pathlib
from typing import Literal

from pydantic import Field, field_validator

from checkgate import protocol
from checkgate.config import StrictModel
from edge.audio import AudioConfig
from edge.gate import GateConfig
from edge.screening import FlowConfig
from edge.uplink import MqttConfig


class ThermometerSection(StrictModel):
    protocol: str = "gy-mcu90614"
    port: str = "sim"  # a device path (/dev/serial/by-id/...), or "sim" for the built-in simulator
    baud: int | None = None
    measurement: dict = Field(default_factory=dict)  # drivers.thermometer.measurement.MeasurementConfig
    silent_after_s: float = 2.0


class CameraSection(StrictModel):
    source: str = "sim"  # V4L2 index/path, stream URL, video file, image folder, or "sim"
    width: int = 640
    height: int = 480
    fps: float = 15.0
    dedupe_window_s: float = 5.0
    stalled_after_s: float = 3.0
    qr: dict = Field(default_factory=dict)  # drivers.qr.QrConfig: roi, max_side, secondary passes


class CredentialsSection(StrictModel):
    trust_keys: list[str] = Field(default_factory=list)  # issuer public key files
    control_keys: list[str] = Field(default_factory=list)  # keys allowed to sign control documents
    status_list: str | None = None  # a signed status list file (also arrives over MQTT)
    allowlist_csv: str | None = None
    dcc_trust: str | None = None


class ScreenSection(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8090
    language: str = "zh-CN"
    volunteers: dict[str, str] = Field(default_factory=dict)  # operator id -> argon2 hash of the PIN
    pin_max_attempts: int = Field(default=5, ge=1)  # wrong PINs in a row before the operator id is locked
    pin_lockout_s: float = Field(default=300.0, ge=0)
    shift_hours: float = Field(default=4.5, gt=0)  # a sign-in lasts one shift, then asks for the PIN again
    preview_fps: float = Field(default=3.0, ge=0)  # 0 turns the camera preview off
    preview_width: int = Field(default=320, ge=80, le=1280)
    recheck_minutes: float = Field(default=15.0, gt=0)  # rest before a person sent away is measured again
    override_reasons: dict[str, list[str]] = Field(default_factory=lambda: {
        "pass": ["paper_pass_checked", "known_resident", "staff_on_duty", "medical_emergency"],
        "deny": ["refused_check", "no_mask", "suspected_forgery", "sent_to_rest"]})


class SimulationSection(StrictModel):
    """Synthetic visitors for the demo: drives the simulated thermometer and camera."""

    visitors: bool = False
    interval_s: float = 2.0
    seed: int | None = None
    valid_codes: list[str] = Field(default_factory=list)
    bad_codes: list[str] = Field(default_factory=list)  # forged / revoked / red codes
    fever_fraction: float = 0.1
    bad_code_fraction: float = 0.15


class EdgeConfig(StrictModel):
    gate_id: str
    data_dir: str = "gate-data"
    direction: Literal["in", "out"] = "in"  # which way people walk through this gate
    zone: str | None = None  # the zone this gate guards (passes list the zones they open)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    thermometer: ThermometerSection = Field(default_factory=ThermometerSection)
    camera: CameraSection = Field(default_factory=CameraSection)
    credentials: CredentialsSection = Field(default_factory=CredentialsSection)
    policy: dict = Field(default_factory=dict)  # edge.policy.Policy
    flow: FlowConfig = Field(default_factory=FlowConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    screen: ScreenSection = Field(default_factory=ScreenSection)
    simulation: SimulationSection = Field(default_factory=SimulationSection)
    outbox_max_pending: int = 200_000
    outbox_keep_delivered_h: float = 24.0
    health_interval_s: float = 30.0

    @field_validator("gate_id")
    @classmethod
    def _gate_id(cls, v: str) -> str:
        if not protocol.valid_gate_id(v):
            raise ValueError("use lowercase letters, digits, '-' or '_' (it is part of MQTT topics)")
        return v

    def resolve(self, base: pathlib.Path, path: str | None) -> pathlib.Path | None:
        if path is None:
            return None
        p = pathlib.Path(path)
        return p if p.is_absolute() else base / p
