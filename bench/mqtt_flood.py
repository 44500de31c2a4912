"""A lean MQTT 3.1.1 QoS 1 publisher for the ingest benchmark's load generators.

In the field every gate publishes from its own board; in the benchmark two
generator processes stand in for hundreds of gates on the same two cores as the
broker, the server and the database. paho spends about 95 µs of CPU per QoS 1
message (packet objects, locks, callbacks), which on this machine takes more CPU
than the server it is meant to load. This publisher frames PUBLISH packets
itself and writes them in batches, keeping the same wire behaviour a gate has:
MQTT 3.1.1, QoS 1, one packet id per message, a bounded in-flight window that
only PUBACKs from the broker reopen.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time

PUBACK = 0x40
CONNACK = 0x20


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _utf8(client_id)
    return bytes([0x10]) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH (first byte 0x32: type 3, QoS 1, no retain)."""
    body = _utf8(topic) + struct.pack("!H", packet_id) + payload
    return bytes([0x32]) + _remaining_length(len(body)) + body


class FloodPublisher:
    """Publishes prepared (topic, payload) pairs as fast as the broker acknowledges them."""

    def __init__(self, host: str, port: int, client_id: str, *, window: int = 1000, batch: int = 50):
        self.window = window
        self.batch = batch
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id))
        connack = self._read_exact(4)
        if connack[0] != CONNACK or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        self._pending = bytearray()
        self.acked = 0

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self, block: bool) -> int:
        """Count the PUBACKs that have arrived (waiting for at least one if `block`)."""
        self.sock.setblocking(block)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return 0
        finally:
            self.sock.setblocking(True)
        if not data:
            raise ConnectionError("broker closed the connection")
        self._pending += data
        # a 3.1.1 broker sends this client nothing but 4-byte PUBACKs
        whole = len(self._pending) // 4
        for i in range(whole):
            if self._pending[4 * i] != PUBACK:
                raise ConnectionError(f"unexpected packet type {self._pending[4 * i]:#x} from the broker")
        del self._pending[:whole * 4]
        self.acked += whole
        return whole

    def publish_all(self, messages, stamp=None, rate: float = 0.0) -> float:
        """Publish every (topic, payload); `stamp(payload)` may rewrite a payload just before it
        is sent. With `rate` > 0 messages are paced to that many per second. Returns when the
        broker has acknowledged them all; the result is the elapsed time in seconds."""
        t0 = time.monotonic()
        sent = 0
        packet_id = 0
        total = len(messages)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while self.acked < total:
            room = min(self.window - (sent - self.acked), total - sent, self.batch)
            if rate:
                due = int((time.monotonic() - t0) * rate) + 1
                room = min(room, due - sent)
            if room > 0:
                out = bytearray()
                for topic, payload in messages[sent:sent + room]:
                    packet_id = packet_id % 65535 + 1
                    out += publish_packet(topic, stamp(payload) if stamp else payload, packet_id)
                self.sock.sendall(out)
                sent += room
                self._read_acks(block=False)
            elif sent - self.acked >= self.window or sent == total:
                self._read_acks(block=True)
            else:  # paced and ahead of schedule
                sel.select(timeout=max(0.0, (sent + 1) / rate - (time.monotonic() - t0)))
                self._read_acks(block=False)
        sel.close()
        return time.monotonic() - t0

    def close(self) -> None:
        try:
            self.sock.sendall(bytes([0xE0, 0x00]))  # DISCONNECT
        except OSError:
            pass
        self.sock.close()
