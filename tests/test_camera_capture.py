"""Capture sources and their watchdog: folders, video files, stalls, vanishing devices."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import segno

from drivers.camera import FolderSource, OpenCvSource, open_camera
from drivers.camera.simulated import SimulatedCamera
from drivers.qr import QrDecoder
from tests.conftest import wait_until

FAST = {"stalled_after_s": 0.5, "retry_min_s": 0.1, "retry_max_s": 0.4, "open_timeout_s": 0.5}


def code_frame(text: str, size=(480, 640)) -> np.ndarray:
    qr = segno.make_qr(text, error="m")
    modules = np.where(np.array(qr.matrix, dtype=np.uint8) > 0, 0, 255).astype(np.uint8)
    code = np.kron(np.pad(modules, 4, constant_values=255), np.ones((5, 5), np.uint8))
    frame = np.full(size, 180, np.uint8)
    frame[60:60 + code.shape[0], 100:100 + code.shape[1]] = code
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


@pytest.fixture
def started():
    sources = []

    def start(source):
        sources.append(source)
        source.start()
        return source

    yield start
    for source in sources:
        source.stop()


def test_folder_source_delivers_newest_frames_in_order(tmp_path, started):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), code_frame(f"CG1:folder-{i}"))
    cam = started(open_camera(str(tmp_path), fps=30, **FAST))
    assert isinstance(cam, FolderSource)
    decoder = QrDecoder()
    seen = set()
    wait_until(lambda: seen.update(c.text for c in decoder.decode(cam.latest(0.5).image)) or len(seen) == 3,
               10, message="all three images of the folder")
    assert seen == {"CG1:folder-0", "CG1:folder-1", "CG1:folder-2"}
    health = cam.health()
    assert health["state"] == "ok" and health["fps"] > 5


def test_latest_keeps_no_backlog_and_serves_each_consumer(started):
    cam = started(SimulatedCamera(fps=30, seed=1, **FAST))
    first = wait_until(lambda: cam.latest(0.5), 5, message="a first frame")
    wait_until(lambda: cam.health()["last_frame_age_s"] is not None and cam._seq >= first.seq + 5, 5,
               message="five more frames captured")
    newest = cam.latest(0.5)
    assert newest.seq >= first.seq + 5  # not the frame after `first`: stale frames are dropped
    got = {}

    def consumer(name):
        got[name] = cam.latest(1.0)

    threads = [threading.Thread(target=consumer, args=(n,)) for n in ("screen", "decoder")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3)
    # a preview taking a frame must not make the decoder wait for the next one
    assert got["screen"] is not None and got["decoder"] is not None


def test_video_file_source_plays_at_the_configured_rate(tmp_path, started):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    for i in range(10):
        writer.write(code_frame("CG1:video") if i >= 5 else np.full((480, 640, 3), 90, np.uint8))
    writer.release()
    cam = started(open_camera(str(path), 640, 480, fps=20, **FAST))
    assert isinstance(cam, OpenCvSource)
    decoder = QrDecoder()
    wait_until(lambda: [c.text for c in decoder.decode(cam.latest(0.5).image)] == ["CG1:video"], 10,
               message="the code in the looping video")
    wait_until(lambda: cam.health()["fps"] > 0, 5, message="an fps figure")
    assert cam.health()["fps"] < 30  # paced, not decoded flat out


def test_stalled_source_is_detected_and_restarted(started, caplog):
    cam = started(SimulatedCamera(fps=20, seed=2, **FAST))
    wait_until(lambda: cam.health()["state"] == "ok", 5, message="frames flowing")
    cam.set_stalled(True)
    with caplog.at_level("WARNING", logger="drivers.camera.capture"):
        wait_until(lambda: cam.health()["state"] == "stalled", 5, message="stall detected")
        wait_until(lambda: cam.restarts >= 1, 5, message="capture restarted")
    assert "camera stalled" in caplog.text
    assert "no frame for" in cam.health()["detail"]
    before = cam.latest(0.0).seq
    cam.set_stalled(False)
    wait_until(lambda: cam.health()["state"] == "ok", 5, message="recovered after the stall")
    assert wait_until(lambda: cam.latest(0.5).seq > before, 5, message="new frames")


def test_vanished_device_is_reported_and_picked_up_again(tmp_path, started):
    folder = tmp_path / "cam"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), code_frame("CG1:back"))
    cam = started(FolderSource(folder, fps=20, **FAST))
    wait_until(lambda: cam.health()["state"] == "ok", 5, message="frames flowing")
    gone = tmp_path / "unplugged"
    folder.rename(gone)  # the device node disappears
    wait_until(lambda: cam.health()["state"] == "disconnected", 5, message="disconnection reported")
    assert "cam" in cam.health()["detail"] or "stopped" in cam.health()["detail"]
    restarts = cam.restarts
    wait_until(lambda: cam.restarts >= restarts + 2, 5, message="paced retries while it is away")
    gone.rename(folder)  # plugged back in
    wait_until(lambda: cam.health()["state"] == "ok", 5, message="picked up again")
    assert [c.text for c in QrDecoder().decode(cam.latest(0.5).image)] == ["CG1:back"]


def test_missing_v4l2_device_is_disconnected_not_a_crash(started):
    cam = started(open_camera("/dev/video97", 640, 480, 15, **FAST))
    wait_until(lambda: cam.health()["state"] == "disconnected", 5, message="device missing")
    assert "cannot open" in cam.health()["detail"]
    assert cam.latest(0.05) is None
    # retried for ever, but paced (0.1 s doubling to 0.4 s), not in a hot loop
    before, started_at = cam.restarts, time.monotonic()
    wait_until(lambda: cam.restarts >= before + 3, 5, message="three more attempts")
    assert time.monotonic() - started_at >= 0.3


def test_stop_returns_even_while_a_read_hangs():
    cam = SimulatedCamera(fps=20, seed=3, **FAST)
    cam.start()
    wait_until(lambda: cam.latest(0.5), 5, message="a frame")
    cam.set_stalled(True)
    wait_until(lambda: cam.health()["state"] == "stalled", 5, message="stalled")
    stopper = threading.Thread(target=cam.stop)
    stopper.start()
    stopper.join(3)
    assert not stopper.is_alive()


class MjpegServer:
    """A real HTTP MJPEG stream (multipart/x-mixed-replace), like an IP camera's, on loopback."""

    def __init__(self, jpeg: bytes, port: int = 0, fps: float = 20):
        import http.server
        import socketserver

        self.jpeg, self.period = jpeg, 1 / fps
        self.frozen = threading.Event()
        self.closing = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not owner.closing.is_set():
                        if not owner.frozen.is_set():
                            part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(
                                owner.jpeg)
                            self.wfile.write(part + owner.jpeg + b"\r\n")
                        owner.closing.wait(owner.period)  # the stream's own frame clock
                except OSError:
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def test_http_stream_freeze_and_outage_are_recovered(started):
    jpeg = cv2.imencode(".jpg", code_frame("CG1:stream"))[1].tobytes()
    server = MjpegServer(jpeg)
    try:
        cam = started(open_camera(f"http://127.0.0.1:{server.port}/stream.mjpg", 640, 480, 20, **FAST))
        wait_until(lambda: cam.health()["state"] == "ok", 10, message="stream frames")
        assert [c.text for c in QrDecoder().decode(cam.latest(0.5).image)] == ["CG1:stream"]
        server.frozen.set()  # connection open, no more frames: read() blocks
        wait_until(lambda: cam.health()["state"] == "stalled", 5, message="frozen stream detected")
        server.frozen.clear()
        wait_until(lambda: cam.health()["state"] == "ok", 10, message="stream back after the freeze")
        port = server.port
        server.close()  # the camera goes off the network
        wait_until(lambda: cam.health()["state"] in ("disconnected", "stalled"), 10, message="outage reported")
        server = MjpegServer(jpeg, port=port)
        wait_until(lambda: cam.health()["state"] == "ok", 15, message="stream picked up again")
        assert cam.restarts >= 2
    finally:
        server.close()


def test_open_camera_picks_the_reader_for_each_kind_of_source(tmp_path):
    from drivers.camera.readers import source_kind

    assert source_kind(0) == source_kind("2") == source_kind("/dev/video0") == "device"
    assert source_kind("rtsp://10.0.0.5/stream1") == source_kind("http://cam/mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind(str(tmp_path / "clip.mp4")) == "file"
    assert isinstance(open_camera("sim", 320, 240, 10), SimulatedCamera)
    assert isinstance(open_camera("0"), OpenCvSource) and open_camera("0").source == 0
    with pytest.raises(ValueError):
        open_camera(str(tmp_path), fps=0)


def test_large_images_are_fitted_to_the_configured_size(tmp_path, started):
    big = cv2.resize(code_frame("CG1:big"), (1920, 1440), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "big.png"), big)
    cam = started(open_camera(str(tmp_path), 640, 480, 10, **FAST))
    frame = wait_until(lambda: cam.latest(0.5), 5, message="a frame")
    assert frame.image.shape == (480, 640, 3)
    assert [c.text for c in QrDecoder().decode(frame.image)] == ["CG1:big"]
