"""Start and stop a private Mosquitto process.

Used by `checkgate demo` and by the test fixtures: each gets its own broker on a
free port with a generated config, never the system's broker.
"""

from __future__ import annotations

import logging
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("mosquitto not found: install the Debian package 'mosquitto'")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class MosquittoProcess:
    """A Mosquitto broker in its own process, listening on 127.0.0.1:port.

    `extra_config` is appended to the generated config (e.g. listeners with TLS or
    password files); by default the broker allows anonymous clients and keeps a
    persistence file in its work dir so a restart keeps queued messages.
    """

    def __init__(self, port: int | None = None, workdir: str | os.PathLike | None = None,
                 extra_config: str = "", config_text: str | None = None, persistence: bool = True):
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = pathlib.Path(workdir or tempfile.mkdtemp(prefix="checkgate-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_config = extra_config
        self.config_text = config_text
        self.persistence = persistence
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"

    def _config(self) -> str:
        if self.config_text is not None:
            return self.config_text
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            # keep the invoking user: as root, mosquitto would switch to 'mosquitto' and then
            # could not write its persistence file into our work dir
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "autosave_interval 5",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        self.conf_path.write_text(self._config())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}: {self.log_tail()}")
        logger.info("mosquitto listening on 127.0.0.1:%d (pid %d)", self.port, self.proc.pid)
        return self

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
