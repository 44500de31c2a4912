"""Plain values passed between the areas of the gate: measurement -> policy <- credentials.

Kept free of I/O and of heavy imports so the pure decision function can use them.
The thermometer area owns `TemperatureResult`; the credentials area owns
`VerifiedCredential`; both may grow fields (with defaults) as they need.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# What a measurement window concluded, before any policy is applied.
TemperatureStatus = Literal[
    "normal",      # body value below the recheck band
    "recheck",     # in the band just below the fever threshold: measure again
    "fever",       # body value at or above the fever threshold
    "too_low",     # below the valid range: not aimed / too far -> "come closer"
    "invalid",     # above the valid range: hot object or sensor fault
    "warming_up",  # sensor not yet past its warm-up period
    "no_reading",  # no person seen in the window
    "silent",      # the sensor sends nothing (fault)
]


@dataclasses.dataclass(frozen=True)
class TemperatureResult:
    status: TemperatureStatus
    body_c: float | None = None
    raw_c: float | None = None
    ambient_c: float | None = None
    sensor: str | None = None
    site: str | None = None
    samples: int = 0
    detail: str = ""  # human-readable reason for the status (screen, logs)
    calibration_offset_c: float = 0.0  # offset applied to body_c (logged with every decision)


# Credential verification statuses: "valid" means authentic and in date; `health`
# carries the status-list colour for the subject.
@dataclasses.dataclass(frozen=True)
class VerifiedCredential:
    valid: bool
    kind: str  # "pass" | "dcc" | "allowlist" | "unknown"
    subject: str | None = None
    issuer: str | None = None
    pass_kind: str | None = None  # resident | worker | visitor | vehicle
    health: str | None = None  # green | yellow | red | None (unknown)
    revoked: bool = False
    zones: tuple[str, ...] = ()
    household: str | None = None
    reasons: tuple[str, ...] = ()  # stable reason codes when not valid
    not_before: float | None = None  # unix seconds
    expires: float | None = None
    window: tuple[str, str] | None = None  # daily "HH:MM", "HH:MM" local time
    list_stale: bool = False  # status list needed for this credential is past its max age
    status_age_s: float | None = None  # age of the status list consulted (None: no list)
    status_version: int | None = None
    trust_age_s: float | None = None  # age of the trust list used (None: pinned local keys)
    dcc_type: str | None = None  # EU DCC entry type: "v" vaccination, "t" test, "r" recovery
