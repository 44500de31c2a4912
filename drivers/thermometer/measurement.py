"""From raw readings to a temperature the gate can decide on.

    skin reading -> presence -> window of samples -> robust skin value
      -> body value (site model + ambient term + calibration offset)
      -> status: normal | recheck | fever | too_low | invalid | warming_up | silent

The reasoning behind every default is in docs/thermometers.md ("Measurement model").
Everything here is a pure function of the readings and the `now` it is given, so the
same code runs in the daemon, in tests and in replays.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import logging
import math
import statistics
import threading
from typing import Literal

from pydantic import Field, model_validator

from checkgate.config import StrictModel
from edge.types import TemperatureResult

from .base import Reading

logger = logging.getLogger(__name__)

Site = Literal["forehead", "wrist", "inner_canthus", "device"]


class SiteConversion(StrictModel):
    """body = slope * skin + offset_c + ambient_coeff * (ambient_ref_c - ambient)."""

    offset_c: float
    slope: float = Field(1.0, gt=0.5, le=1.5)
    ambient_coeff: float = Field(0.1, ge=0.0, le=0.5)  # °C added per °C of ambient below the reference
    ambient_ref_c: float = 25.0
    source: str = ""


def default_conversions() -> dict[str, SiteConversion]:
    # Starting points only: each gate should be calibrated against a reference thermometer.
    return {
        "forehead": SiteConversion(
            offset_c=2.0,
            source="Omron forehead curve (spec §12.2): body-skin 2.0 °C at 34 °C skin, 1.6 °C at 35.7 °C; "
                   "constant offset per Wang et al. 2022 (field survey §5.2)"),
        "wrist": SiteConversion(
            offset_c=1.9,
            source="NCIT cut-offs wrist 36.75 vs forehead 36.65 (Lai et al. 2022, spec §12.5); low confidence"),
        "inner_canthus": SiteConversion(
            offset_c=1.2,
            source="inner canthus reads ~0.8 °C above forehead (Bernard et al. 2023, field survey §5.2)"),
    }


class MeasurementConfig(StrictModel):
    """Measurement settings for one gate (`thermometer.measurement` in the gate config)."""

    site: Site = "forehead"  # "device": use the module's own body value (GY-614 BO, LU90614 body mode)
    conversions: dict[str, SiteConversion] = Field(default_factory=default_conversions)
    # presence: a reading is "someone there" when it rises this much above ambient
    presence_rise_c: float = Field(1.0, gt=0)
    presence_min_object_c: float = 30.0  # used when the device gives no ambient (spec §12.3)
    presence_leave_s: float = Field(0.6, ge=0)  # gap in presence that ends a visit
    # window
    window_s: float = Field(1.5, gt=0, le=10)
    min_samples: int = Field(3, ge=1)
    estimator: Literal["top_median", "peak"] = "top_median"
    top_fraction: float = Field(0.5, gt=0, le=1)
    # validity and thresholds, on the body value
    valid_min_c: float = 34.5  # below: not measured properly -> "come closer" (spec §12.3)
    valid_max_c: float = 42.5  # above: hot object or sensor fault
    fever_threshold_c: float = Field(37.3, ge=34.0, le=39.0)
    recheck_band_c: float = Field(0.3, ge=0, le=1.5)
    ambient_valid_min_c: float = 0.0  # outside: refuse to convert (spec §12.2 item 2)
    ambient_valid_max_c: float = 40.0
    # sensor lifecycle
    warmup_s: float = Field(1800.0, ge=0)  # ISO checklist / FeverScreen: 30 min (spec §12.7)
    silent_after_s: float = Field(2.0, gt=0)  # spec §11.2
    calibration_offset_c: float = 0.0
    max_calibration_step_c: float = Field(1.5, gt=0)
    # drift of the healthy population
    drift_samples: int = Field(30, ge=3)
    drift_band_c: float = Field(0.4, gt=0)
    drift_baseline_c: float | None = None  # None: learned from the first drift_samples results

    @model_validator(mode="after")
    def _consistent(self) -> MeasurementConfig:
        if self.site != "device" and self.site not in self.conversions:
            raise ValueError(f"no conversion model for site {self.site!r}")
        if not self.valid_min_c < self.fever_threshold_c - self.recheck_band_c < self.valid_max_c:
            raise ValueError("need valid_min_c < fever_threshold_c - recheck_band_c < valid_max_c")
        if self.ambient_valid_min_c >= self.ambient_valid_max_c:
            raise ValueError("ambient_valid_min_c must be below ambient_valid_max_c")
        return self


# statuses that end a visit's measuring; the others start another window while the person stays
FINAL_STATUSES = frozenset({"normal", "fever"})


class CalibrationError(ValueError):
    """A calibration that must not be applied (bad input or an implausibly large step)."""


def to_body(skin_c: float, ambient_c: float | None, model: SiteConversion, calibration_offset_c: float) -> float:
    """Skin reading -> body (axillary-equivalent) value for one site model."""
    ambient_term = 0.0 if ambient_c is None else model.ambient_coeff * (model.ambient_ref_c - ambient_c)
    return model.slope * skin_c + model.offset_c + ambient_term + calibration_offset_c


def robust_value(values: list[float], estimator: str, top_fraction: float) -> float:
    """Median of the top fraction (default) or the peak.

    The top samples are the ones taken closest to the sensor (readings fall with distance);
    their median ignores a single hot spike that peak hold would report.
    """
    if estimator == "peak":
        return max(values)
    top = sorted(values, reverse=True)[: max(1, math.ceil(len(values) * top_fraction))]
    return statistics.median(top)


def classify(body_c: float, cfg: MeasurementConfig) -> str:
    if body_c < cfg.valid_min_c:
        return "too_low"
    if body_c > cfg.valid_max_c:
        return "invalid"
    if body_c >= cfg.fever_threshold_c:
        return "fever"
    if body_c >= cfg.fever_threshold_c - cfg.recheck_band_c:
        return "recheck"
    return "normal"


def _locked(method):
    """The daemon feeds readings from its thermometer thread while the screen or API may
    calibrate or ask for drift from another: one lock per Measurer keeps them consistent."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclasses.dataclass
class _Sample:
    t: float
    skin_c: float | None
    ambient_c: float | None
    device_body_c: float | None


class Measurer:
    """Feeds on readings; returns a TemperatureResult whenever a measurement window completes (see feed)."""

    def __init__(self, config: MeasurementConfig | None = None, *, started_at: float | None = None,
                 sensor: str | None = None) -> None:
        self.config = config or MeasurementConfig()
        self.started_at = started_at  # None: the first reading marks power-on
        self.sensor = sensor
        self.calibration_offset_c = self.config.calibration_offset_c
        self._lock = threading.RLock()
        self._samples: list[_Sample] = []
        self._visit_start: float | None = None
        self._window_start: float | None = None
        self._concluded = False  # the visit has its final result (normal or fever)
        self._last_present: float | None = None
        self._last_reading: float | None = None
        self._current: TemperatureResult | None = None
        self._recent_bodies: collections.deque[float] = collections.deque(maxlen=self.config.drift_samples)
        self._baseline_c = self.config.drift_baseline_c
        self._drift_warned = False  # log a drift warning once, not on every call

    # ---- presence ----
    def _is_present(self, r: Reading) -> bool:
        cfg = self.config
        if r.object_c is None:  # body-only devices: a plausible body value means someone is there
            return r.body_c is not None and r.body_c >= cfg.valid_min_c - 2.0
        if r.ambient_c is None:
            return r.object_c >= cfg.presence_min_object_c
        return r.object_c - r.ambient_c >= cfg.presence_rise_c

    @_locked
    def presence(self, now: float) -> bool:
        """Someone is in front of the sensor (seen within presence_leave_s)."""
        return self._last_present is not None and now - self._last_present <= self.config.presence_leave_s

    # ---- feeding ----
    @_locked
    def feed(self, reading: Reading, now: float) -> TemperatureResult | None:
        """Add one reading; returns a result when a measurement window has just completed.

        `normal` and `fever` conclude the visit. After any other status (too_low, recheck,
        invalid, warming_up) a new window starts at once, so a person who steps closer or is
        asked to measure again gets a fresh result without anyone calling reset().
        """
        if self.started_at is None:
            self.started_at = now
        self.sensor = self.sensor or reading.sensor or None
        self._last_reading = now
        if not self._is_present(reading):
            if self._visit_start is not None and not self.presence(now):
                self._end_visit()
            return None
        if self._visit_start is None or not self.presence(now):
            self._end_visit()
            self._visit_start = self._window_start = now
        self._last_present = now
        if self._concluded or "unstable" in reading.flags:
            return None
        self._samples.append(_Sample(now, reading.object_c, reading.ambient_c, reading.body_c))
        if now - self._window_start >= self.config.window_s and len(self._samples) >= self.config.min_samples:
            self._current = self._conclude(now)
            if self._current.status in FINAL_STATUSES:
                self._concluded = True
            else:  # measure again while they stay
                self._samples.clear()
                self._window_start = now
            return self._current
        return None

    @_locked
    def current(self, now: float) -> TemperatureResult | None:
        """The last completed window's result while the person is still there; `silent` on sensor silence."""
        last = self._last_reading if self._last_reading is not None else self.started_at
        if last is None or now - last > self.config.silent_after_s:
            return TemperatureResult("silent", sensor=self.sensor, site=self.config.site,
                                     detail="no reading from the thermometer")
        if self._current is not None and not self.presence(now):
            self._end_visit()
        return self._current

    @_locked
    def reset(self) -> None:
        """Forget the current visit (the next reading starts a new window)."""
        self._end_visit()
        self._last_present = None

    def _end_visit(self) -> None:
        self._samples.clear()
        self._visit_start = self._window_start = None
        self._current = None
        self._concluded = False

    # ---- the window's conclusion ----
    def _conclude(self, now: float) -> TemperatureResult:
        cfg = self.config
        ambients = [s.ambient_c for s in self._samples if s.ambient_c is not None]
        ambient = statistics.median(ambients) if ambients else None
        skins = [s.skin_c for s in self._samples if s.skin_c is not None]
        raw = robust_value(skins, cfg.estimator, cfg.top_fraction) if skins else None
        common = {"raw_c": _r(raw), "ambient_c": _r(ambient), "sensor": self.sensor, "site": cfg.site,
                  "samples": len(self._samples), "calibration_offset_c": self.calibration_offset_c}
        if cfg.site == "device":
            bodies = [s.device_body_c for s in self._samples if s.device_body_c is not None]
            if not bodies:
                return TemperatureResult("invalid", detail="device gave no body value", **common)
            body = robust_value(bodies, cfg.estimator, cfg.top_fraction) + self.calibration_offset_c
        else:
            if raw is None:
                return TemperatureResult("invalid", detail="no skin value in the window", **common)
            if ambient is not None and not cfg.ambient_valid_min_c <= ambient <= cfg.ambient_valid_max_c:
                return TemperatureResult("invalid", detail=f"ambient {ambient:.1f} °C outside the validated "
                                         f"{cfg.ambient_valid_min_c:g}..{cfg.ambient_valid_max_c:g} °C", **common)
            body = to_body(raw, ambient, cfg.conversions[cfg.site], self.calibration_offset_c)
        status = classify(body, cfg)
        warm_for = now - (self.started_at if self.started_at is not None else now)
        if warm_for < cfg.warmup_s:
            return TemperatureResult("warming_up", body_c=_r(body), detail=f"sensor warming up: "
                                     f"{cfg.warmup_s - warm_for:.0f} s left", **common)
        if status == "normal":
            self._track_drift(body)
        detail = {
            "too_low": "not measured properly: come closer and measure again",
            "invalid": "reading above the valid range: hot object or sensor fault",
            "recheck": "just below the fever threshold: measure again",
            "fever": f"at or above {cfg.fever_threshold_c:g} °C",
            "normal": "",
        }[status]
        result = TemperatureResult(status, body_c=_r(body), detail=detail, **common)
        logger.info("temperature %s: body %.2f (skin %s, ambient %s, %d samples)", status, body,
                    common["raw_c"], common["ambient_c"], len(self._samples))
        return result

    # ---- calibration ----
    @_locked
    def calibrate(self, reference_c: float, measured_c: float, operator: str, *,
                  note: str = "", at: dt.datetime | None = None) -> dict:
        """Apply reference − measured to the calibration offset; returns the audit record.

        `measured_c` is the gate's body value for the same person (or the blackbody
        reading for site "device"), taken with the current offset.
        """
        if not operator or not operator.strip():
            raise CalibrationError("calibration needs the operator's id")
        for name, value in (("reference_c", reference_c), ("measured_c", measured_c)):
            if not isinstance(value, int | float) or not math.isfinite(value) or not 30.0 <= value <= 45.0:
                raise CalibrationError(f"{name} {value!r} is not a plausible body or blackbody temperature")
        step = reference_c - measured_c
        if abs(step) > self.config.max_calibration_step_c:
            raise CalibrationError(f"step {step:+.2f} °C exceeds ±{self.config.max_calibration_step_c:g} °C: "
                                   "check the reference and the sensor before calibrating")
        before = self.calibration_offset_c
        self.calibration_offset_c = round(before + step, 3)
        self._recent_bodies.clear()  # the population baseline starts again after a calibration
        self._baseline_c = self.config.drift_baseline_c
        record = {
            "type": "calibration",
            "ts": (at or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z"),
            "operator": operator.strip(),
            "sensor": self.sensor,
            "site": self.config.site,
            "reference_c": round(reference_c, 2),
            "measured_c": round(measured_c, 2),
            "offset_before_c": before,
            "offset_after_c": self.calibration_offset_c,
            "note": note,
        }
        logger.warning("thermometer calibrated by %s: offset %+.2f -> %+.2f °C", record["operator"], before,
                       self.calibration_offset_c)
        return record

    # ---- drift ----
    def _track_drift(self, body_c: float) -> None:
        self._recent_bodies.append(body_c)
        if self._baseline_c is None and len(self._recent_bodies) == self.config.drift_samples:
            self._baseline_c = statistics.median(self._recent_bodies)
            logger.info("healthy-population baseline %.2f °C from %d visits", self._baseline_c,
                        len(self._recent_bodies))

    @_locked
    def drift(self) -> dict:
        """How the median body value of recent normal visits compares with the baseline.

        {"warning": bool, "baseline_c", "recent_median_c", "shift_c", "samples"}; a warning
        means the sensor or the scene changed (sun, draught, dirty lens): recalibrate.
        """
        samples = len(self._recent_bodies)
        if self._baseline_c is None or samples < self.config.drift_samples:
            return {"warning": False, "baseline_c": self._baseline_c, "recent_median_c": None,
                    "shift_c": None, "samples": samples}
        recent = statistics.median(self._recent_bodies)
        shift = recent - self._baseline_c
        warning = abs(shift) > self.config.drift_band_c
        if warning and not self._drift_warned:
            logger.warning("healthy-population median moved %+.2f °C (%.2f -> %.2f): check the thermometer",
                           shift, self._baseline_c, recent)
        self._drift_warned = warning
        return {"warning": warning, "baseline_c": round(self._baseline_c, 2), "recent_median_c": round(recent, 2),
                "shift_c": round(shift, 2), "samples": samples}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
