"""Where an event with a routing key goes: the hash Pravega's Java and Rust clients use, and the
choice of a segment by key range. Picks its implementation once, at import.

As in :mod:`pravega_wire.codec`, the compiled twin (``pravega_wire._hash``) is used when it is
installed, unless ``PRAVEGA_WIRE_NO_EXTENSIONS`` is set to a non-empty value other than ``0``;
then, or when the extension is missing, the pure-Python twin (``pravega_wire._hash_py``) is.
``IMPLEMENTATION`` says which one loaded; both give the same positions. The names are also
exported by :mod:`pravega_wire.client.controller`, where they were first defined.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._mode import pure_requested

__all__ = ["IMPLEMENTATION", "impl", "ROUTING_KEY_SEED", "murmur3_x64_128", "hash_routing_key",
           "hash_bytes_to_range", "segment_for_key", "KeyRanges"]

if pure_requested():
    from . import _hash_py as impl
else:
    try:
        from . import _hash as impl  # type: ignore[no-redef]
    except ImportError:  # no compiler at install time: the pure twin stands in
        from . import _hash_py as impl  # type: ignore[no-redef]

IMPLEMENTATION: str = impl.IMPLEMENTATION
ROUTING_KEY_SEED: int = impl.ROUTING_KEY_SEED
murmur3_x64_128 = impl.murmur3_x64_128
hash_routing_key = impl.hash_routing_key
hash_bytes_to_range = impl.hash_bytes_to_range

_Ranged = TypeVar("_Ranged")


class KeyRanges:
    """A stream's segments ordered by the top of their key ranges (``max_key``), built once so
    that placing an event is one hash and one binary search: :meth:`segment_for`."""

    __slots__ = ("segments", "max_keys", "_last")

    def __init__(self, ranges: Sequence[Any]):
        if not ranges:
            raise ValueError("no segments to route to: the stream is sealed")
        self.segments = sorted(ranges, key=lambda segment: segment.max_key)
        self.max_keys = [segment.max_key for segment in self.segments]
        self._last = len(self.segments) - 1

    def index_of(self, position: float) -> int:
        """The index in :attr:`segments` of the one with the smallest ``max_key`` at or above
        ``position`` (Java's ``ceilingEntry``, Rust's ``get_next``); the last one above all."""
        index = bisect.bisect_left(self.max_keys, position)
        return index if index < self._last else self._last

    def segment_for(self, routing_key: str | None, *, rust_compatible: bool = False,
                    rand: Callable[[], float] = random.random) -> Any:
        """The segment an event with ``routing_key`` goes to; without a key, a position drawn
        by ``rand()`` (uniform in [0, 1))."""
        position = rand() if routing_key is None else hash_routing_key(
            routing_key, rust_compatible=rust_compatible)
        return self.segments[self.index_of(position)]


def segment_for_key(routing_key: str | None, ranges: Sequence[_Ranged], *,
                    rust_compatible: bool = False,
                    rand: Callable[[], float] = random.random) -> _Ranged:
    """The segment of ``ranges`` (a stream's current segments, records with a ``max_key``) that
    an event with ``routing_key`` goes to: the one with the smallest ``max_key`` at or above the
    key's hash position (Java's ``ceilingEntry``, Rust's ``get_next``). Without a key the
    position is ``rand()``, uniform in [0, 1). Raises ValueError for an empty ``ranges`` (a
    sealed stream). To place many events, build a :class:`KeyRanges` once."""
    return KeyRanges(ranges).segment_for(routing_key, rust_compatible=rust_compatible, rand=rand)
