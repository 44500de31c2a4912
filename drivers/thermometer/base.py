"""Values and the framing machinery shared by every thermometer protocol.

A codec turns the byte stream of one device family into `Frame`s (good data) and
`Rejected`s (bad data, with a cause). Codecs are pure: no I/O, no clocks, so the same
code is exercised by test vectors, property tests, the simulator and the real driver.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import struct
from typing import ClassVar

logger = logging.getLogger(__name__)

# Rejection causes, stable strings used in counters, logs and `thermo decode` output.
GARBAGE = "garbage"            # bytes that are not part of any frame (skipped while hunting)
CHECKSUM = "checksum"          # complete frame, wrong checksum
TRUNCATED = "truncated"        # a frame cut short (next header arrived, or stream ended)
BAD_FIELD = "bad_field"        # header found but a type/length/register field is impossible
OUT_OF_RANGE = "out_of_range"  # checksum fine but the value is outside the device's physical range
DEVICE_ERROR = "device_error"  # the device itself reports a failure (nan, Modbus exception)
UNPARSABLE = "unparsable"      # text line that matches no known format


@dataclasses.dataclass(frozen=True)
class Reading:
    """One temperature reading as it leaves a driver (°C)."""

    object_c: float | None
    ambient_c: float | None
    body_c: float | None = None
    sensor: str = ""
    ts: float = 0.0  # time.monotonic() when the last byte was read
    emissivity: float | None = None
    hotspot: tuple[int, int] | None = None  # arrays: (row, col) of the hottest pixel
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"object_c": _round(self.object_c), "ambient_c": _round(self.ambient_c),
                "body_c": _round(self.body_c)}


@dataclasses.dataclass(frozen=True)
class Frame:
    """A frame that passed every check. `kind` says what it carries."""

    kind: str = "temperature"  # temperature | emissivity | ack | info
    object_c: float | None = None
    ambient_c: float | None = None
    body_c: float | None = None
    emissivity: float | None = None
    hotspot: tuple[int, int] | None = None
    flags: tuple[str, ...] = ()
    raw: bytes = b""

    ok: ClassVar[bool] = True

    def to_json(self) -> dict:
        out: dict = {"ok": True, "kind": self.kind, "object_c": _round(self.object_c),
                     "ambient_c": _round(self.ambient_c)}
        if self.body_c is not None:
            out["body_c"] = _round(self.body_c)
        if self.emissivity is not None:
            out["emissivity"] = round(self.emissivity, 4)
        if self.hotspot is not None:
            out["hotspot"] = list(self.hotspot)
        if self.flags:
            out["flags"] = list(self.flags)
        return out


@dataclasses.dataclass(frozen=True)
class Rejected:
    cause: str
    detail: str = ""
    raw: bytes = b""

    ok: ClassVar[bool] = False

    def to_json(self) -> dict:
        error = f"{self.cause}: {self.detail}" if self.detail else self.cause
        return {"ok": False, "error": error, "cause": self.cause, "hex": self.raw[:64].hex()}


Result = Frame | Rejected


class FrameError(Exception):
    """Raised inside a codec when a frame must be rejected; `cause` is one of the constants."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(detail or cause)
        self.cause = cause
        self.detail = detail


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def sum8(data: bytes) -> int:
    return sum(data) & 0xFF


def in_range(value: float, bounds: tuple[float, float], what: str) -> float:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise FrameError(OUT_OF_RANGE, f"{what} {value:.2f} °C outside {lo:g}..{hi:g}")
    return value


class Codec:
    """Base of every protocol: a rolling buffer fed with bytes, yielding results.

    Subclasses set the class attributes and implement `_parse(buf)`, which looks at the
    start of the buffer (already positioned on a candidate frame start) and returns
    (consumed, result) or None when more bytes are needed.
    """

    name: ClassVar[str] = ""
    default_baud: ClassVar[int] = 9600
    probe_bauds: ClassVar[tuple[int, ...]] = ()  # alternates to try after the default
    frame_period_s: ClassVar[float] = 0.1  # expected time between readings
    polled: ClassVar[bool] = False  # True: the host must send poll_commands() to get data
    poll_interval_s: ClassVar[float] = 0.25
    object_range: ClassVar[tuple[float, float]] = (-70.0, 380.0)
    ambient_range: ClassVar[tuple[float, float]] = (-40.0, 125.0)
    max_buffer: ClassVar[int] = 4096
    typical_frame_bytes: ClassVar[int] = 9
    needs_dtr: ClassVar[bool] = False

    def __init__(self, **options: object) -> None:
        self._buf = bytearray()
        self._quiet = 0  # bytes still to skip silently (the rest of a frame already rejected)
        self._garbage = bytearray()  # skipped bytes not yet reported
        self.rejected: collections.Counter[str] = collections.Counter()
        self.frames = 0
        if options:
            raise TypeError(f"{self.name}: unknown option(s) {', '.join(sorted(options))}")

    # ---- host commands (override where the device has them) ----
    def start_commands(self) -> list[bytes]:
        """Sent after opening the port and whenever the device went silent."""
        return []

    def poll_commands(self) -> list[bytes]:
        """Sent every poll_interval_s for polled devices."""
        return []

    def emissivity_command(self, emissivity: float) -> bytes | None:
        return None

    def rate_command(self, hz: float) -> bytes | None:
        return None

    def probe_window(self, baud: int) -> float:
        """How long to listen at one baud rate before trying the next."""
        period = self.poll_interval_s if self.polled else self.frame_period_s
        return max(0.5, 3 * period + 3 * self.typical_frame_bytes * 10 / baud)

    def on_reply_timeout(self) -> list[Result]:
        """A polled device did not finish its reply in time: drop the partial reply."""
        return self.flush()

    # ---- parsing ----
    def feed(self, data: bytes) -> list[Result]:
        self._buf += data
        out: list[Result] = []
        while self._buf:
            start = self._find_start(self._buf)
            if start is None:  # nothing that could begin a frame: keep a possible partial start
                keep = self._partial_start_len(self._buf)
                self._skip(len(self._buf) - keep)
                break
            if start:
                self._skip(start)
            try:
                parsed = self._parse(self._buf)
            except FrameError:  # impossible fields after a header: the header was noise
                self._skip(1)
                continue
            if parsed is None:
                if len(self._buf) > self.max_buffer:  # never grow without bound
                    self._skip(1)
                    continue
                break
            consumed, result = parsed
            self._emit_garbage(out)
            if isinstance(result, Rejected):
                self.rejected[result.cause] += 1
                logger.debug("%s: rejected frame (%s %s) %s", self.name, result.cause,
                             result.detail, result.raw[:32].hex())
                out.append(result)
                self._quiet = max(self._quiet, len(result.raw) - consumed)
            elif result is not None:
                self.frames += 1
                self._quiet = 0
                out.append(result)
            del self._buf[:consumed]
        self._emit_garbage(out)
        return out

    def flush(self) -> list[Result]:
        """End of stream: whatever is left is a cut frame or garbage."""
        out: list[Result] = []
        self._emit_garbage(out)
        if self._buf:
            start = self._find_start(self._buf)
            if start == 0 or (start is None and self._partial_start_len(self._buf) == len(self._buf)):
                self._reject(out, FrameError(TRUNCATED, f"stream ended after {len(self._buf)} bytes of a frame"),
                             bytes(self._buf))
            else:
                self._skip(len(self._buf))
            self._buf.clear()
        self._emit_garbage(out)
        self._quiet = 0
        return out

    def reset(self) -> None:
        """Forget partial data (after a reconnect or a reply timeout)."""
        self._buf.clear()
        self._garbage.clear()
        self._quiet = 0

    def _find_start(self, buf: bytearray) -> int | None:
        raise NotImplementedError

    def _partial_start_len(self, buf: bytearray) -> int:
        return 0

    def _parse(self, buf: bytearray) -> tuple[int, Result | None] | None:
        raise NotImplementedError

    def _skip(self, n: int) -> None:
        """Drop n bytes from the buffer; those beyond an already-rejected frame are garbage."""
        if n <= 0:
            return
        quiet = min(self._quiet, n)
        self._quiet -= quiet
        self._garbage += self._buf[quiet:n]
        del self._buf[:n]

    def _emit_garbage(self, out: list[Result]) -> None:
        if self._garbage:
            raw = bytes(self._garbage)
            self._garbage.clear()
            self._reject(out, FrameError(GARBAGE, f"{len(raw)} bytes skipped"), raw)

    def _reject(self, out: list[Result], err: FrameError, raw: bytes) -> None:
        self.rejected[err.cause] += 1
        logger.debug("%s: rejected (%s %s) %s", self.name, err.cause, err.detail, raw[:32].hex())
        out.append(Rejected(err.cause, err.detail, raw))

    # ---- readings ----
    def to_reading(self, frame: Frame, ts: float) -> Reading | None:
        """Turn a temperature frame into a reading (codecs that combine frames override)."""
        if frame.kind != "temperature":
            return None
        return Reading(frame.object_c, frame.ambient_c, frame.body_c, sensor=self.name, ts=ts,
                       emissivity=frame.emissivity, hotspot=frame.hotspot, flags=frame.flags)


class HeaderCodec(Codec):
    """Frames that begin with a fixed header: hunt for it, check the checksum, resync.

    Subclasses implement `_frame_length(buf)` (bytes in the frame, or None to wait),
    `_checksum_ok(frame)` and `_decode(frame)`.
    """

    header: ClassVar[bytes] = b""
    min_length: ClassVar[int] = 1  # bytes needed before _frame_length can answer

    def _find_start(self, buf: bytearray) -> int | None:
        idx = buf.find(self.header)
        return None if idx < 0 else idx

    def _partial_start_len(self, buf: bytearray) -> int:
        for keep in range(min(len(self.header) - 1, len(buf)), 0, -1):
            if buf.endswith(self.header[:keep]):
                return keep
        return 0

    def _parse(self, buf: bytearray) -> tuple[int, Result | None] | None:
        if len(buf) < max(self.min_length, len(self.header)):
            return None
        length = self._frame_length(buf)
        if length is None or len(buf) < length:
            return None
        frame = bytes(buf[:length])
        if not self._checksum_ok(frame):
            cut = frame.find(self.header, 1)
            if cut > 0 and self._plausible_restart(bytes(buf[cut:])):
                # another frame starts inside this one: this frame was cut short
                return cut, Rejected(TRUNCATED, f"frame cut after {cut} bytes", frame[:cut])
            return 1, Rejected(CHECKSUM, self._checksum_detail(frame), frame)
        try:
            return length, self._decode(frame)
        except FrameError as err:
            return length, Rejected(err.cause, err.detail, frame)
        except (ValueError, IndexError, struct.error) as err:  # fields no real device would send
            logger.warning("%s: undecodable frame %s: %s", self.name, frame[:32].hex(), err)
            return length, Rejected(BAD_FIELD, f"undecodable: {err}", frame)

    def _plausible_restart(self, rest: bytes) -> bool:
        """Whether `rest` (starting on a header) looks like a real frame start."""
        try:
            length = self._frame_length(bytearray(rest))
        except FrameError:
            return False
        return length is None or len(rest) < length or self._checksum_ok(rest[:length])

    def _checksum_detail(self, frame: bytes) -> str:
        return f"{len(frame)}-byte frame"

    def _frame_length(self, buf: bytearray) -> int | None:
        raise NotImplementedError

    def _checksum_ok(self, frame: bytes) -> bool:
        raise NotImplementedError

    def _decode(self, frame: bytes) -> Result:
        raise NotImplementedError


class Sum8HeaderCodec(HeaderCodec):
    """A HeaderCodec whose frames end in one byte: the sum of all bytes before it, mod 256."""

    def _checksum_ok(self, frame: bytes) -> bool:
        return sum8(frame[:-1]) == frame[-1]

    def _checksum_detail(self, frame: bytes) -> str:
        return f"sum 0x{sum8(frame[:-1]):02X} != 0x{frame[-1]:02X}"
