"""Thermometer benchmarks: pure parser throughput per protocol, and end-to-end latency from the
last byte of a frame written to a real pty to the reading leaving the driver's queue.

    python bench/run.py --only thermo [--quick] [--json]
"""

from __future__ import annotations

import statistics
import time

from common import BenchResult, Row, percentile

from drivers.thermometer import PROTOCOLS, make_codec, open_thermometer
from drivers.thermometer.device import Scene
from drivers.thermometer.registry import make_device
from drivers.thermometer.simulator import ThermoSimulator

# protocols whose frames the driver accepts unsolicited (request/response ones are measured by poll)
E2E_PROTOCOLS = ("gy-mcu90614", "gy-mcu90640", "gy-614", "lu90614", "ascii")


def _frames(protocol: str, n: int) -> bytes:
    """n frames exactly as the device would send them, with varying values."""
    device, codec = make_device(protocol), make_codec(protocol)
    out = bytearray()
    for i in range(n):
        scene = Scene(ambient_c=20.0 + (i % 50) / 10, skin_c=33.0 + (i % 37) / 10)
        frame = device.stream_frame(scene) or device.receive(b"".join(codec.poll_commands()), scene)
        out += frame
    return bytes(out)


CHUNK = 256  # bytes per feed() call: what the driver typically hands the codec per read


def parse_rate(protocol: str, n_frames: int, repeats: int) -> tuple[list[float], int]:
    """Microseconds per decoded frame, one value per repeat."""
    stream = _frames(protocol, n_frames)
    chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
    per_frame = []
    decoded = 0
    for _ in range(repeats):
        codec = make_codec(protocol)
        decoded = 0
        t0 = time.perf_counter()
        for chunk in chunks:
            decoded += sum(1 for r in codec.feed(chunk) if r.ok)
        elapsed = time.perf_counter() - t0
        per_frame.append(elapsed / max(decoded, 1) * 1e6)
    return per_frame, decoded


def e2e_latency(protocol: str, n: int) -> list[float]:
    """ms from the simulator's write of a frame's last byte to drv.get() returning its reading."""
    device = make_device(protocol)
    codec = make_codec(protocol)
    latencies = []
    with ThermoSimulator(protocol, noise_c=0.0) as sim:
        sim.set_silent(True)  # only the frames written below reach the driver
        drv = open_thermometer(sim.port, protocol, baud=device.default_baud, silent_timeout_s=60)
        drv.start()
        try:
            time.sleep(0.3)  # let the driver open the port and send its start-up commands
            while drv.get(0.05) is not None:
                pass
            for i in range(n):
                scene = Scene(ambient_c=21.0, skin_c=33.0 + (i % 40) / 10)
                frame = device.stream_frame(scene) or device.receive(b"".join(codec.poll_commands()), scene)
                t_written = sim.send_raw(frame)
                reading = drv.get(timeout=2.0)
                if reading is None:
                    continue
                latencies.append((time.monotonic() - t_written) * 1000)
                time.sleep(0.005)  # frames do not arrive back to back on a real link
        finally:
            drv.stop()
    return latencies


def run(args) -> BenchResult:
    quick = getattr(args, "quick", False)
    rows, metrics = [], {}
    for protocol in PROTOCOLS:
        n = 20 if protocol == "gy-mcu90640" else 2000
        if quick:
            n //= 10
        samples, decoded = parse_rate(protocol, n, 3 if quick else 9)
        median, p95 = statistics.median(samples), percentile(samples, 95)
        fps = 1e6 / median
        rows.append(Row(f"thermo parse {protocol}", "µs/frame", median, p95, note=f"{fps:,.0f} frames/s, {decoded} frames"))
        metrics[f"thermo_parse_fps_{protocol.replace('-', '_')}"] = round(fps)
    for protocol in E2E_PROTOCOLS:
        lat = e2e_latency(protocol, 20 if quick else 200)
        if not lat:
            continue
        median, p95 = statistics.median(lat), percentile(lat, 95)
        rows.append(Row(f"thermo e2e {protocol}", "ms", median, p95,
                        note=f"last byte on pty -> reading out of the driver, n={len(lat)}"))
        key = protocol.replace("-", "_")
        metrics[f"thermo_e2e_ms_median_{key}"] = round(median, 3)
        metrics[f"thermo_e2e_ms_p95_{key}"] = round(p95, 3)
    return BenchResult(rows=rows, metrics=metrics)
