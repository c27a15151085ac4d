"""Per-segment append rates, as a segment store measures them for auto-scaling.

Pravega's segment store keeps exponentially weighted event and byte rates of every stream
segment (Java's ``SegmentAggregates``) and reports a segment whose rate stays beyond its
stream's target to the controller. :class:`RateMeter` keeps one such pair of rates per segment:
appends are counted as they are applied, and the rates are brought up to date (the counts since
the last update folded in with a weight that halves every ``half_life`` seconds) whenever they
are read. Time comes from ``clock`` (``time.monotonic`` by default; tests inject their own), so
the meter is deterministic and sans-I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["DEFAULT_HALF_LIFE", "RateMeter"]

#: How quickly an old rate fades, in seconds, by default.
DEFAULT_HALF_LIFE = 5.0


class _Rates:
    __slots__ = ("events", "bytes", "pending_events", "pending_bytes", "since")

    def __init__(self, now: float):
        self.events = 0.0
        self.bytes = 0.0
        self.pending_events = 0
        self.pending_bytes = 0
        self.since = now


class RateMeter:
    """Exponentially weighted events/s and bytes/s of each segment appended to."""

    def __init__(self, half_life: float = DEFAULT_HALF_LIFE,
                 clock: Callable[[], float] = time.monotonic):
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, not {half_life}")
        self.half_life = half_life
        self.clock = clock
        self._segments: dict[str, _Rates] = {}

    def record(self, segment: str, events: int, nbytes: int) -> None:
        """Count ``events`` events of ``nbytes`` bytes appended to ``segment`` now."""
        rates = self._segments.get(segment)
        if rates is None:
            rates = self._segments[segment] = _Rates(self.clock())
        rates.pending_events += events
        rates.pending_bytes += nbytes

    def rates(self, segment: str) -> tuple[float, float]:
        """``(events per second, bytes per second)`` of ``segment`` now; zeros for a segment
        nothing was appended to."""
        rates = self._segments.get(segment)
        if rates is None:
            return 0.0, 0.0
        now = self.clock()
        elapsed = now - rates.since
        if elapsed > 0:
            weight = math.exp(-elapsed * math.log(2) / self.half_life)
            rates.events = weight * rates.events + (1 - weight) * rates.pending_events / elapsed
            rates.bytes = weight * rates.bytes + (1 - weight) * rates.pending_bytes / elapsed
            rates.pending_events = rates.pending_bytes = 0
            rates.since = now
        return rates.events, rates.bytes

    def forget(self, segment: str) -> None:
        """Drop ``segment``'s rates (it was sealed or deleted)."""
        self._segments.pop(segment, None)
