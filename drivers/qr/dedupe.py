"""Report a code once per window, however many consecutive frames show it."""

from __future__ import annotations

import time

from drivers.qr.chain import DecodedCode

# Beyond this many remembered codes, expired entries are dropped (a busy gate sees
# a few hundred people an hour; this bounds memory, not behaviour).
_PRUNE_AT = 512


class CodeDeduper:
    """`fresh(codes, now)` passes a code on the first time it is seen, then suppresses the
    same payload bytes until `window_s` seconds after that report. One per camera loop."""

    def __init__(self, window_s: float = 5.0):
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        self.window_s = window_s
        self._reported: dict[bytes, float] = {}

    def fresh(self, codes: list[DecodedCode], now: float | None = None) -> list[DecodedCode]:
        now = time.monotonic() if now is None else now
        out = []
        for code in codes:
            last = self._reported.get(code.raw)
            if last is None or now - last >= self.window_s:
                self._reported[code.raw] = now
                out.append(code)
        if len(self._reported) > _PRUNE_AT:
            self._reported = {k: t for k, t in self._reported.items() if now - t < self.window_s}
        return out

    def forget(self, raw: bytes | None = None) -> None:
        """Report `raw` (or every code) again the next time it is seen, e.g. after a re-scan prompt."""
        if raw is None:
            self._reported.clear()
        else:
            self._reported.pop(raw, None)
