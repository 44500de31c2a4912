"""The measurement model: presence, window, skin->body conversion, thresholds, warm-up, calibration, drift."""

from __future__ import annotations

import pytest

from checkgate.config import ConfigError, parse_config
from drivers.thermometer import Reading
from drivers.thermometer.measurement import CalibrationError, MeasurementConfig, Measurer, to_body

AMBIENT = 25.0  # the conversion's reference ambient: no ambient term


def make(**overrides) -> Measurer:
    cfg = {"warmup_s": 0, "window_s": 1.0, **overrides}
    return Measurer(parse_config(MeasurementConfig, cfg, "test"))


def visit(m: Measurer, skin: float, *, ambient: float = AMBIENT, start: float = 100.0, seconds: float = 1.5,
          rate_hz: float = 10.0, body: float | None = None):
    """Feed a person standing in front of the sensor; returns the first result."""
    first = None
    n = int(seconds * rate_hz) + 1
    for i in range(n):
        t = start + i / rate_hz
        result = m.feed(Reading(skin, ambient, body, sensor="gy-mcu90614"), t)
        first = first or result
    return first


def nobody(m: Measurer, start: float, seconds: float = 1.0, ambient: float = AMBIENT):
    for i in range(int(seconds * 10)):
        assert m.feed(Reading(ambient + 0.1, ambient, sensor="gy-mcu90614"), start + i / 10) is None


def test_normal_person():
    m = make()
    m.feed(Reading(AMBIENT, AMBIENT), 99.0)  # nobody yet
    result = visit(m, 34.2)
    assert result.status == "normal"
    assert result.body_c == pytest.approx(36.2)
    assert result.raw_c == pytest.approx(34.2)
    assert result.ambient_c == pytest.approx(AMBIENT)
    assert result.site == "forehead" and result.sensor == "gy-mcu90614"
    assert result.samples >= 3


def test_fever_is_judged_on_the_body_value_not_the_raw_skin():
    m = make()
    result = visit(m, 35.6)
    # 35.6 °C on the forehead is far below 37.3 as a number, but it is a fever once converted
    assert result.raw_c == pytest.approx(35.6)
    assert result.status == "fever"
    assert result.body_c >= 37.3


def test_recheck_band_just_below_threshold():
    m = make()
    result = visit(m, 35.1)  # body 37.1: inside [37.0, 37.3)
    assert result.status == "recheck"
    assert "again" in result.detail


def test_threshold_and_band_are_configurable():
    m = make(fever_threshold_c=37.5, recheck_band_c=0.0)
    assert visit(m, 35.35).status == "normal"  # 37.35 < 37.5 and no band


def test_too_far_is_too_low_not_pass():
    m = make()
    result = visit(m, 31.0)  # someone far away: warmer than ambient, but a body value of 33
    assert result.status == "too_low"
    assert "closer" in result.detail


def test_hot_object_is_invalid():
    assert visit(make(), 45.0).status == "invalid"


def test_ambient_changes_the_conversion():
    warm = visit(make(), 33.0, ambient=25.0)
    cold = visit(make(), 33.0, ambient=10.0)
    assert cold.body_c - warm.body_c == pytest.approx(1.5)  # 0.1 °C per °C below 25 °C
    assert warm.status == "normal" and cold.status == "normal"
    # the same skin reading that is "too low" in a warm room is a plausible body value in the cold
    assert visit(make(), 32.0, ambient=25.0).status == "too_low"
    assert visit(make(), 32.0, ambient=8.0).status == "normal"


def test_ambient_outside_validated_range_refuses():
    result = visit(make(ambient_valid_min_c=5.0), 33.0, ambient=-2.0)
    assert result.status == "invalid" and "ambient" in result.detail


def test_sites_differ():
    forehead = visit(make(site="forehead"), 34.5)
    canthus = visit(make(site="inner_canthus"), 34.5)
    assert forehead.body_c - canthus.body_c == pytest.approx(0.8)
    assert canthus.site == "inner_canthus"


def test_device_body_mode_uses_the_device_value():
    result = visit(make(site="device"), 34.2, body=37.6)
    assert result.status == "fever" and result.body_c == pytest.approx(37.6)


def test_warm_up_after_power_on():
    m = make(warmup_s=60)
    first = visit(m, 34.2, start=0.0)
    assert first.status == "warming_up"
    nobody(m, 5.0)
    later = visit(m, 34.2, start=70.0)
    assert later.status == "normal"


def test_no_result_before_the_window_is_full_and_one_per_visit():
    m = make(window_s=1.0)
    results = [m.feed(Reading(34.2, AMBIENT), 100 + i / 10) for i in range(30)]
    got = [r for r in results if r is not None]
    assert len(got) == 1
    assert results.index(got[0]) == 10  # after 1.0 s of presence
    assert m.current(102.9) == got[0]
    nobody(m, 103.0)
    assert m.current(104.0) is None
    assert m.presence(104.0) is False


def test_robust_window_ignores_a_spike_and_the_approach():
    m = make(window_s=1.0)
    values = [28.0, 31.0, 33.0, 34.1, 34.2, 40.5, 34.2, 34.1, 34.2, 34.3, 34.2]
    results = [m.feed(Reading(v, AMBIENT), 100 + i / 10) for i, v in enumerate(values)]
    result = next(r for r in results if r)
    assert result.status == "normal"
    assert result.raw_c == pytest.approx(34.2, abs=0.05)
    peak = make(window_s=1.0, estimator="peak")
    result = next(r for r in (peak.feed(Reading(v, AMBIENT), 100 + i / 10) for i, v in enumerate(values)) if r)
    assert result.status == "fever"  # one spike denies a healthy person: why peak hold is not the default


def test_short_gap_keeps_the_visit_long_gap_starts_a_new_one():
    m = make(window_s=1.0, presence_leave_s=0.5)
    first = visit(m, 34.2)
    assert first is not None
    m.feed(Reading(AMBIENT, AMBIENT), 101.7)  # looked away briefly
    assert m.feed(Reading(34.2, AMBIENT), 101.8) is None  # same visit, no second result
    nobody(m, 102.0, seconds=1.0)
    assert visit(m, 35.6, start=104.0).status == "fever"


def test_reset_starts_a_new_window():
    m = make(window_s=0.5)
    assert visit(m, 35.1, seconds=0.6).status == "recheck"
    m.reset()
    assert visit(m, 34.0, start=101.0, seconds=0.6).status == "normal"


def test_silent_sensor():
    m = make()
    visit(m, 34.2)
    assert m.current(101.6) is not None and m.current(101.6).status == "normal"
    result = m.current(110.0)
    assert result.status == "silent"


def test_calibration_changes_the_result_and_is_audited():
    m = make()
    before = visit(m, 35.0)  # body 37.0: recheck
    assert before.status == "recheck"
    record = m.calibrate(reference_c=36.6, measured_c=before.body_c, operator="vol-17", note="axillary check")
    assert record["type"] == "calibration"
    assert record["operator"] == "vol-17"
    assert record["offset_before_c"] == 0.0 and record["offset_after_c"] == pytest.approx(-0.4)
    assert record["ts"].endswith("Z")
    nobody(m, 102.0)
    after = visit(m, 35.0, start=104.0)
    assert after.status == "normal"
    assert after.body_c == pytest.approx(36.6)
    assert after.calibration_offset_c == pytest.approx(-0.4)


@pytest.mark.parametrize("reference, measured, operator", [
    (36.6, 39.0, "vol-1"),        # a 2.4 °C jump: something is wrong, do not apply
    (float("nan"), 36.5, "vol-1"),
    (36.6, 36.5, ""),
    (20.0, 20.5, "vol-1"),
])
def test_bad_calibration_is_refused_and_changes_nothing(reference, measured, operator):
    m = make()
    with pytest.raises(CalibrationError):
        m.calibrate(reference, measured, operator)
    assert m.calibration_offset_c == 0.0


def test_drift_warning_when_the_healthy_population_shifts():
    m = make(drift_samples=10, drift_band_c=0.3, presence_leave_s=0.2)
    t = 0.0
    for i in range(10):
        visit(m, 34.0 + 0.05 * (i % 3), start=t, seconds=1.1)
        nobody(m, t + 1.2, seconds=0.5)
        t += 2.0
    assert m.drift()["warning"] is False
    assert m.drift()["baseline_c"] == pytest.approx(36.05, abs=0.06)
    for i in range(10):  # a dirty lens or sun on the sensor: everyone reads 0.5 °C higher
        visit(m, 34.5 + 0.05 * (i % 3), start=t, seconds=1.1)
        nobody(m, t + 1.2, seconds=0.5)
        t += 2.0
    drift = m.drift()
    assert drift["warning"] is True
    assert drift["shift_c"] == pytest.approx(0.5, abs=0.06)


def test_config_rejects_unknown_keys_and_inconsistent_values():
    with pytest.raises(ConfigError, match="fever_treshold"):
        parse_config(MeasurementConfig, {"fever_treshold": 37.5}, "gate.yaml")
    with pytest.raises(ConfigError):
        parse_config(MeasurementConfig, {"valid_min_c": 38.0}, "gate.yaml")
    with pytest.raises(ConfigError):
        parse_config(MeasurementConfig, {"site": "ear"}, "gate.yaml")
    cfg = parse_config(MeasurementConfig, {"conversions": {"forehead": {"offset_c": 2.3}}}, "gate.yaml")
    assert to_body(34.0, 25.0, cfg.conversions["forehead"], 0.0) == pytest.approx(36.3)


def test_defaults_are_the_documented_ones():
    cfg = MeasurementConfig()
    assert cfg.fever_threshold_c == 37.3
    assert cfg.recheck_band_c == 0.3
    assert cfg.site == "forehead"
    assert 1.0 <= cfg.window_s <= 2.0


def test_body_only_device_presence_and_result():
    """LU90614 in body mode: no object value, no ambient; the body value carries presence."""
    m = make(site="device")
    assert m.feed(Reading(None, None, 24.0, sensor="lu90614"), 99.0) is None  # nothing in front
    assert m.presence(99.0) is False
    results = [m.feed(Reading(None, None, 36.58, sensor="lu90614"), 100 + i * 0.3) for i in range(6)]
    result = next(r for r in results if r)
    assert result.status == "normal" and result.body_c == pytest.approx(36.58)
    assert result.raw_c is None and result.sensor == "lu90614"


def test_object_without_ambient_uses_the_absolute_presence_rule():
    m = make()
    assert m.feed(Reading(26.0, None), 99.0) is None and not m.presence(99.0)
    result = visit(m, 34.0, ambient=None)
    assert result.status == "normal" and result.ambient_c is None
    assert result.body_c == pytest.approx(36.0)  # no ambient term without an ambient value


def test_array_hotspot_reading_counts_as_presence():
    m = make()
    reading = Reading(35.6, 22.0, hotspot=(11, 15), sensor="gy-mcu90640")
    results = [m.feed(reading, 100 + i / 4) for i in range(6)]
    assert next(r for r in results if r).status == "fever"


def test_warm_up_counts_from_the_first_reading_or_the_given_power_on():
    m = Measurer(MeasurementConfig(warmup_s=30, window_s=0.5), started_at=0.0)
    assert visit(m, 34.2, start=10.0, seconds=0.6).status == "warming_up"
    nobody(m, 11.0)
    assert visit(m, 34.2, start=31.0, seconds=0.6).status == "normal"


def test_too_far_then_closer_gives_a_fresh_result_without_reset():
    m = make(window_s=1.0)
    results = [m.feed(Reading(31.0, AMBIENT), 100 + i / 10) for i in range(11)]  # too far
    assert [r.status for r in results if r] == ["too_low"]
    assert m.current(101.0).status == "too_low"
    results = [m.feed(Reading(34.2, AMBIENT), 101.1 + i / 10) for i in range(12)]  # stepped closer
    assert [r.status for r in results if r] == ["normal"]
    assert m.current(102.2).status == "normal"


def test_recheck_measures_again_while_the_person_stays_then_concludes():
    m = make(window_s=1.0)
    skins = [35.1] * 11 + [34.6] * 11 + [34.6] * 15  # first window recheck, then they cooled down
    results = [m.feed(Reading(v, AMBIENT), 100 + i / 10) for i, v in enumerate(skins)]
    assert [r.status for r in results if r] == ["recheck", "normal"]  # nothing after the final result


def test_fever_is_final_for_the_visit():
    m = make(window_s=0.5)
    results = [m.feed(Reading(35.8, AMBIENT), 100 + i / 10) for i in range(40)]
    assert [r.status for r in results if r] == ["fever"]


def test_unstable_readings_are_not_sampled():
    m = make(window_s=0.5, min_samples=3)
    unstable = Reading(34.2, AMBIENT, flags=("unstable",))
    assert all(m.feed(unstable, 100 + i / 10) is None for i in range(10))
    assert m.presence(101.0)  # but someone is there
    results = [m.feed(Reading(34.2, AMBIENT), 101 + i / 10) for i in range(6)]
    assert [r.status for r in results if r] == ["normal"]


def test_feeding_and_asking_from_two_threads():
    import threading

    m = make(window_s=0.2, drift_samples=3, presence_leave_s=0.05, max_calibration_step_c=1.5)
    errors = []

    def feeder():
        try:
            for i in range(4000):
                skin = 34.0 if (i // 5) % 2 == 0 else AMBIENT  # short visits with gaps
                m.feed(Reading(skin, AMBIENT), i * 0.05)
        except Exception as err:  # pragma: no cover - the failure is reported below
            errors.append(err)

    thread = threading.Thread(target=feeder)
    thread.start()
    while thread.is_alive():
        m.drift()
        m.current(1.0)
        m.calibrate(36.5, 36.5, "vol-1")
    thread.join()
    assert errors == []
