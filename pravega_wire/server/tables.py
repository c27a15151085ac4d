"""Table segments of the embedded segment store: Pravega's key-value segments, with the semantics
the clients rely on (CONTROLLER.md §5.3; the Rust client keeps its reader-group state in one).

Plain in-memory state, no I/O: :class:`Table` applies batches atomically and reports what a
durable store has to log (:meth:`Table.snapshot` / :meth:`Table.restore` for a whole table).

- Keys and values are opaque bytes, stored as given.
- Every write of a key gives it a new version: the table's length (its byte position, as on a
  real store, where the version is the offset of the entry in the table segment) at the time of
  the write. The length then grows by the size of the entry record, so versions strictly
  increase. A removal also writes a record and moves the length on.
- Conditional batches (``key_version``): ``NO_VERSION`` (``Long.MIN_VALUE``) = unconditional,
  ``NOT_EXISTS`` (−1) = the key must be absent, ``v ≥ 0`` = the key's current version must be
  ``v``. Every condition of a batch is checked before anything is applied; one failure applies
  nothing. A version ``≥ 0`` on a missing key is :class:`KeyNotFoundError`
  (TableKeyDoesNotExist), any other mismatch :class:`BadKeyVersionError` (TableKeyBadVersion).
- A batch may also be conditioned on the table's length (``table_offset`` ≠ −1):
  :class:`BadTableOffsetError` when it differs.
- Delta reads return the live entries whose version is ≥ a position, in version order, and the
  position just past the last one returned; an exhausted read returns no entries.
- Iteration (ReadTableKeys / ReadTableEntries) goes in key order; the continuation token is the
  last key returned.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "NO_VERSION", "NOT_EXISTS", "NO_OFFSET", "ENTRY_OVERHEAD", "TableError", "KeyNotFoundError",
    "BadKeyVersionError", "BadTableOffsetError", "TableNotEmptyError", "Entry", "Table",
]

#: ``TableKey.NO_VERSION``: an unconditional update or removal.
NO_VERSION = -(2 ** 63)
#: ``TableKey.NOT_EXISTS``: the key must not exist (and the version of a missing key in replies).
NOT_EXISTS = -1
#: ``NULL_TABLE_SEGMENT_OFFSET``: no condition on the table's length.
NO_OFFSET = -1
#: Bytes a table entry record takes besides its key and value (a header, as on a real store).
ENTRY_OVERHEAD = 16


class TableError(Exception):
    """A table operation that was refused; nothing was applied."""


class KeyNotFoundError(TableError):
    """A conditional update or removal named a version for a key that does not exist."""


class BadKeyVersionError(TableError):
    """A key's current version is not the one a conditional update or removal expected."""


class BadTableOffsetError(TableError):
    """The table's length is not the one the batch was conditioned on."""


class TableNotEmptyError(TableError):
    """A table that had to be empty (DeleteTableSegment with mustBeEmpty) is not."""


class Entry(NamedTuple):
    """One table entry as returned by reads: ``version`` is the key's current version."""

    key: bytes
    value: bytes
    version: int


class Table:
    """The contents of one table segment."""

    def __init__(self) -> None:
        #: key -> (version, value)
        self._entries: dict[bytes, tuple[int, bytes]] = {}
        #: versions of every write, in order (some superseded), with their keys
        self._versions: list[int] = []
        self._keys_by_version: list[bytes] = []
        #: The table's length: the position the next entry record is written at.
        self.length = 0

    # ---- reading ------------------------------------------------------------------------------

    @property
    def entry_count(self) -> int:
        """Number of live keys."""
        return len(self._entries)

    def get(self, keys: Iterable[bytes]) -> list[Entry | None]:
        """The current entry of each key, or None for a missing one."""
        out: list[Entry | None] = []
        for key in keys:
            found = self._entries.get(bytes(key))
            out.append(None if found is None else Entry(bytes(key), found[1], found[0]))
        return out

    def delta(self, from_position: int, max_count: int,
              max_bytes: int | None = None) -> tuple[list[Entry], bool, int]:
        """Live entries with version ≥ ``from_position`` in version order, at most
        ``max_count`` and, past the first, no more once keys and values total ``max_bytes``
        (at least one is returned when any is left).

        Returns ``(entries, reached_end, last_position)``: ``last_position`` is the position
        just past the last entry returned (what the client asks from next), or the table's
        length when nothing is returned; ``reached_end`` says no live entry is left after them.
        """
        limit = max(1, max_count)
        budget = _Budget(max_bytes)
        out: list[Entry] = []
        versions, keys = self._versions, self._keys_by_version
        for index in range(bisect.bisect_left(versions, from_position), len(versions)):
            version, key = versions[index], keys[index]
            current = self._entries.get(key)
            if current is None or current[0] != version:
                continue  # superseded or removed
            if len(out) == limit or budget.spent:
                return out, False, self._end_of(out[-1])
            out.append(Entry(key, current[1], version))
            budget.spend(len(key) + len(current[1]))
        if not out:
            return out, True, max(from_position, self.length)
        return out, True, self._end_of(out[-1])

    def iterate(self, after: bytes | None, from_key: bytes | None, to_key: bytes | None,
                max_count: int, max_bytes: int | None = None) -> list[Entry]:
        """Up to ``max_count`` live entries in key order (and, past the first, no more once
        keys and values total ``max_bytes``): keys after ``after`` (the continuation token),
        within ``[from_key, to_key]`` where given."""
        keys = sorted(self._entries)
        start = 0
        if after:
            start = bisect.bisect_right(keys, after)
        if from_key:
            start = max(start, bisect.bisect_left(keys, from_key))
        budget = _Budget(max_bytes)
        out: list[Entry] = []
        for key in keys[start:]:
            if (to_key and key > to_key) or len(out) >= max(1, max_count) or budget.spent:
                break
            version, value = self._entries[key]
            out.append(Entry(key, value, version))
            budget.spend(len(key) + len(value))
        return out

    # ---- writing ------------------------------------------------------------------------------

    def check_update(self, entries: Sequence[tuple[bytes, bytes, int]],
                     table_offset: int = NO_OFFSET) -> None:
        """Raise the :class:`TableError` an :meth:`update` of ``entries`` would raise."""
        self._check_offset(table_offset)
        for key, _value, version in entries:
            self._check_version(bytes(key), version)

    def update(self, entries: Sequence[tuple[bytes, bytes, int]],
               table_offset: int = NO_OFFSET) -> list[int]:
        """Apply ``(key, value, expected_version)`` entries atomically; returns the new version
        of each, in order. Raises a :class:`TableError` (and applies nothing) if any
        condition fails."""
        self.check_update(entries, table_offset)
        versions = []
        for key, value, _version in entries:
            versions.append(self._put(bytes(key), bytes(value)))
        return versions

    def remove(self, keys: Sequence[tuple[bytes, int]], table_offset: int = NO_OFFSET) -> None:
        """Remove ``(key, expected_version)`` keys atomically. An unconditional removal of a
        missing key does nothing."""
        self._check_offset(table_offset)
        for key, version in keys:
            self._check_version(bytes(key), version)
        for key, _version in keys:
            key = bytes(key)
            if self._entries.pop(key, None) is not None:
                self.length += ENTRY_OVERHEAD + len(key)

    def _put(self, key: bytes, value: bytes) -> int:
        version = self.length
        self._entries[key] = (version, value)
        self._versions.append(version)
        self._keys_by_version.append(key)
        self.length = version + ENTRY_OVERHEAD + len(key) + len(value)
        self._compact_if_sparse()
        return version

    def _check_offset(self, table_offset: int) -> None:
        if table_offset != NO_OFFSET and table_offset != self.length:
            raise BadTableOffsetError(
                f"table length is {self.length}, the request expected {table_offset}")

    def _check_version(self, key: bytes, version: int) -> None:
        if version == NO_VERSION:
            return
        current = self._entries.get(key)
        if version == NOT_EXISTS:
            if current is not None:
                raise BadKeyVersionError(f"key {key!r} exists (version {current[0]})")
            return
        if current is None:
            raise KeyNotFoundError(f"key {key!r} does not exist (expected version {version})")
        if current[0] != version:
            raise BadKeyVersionError(
                f"key {key!r} has version {current[0]}, the request expected {version}")

    @staticmethod
    def _end_of(entry: Entry) -> int:
        """The position just past ``entry``'s record."""
        return entry.version + ENTRY_OVERHEAD + len(entry.key) + len(entry.value)

    def _compact_if_sparse(self) -> None:
        """Drop superseded versions from the version index once they dominate it."""
        if len(self._versions) > 64 and len(self._versions) > 4 * len(self._entries):
            live = sorted((version, key) for key, (version, _value) in self._entries.items())
            self._versions = [v for v, _k in live]
            self._keys_by_version = [k for _v, k in live]

    # ---- persistence --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole table as a JSON-compatible dict (see :meth:`restore`)."""
        return {
            "length": self.length,
            "entries": [[_b64(key), _b64(value), version]
                        for key, (version, value) in sorted(self._entries.items(),
                                                            key=lambda kv: kv[1][0])],
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Table:
        """A table equal to the one :meth:`snapshot` described."""
        table = cls()
        for key_text, value_text, version in state["entries"]:
            key = base64.b64decode(key_text)
            table._entries[key] = (int(version), base64.b64decode(value_text))
            table._versions.append(int(version))
            table._keys_by_version.append(key)
        table.length = int(state["length"])
        return table

    def __repr__(self) -> str:
        return f"<Table entries={len(self._entries)} length={self.length}>"


class _Budget:
    """A byte budget for one read (unlimited when ``limit`` is None)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None):
        self.limit = limit
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n

    @property
    def spent(self) -> bool:
        return self.limit is not None and self.used >= self.limit


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
