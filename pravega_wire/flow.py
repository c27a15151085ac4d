"""Flows: the users of a shared connection, and their request ids (PDP-36).

``requestId = (flow_id << 32) | sequence``. Flow ids come from one process-wide allocator:
1, 2, …, 2**31 − 1, then 1 again; never 0 (reserved for a connection with flows disabled) and
never negative. The sequence keeps all 32 bits (Java masks it to 28).
"""

from __future__ import annotations

import itertools
import threading

from .codec import pack_request_id, unpack_request_id

__all__ = ["Flow", "pack_request_id", "unpack_request_id", "next_flow_id", "MAX_FLOW_ID",
           "FLOW_DISABLED"]

#: The largest flow id; the allocator wraps from it back to 1.
MAX_FLOW_ID = 2 ** 31 - 1
#: The flow id of the single pseudo-flow of an unpooled connection.
FLOW_DISABLED = 0
_MAX_SEQUENCE = 0xFFFFFFFF

_counter = itertools.count()
_lock = threading.Lock()


def next_flow_id() -> int:
    """The next flow id of the process-wide allocator (1 … 2**31 − 1, wrapping to 1)."""
    with _lock:
        return next(_counter) % MAX_FLOW_ID + 1


class Flow:
    """A flow id and its request sequence.

    ``Flow.create()`` allocates a new id; ``next_request_id()`` advances the sequence (the first
    call gives sequence 1, as Java's ``getNextSequenceNumber``) and ``request_id`` reads the
    current value without advancing (sequence 0 for a fresh flow: what segment writers and
    readers put on every request).
    """

    __slots__ = ("flow_id", "sequence")

    def __init__(self, flow_id: int, sequence: int = 0):
        pack_request_id(flow_id, sequence)  # validates both
        self.flow_id = flow_id
        self.sequence = sequence

    @classmethod
    def create(cls) -> "Flow":
        return cls(next_flow_id())

    @classmethod
    def from_request_id(cls, request_id: int) -> "Flow":
        flow_id, sequence = unpack_request_id(request_id)
        return cls(flow_id, sequence)

    @property
    def request_id(self) -> int:
        return pack_request_id(self.flow_id, self.sequence)

    def next_request_id(self) -> int:
        self.sequence = 0 if self.sequence >= _MAX_SEQUENCE else self.sequence + 1
        return pack_request_id(self.flow_id, self.sequence)

    def __repr__(self) -> str:
        return f"Flow(flow_id={self.flow_id}, sequence={self.sequence})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return (self.flow_id, self.sequence) == (other.flow_id, other.sequence)

    __hash__ = None  # mutable
