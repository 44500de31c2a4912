"""Gap repair: ask a gate to send again the events the centre is missing.

The per-gate `seq` lets the server see holes. Holes are normal for a moment (QoS 1
messages can arrive out of order), so a hole is only asked for once it has been seen in
two consecutive rounds. The tail is covered too: the gate's retained state reports its
last seq and its queue depth; if the queue is empty but the server's highest seq is
lower, the difference is missing. A broker that lost messages (a restart with shared
subscriptions, a crash before persistence) is thus healed from the gates' outboxes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from checkgate import protocol
from server.jobs import PeriodicJob

logger = logging.getLogger(__name__)

MAX_RANGES_PER_GATE = 20


class GapRepair(PeriodicJob):
    name = "gap-repair"

    def __init__(self, store, publish: Callable[[str, bytes], bool], interval_s: float = 15.0):
        super().__init__(interval_s)
        self.store = store
        self.publish = publish  # (topic, payload) -> acknowledged; never retained
        self.requested = 0
        self._seen: dict[str, set[tuple[int, int]]] = {}

    def missing(self, gate) -> set[tuple[int, int]]:
        ranges = set(self.store.gaps(gate.gate_id, MAX_RANGES_PER_GATE))
        try:
            queue = (json.loads(gate.health or "{}") or {}).get("queue") or {}
        except (ValueError, TypeError, AttributeError):
            queue = {}
        last, pending = queue.get("last_seq"), queue.get("pending")
        top = gate.max_seq or 0
        if isinstance(last, int) and pending == 0 and last > top:
            ranges.add((top + 1, last))
        return ranges

    def run_once(self) -> int:
        asked = 0
        current: dict[str, set[tuple[int, int]]] = {}
        for gate in self.store.gates():
            ranges = self.missing(gate)
            current[gate.gate_id] = ranges
            for first, last in sorted(ranges & self._seen.get(gate.gate_id, set())):
                payload = json.dumps({"from_seq": first, "to_seq": last}).encode()
                if self.publish(protocol.resend_topic(gate.gate_id), payload):
                    asked += 1
                    logger.warning("gate %s: seq %d-%d missing; asked the gate to send them again",
                                   gate.gate_id, first, last)
        self._seen = current
        self.requested += asked
        return asked
