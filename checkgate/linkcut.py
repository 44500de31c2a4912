"""A TCP relay between a gate and the broker that can cut the link on demand.

The demo's chaos mode and the tests use it to take a gate off the network the way a
failing 4G modem would: open connections are dropped and new ones refused until the
link is restored. It only listens on 127.0.0.1.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading

from checkgate.broker import free_port

logger = logging.getLogger(__name__)


class LinkCut:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, name=f"linkcut-{self.port}", daemon=True)

    def start(self) -> LinkCut:
        self._thread.start()
        return self

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            for a, b in self._pairs:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
            self._pairs.clear()
        logger.debug("link %d cut", self.port)

    def restore(self) -> None:
        self._up.set()
        logger.debug("link %d restored", self.port)

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()
        self._thread.join(2)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set() and self._up.is_set():
                for key, _ in sel.select(0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._pairs = [p for p in self._pairs if p != (a, b)]
