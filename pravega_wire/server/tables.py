"""Table segments of the embedded segment store: Pravega's key-value segments, laid out byte for
byte as Pravega's segment store lays them out (the Rust client keeps its reader-group state in
one; the controller's metadata lives in them).

Plain state and pure functions, no I/O: :class:`Table` is the index of one table segment (key →
current version and value). The table's bytes themselves are the segment's data (kept and made
durable by :mod:`.storage`, readable with ReadSegment like any segment); every write of the
table returns the bytes to append, and :meth:`Table.rebuild` recovers the index from them.

The layout (Java's ``EntrySerializer``): every update and every removal is one record

- header (17 bytes, big-endian): serialization version ``0`` (1 byte), key length (4), value
  length (4; ``-1`` for a removal), explicit entry version (8; ``NO_VERSION`` unless the record
  is a compaction copy);
- the key, then the value (none for a removal).

The version of a key is the offset of its record in the segment (or the record's explicit
version), so versions strictly increase and a table's length counts removal records too.

Two layouts, chosen when the table is created (``CreateTableSegment.key_length``):

- **hash tables** (key length 0, Java's ``HashTableSegmentLayout``): keys of any length up to
  8 KiB. A removal writes a removal record for every key of the batch, present or not.
  Iteration (ReadTableKeys / ReadTableEntries) goes in the order of the keys' hashes (Java's
  ``KeyHasher``: the first 16 bytes of the key's SHA-256 as a UUID, compared as two signed
  longs); the continuation token serializes the hash of the last bucket returned. Key ranges
  are refused.
- **fixed-key-length tables** (``FixedKeyLengthTableSegmentLayout``): every key has exactly
  ``key_length`` bytes; removals only change the index (no record); iteration goes in key order
  (unsigned bytes) within an optional ``[from_key, to_key]`` range and takes no continuation
  token; delta reads and ``must_be_empty`` deletes are unsupported.

Conditional batches (``key_version``): ``NO_VERSION`` (``Long.MIN_VALUE``) = unconditional,
``NOT_EXISTS`` (−1) = the key must be absent, ``v ≥ 0`` = the key's current version must be
``v``. Every condition of a batch is checked before anything is applied; one failure applies
nothing. A version ``≥ 0`` on a missing key is :class:`KeyNotFoundError` (TableKeyDoesNotExist),
any other mismatch :class:`KeyVersionMismatchError` (TableKeyBadVersion). A batch may also be
conditioned on the table's length (``table_offset`` ≠ −1): :class:`BadTableOffsetError`.

Compaction (as Java's ``TableCompactor``, synchronous here): once the records from the start
offset on are mostly dead, the live ones at the head are copied to the tail with their version
made explicit and the head is truncated, so a busy table's bytes stay bounded. Versions never
change; a delta read from before the new start offset answers ``should_clear``.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

__all__ = [
    "NO_VERSION", "NOT_EXISTS", "NO_OFFSET", "HEADER_LENGTH", "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH", "MAX_FIXED_KEY_LENGTH", "TableError", "KeyNotFoundError",
    "KeyVersionMismatchError", "BadTableOffsetError", "TableNotEmptyError", "TableArgumentError",
    "TableUnsupportedError", "TableFormatError", "Entry", "Record", "Table", "serialize_update",
    "serialize_removal", "parse_records", "key_hash", "check_create_key_length",
]

#: ``TableKey.NO_VERSION``: an unconditional update or removal.
NO_VERSION = -(2 ** 63)
#: ``TableKey.NOT_EXISTS``: the key must not exist (and the version of a missing key in replies).
NOT_EXISTS = -1
#: ``NULL_TABLE_SEGMENT_OFFSET``: no condition on the table's length.
NO_OFFSET = -1
#: A record's header: serialization version, key length, value length, explicit version.
_HEADER = struct.Struct(">biiq")
HEADER_LENGTH = _HEADER.size
_SERIALIZATION_VERSION = 0
#: Records are parsed from blocks of this many bytes.
_READ_AHEAD = 64 * 1024
_REMOVAL = -1
#: ``TableStore.MAXIMUM_KEY_LENGTH`` / ``MAXIMUM_VALUE_LENGTH``.
MAX_KEY_LENGTH = 8192
MAX_VALUE_LENGTH = 1024 * 1024 - MAX_KEY_LENGTH
#: ``AttributeId.MAX_KEY_LENGTH``: the longest key of a fixed-key-length table.
MAX_FIXED_KEY_LENGTH = 256

#: Continuation tokens: Java's ``VersionedSerializer`` framing (as the real store sends it)
#: around one revision of ``length`` bytes.
_TOKEN_HEADER = b"\x00\x00\x01\x00"
_TOKEN_LENGTH = struct.Struct(">I")
_HASH = struct.Struct(">qq")
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1
#: ``KeyHasher.MIN_HASH`` / ``MAX_HASH``: the msb values reserved for core attributes
#: (``Long.MIN_VALUE``) and backpointers (``Long.MAX_VALUE``) are never key hashes.
_MIN_HASH = (_LONG_MIN + 1, _LONG_MIN)
_MAX_HASH = (_LONG_MAX - 1, _LONG_MAX)

#: Compaction: tables shorter than this (from their start offset) are left alone ...
COMPACTION_MIN_BYTES = 1024 * 1024
#: ... and so are those whose live records fill at least this share of it ...
COMPACTION_MIN_UTILIZATION = 0.75
#: ... and one compaction processes at most this many bytes at the head.
COMPACTION_MAX_BYTES = 4 * 1024 * 1024


class TableError(Exception):
    """A table operation that was refused; nothing was applied."""


class KeyNotFoundError(TableError):
    """A conditional update or removal named a version for a key that does not exist."""


class KeyVersionMismatchError(TableError):
    """A key's current version is not the one a conditional update or removal expected."""


#: Deprecated name (the client's key-value-table error is ``BadKeyVersionError``).
BadKeyVersionError = KeyVersionMismatchError


class BadTableOffsetError(TableError):
    """The table's length is not the one the batch was conditioned on (``length`` is it)."""

    def __init__(self, message: str, length: int):
        super().__init__(message)
        self.length = length


class TableNotEmptyError(TableError):
    """A table that had to be empty (DeleteTableSegment with mustBeEmpty) is not."""


class TableArgumentError(TableError):
    """An argument Java's store refuses with an ``IllegalArgumentException``: answered with
    ``ErrorMessage(error_code 0)`` carrying this message (the real store's wording)."""


class TableUnsupportedError(TableError):
    """An operation this table's layout does not support (answered OperationUnsupported)."""


class TableFormatError(TableError):
    """Bytes that are not what they must be: a continuation token that does not deserialize,
    a delta read from a position that is not a record boundary. Java's store fails these with
    exceptions it does not map to a reply: it closes the connection."""


class Entry(NamedTuple):
    """One table entry as returned by reads: ``version`` is the key's current version."""

    key: bytes
    value: bytes
    version: int


class Record(NamedTuple):
    """One record of a table segment, as parsed from its bytes."""

    offset: int
    key: bytes
    value: bytes | None  # None: a removal
    version: int  # the explicit version, or the offset

    @property
    def end(self) -> int:
        return self.offset + HEADER_LENGTH + len(self.key) + len(self.value or b"")


# ---- the byte layout ----------------------------------------------------------------------------

def serialize_update(key: bytes, value: bytes, version: int = NO_VERSION) -> bytes:
    """One update record (``version``: explicit, for compaction copies)."""
    return _HEADER.pack(_SERIALIZATION_VERSION, len(key), len(value), version) + key + value


def serialize_removal(key: bytes) -> bytes:
    """One removal record."""
    return _HEADER.pack(_SERIALIZATION_VERSION, len(key), _REMOVAL, NO_VERSION) + key


def parse_records(read: Callable[[int, int], bytes], start: int, end: int) -> Iterator[Record]:
    """The records in ``[start, end)``; ``read(offset, n)`` returns those ``n`` stored bytes.
    :class:`TableFormatError` when ``start`` is not a record boundary (a header that cannot
    be one, or a record running past ``end``)."""
    offset = start
    block, block_start = b"", start  # bytes read ahead: [block_start, block_start + len(block))

    def take(at: int, n: int) -> bytes:
        nonlocal block, block_start
        if at + n > block_start + len(block):
            block_start = at
            block = read(at, min(end - at, max(n, _READ_AHEAD)))
        return block[at - block_start:at - block_start + n]

    while offset < end:
        if end - offset < HEADER_LENGTH:
            raise TableFormatError(f"no table entry header at offset {offset}")
        serialization, key_length, value_length, explicit = _HEADER.unpack(
            take(offset, HEADER_LENGTH))
        # (Java's reader refuses empty keys, which its writer accepts: here they are read.)
        if serialization != _SERIALIZATION_VERSION or not 0 <= key_length <= MAX_KEY_LENGTH \
                or not (value_length == _REMOVAL or 0 <= value_length <= MAX_VALUE_LENGTH) \
                or not (explicit == NO_VERSION or 0 <= explicit < offset):
            raise TableFormatError(f"no table entry header at offset {offset}")
        body = HEADER_LENGTH + key_length + max(0, value_length)
        if offset + body > end:
            raise TableFormatError(f"the table entry at offset {offset} runs past {end}")
        data = take(offset + HEADER_LENGTH, body - HEADER_LENGTH)
        key = data[:key_length]
        value = None if value_length == _REMOVAL else data[key_length:]
        yield Record(offset, key, value, offset if explicit == NO_VERSION else explicit)
        offset += body


# ---- hashes and continuation tokens ---------------------------------------------------------

def key_hash(key: bytes) -> tuple[int, int]:
    """Java's ``KeyHasher.sha256()``: the key's SHA-256, first 16 bytes, as a UUID's
    (most, least) significant bits (signed longs: the iteration order), kept out of the
    reserved ranges."""
    msb, lsb = _HASH.unpack_from(hashlib.sha256(key).digest())
    if msb == _LONG_MIN:
        msb += 1
    elif msb == _LONG_MAX:
        msb -= 1
    return msb, lsb


def _token(payload: bytes) -> bytes:
    return _TOKEN_HEADER + _TOKEN_LENGTH.pack(len(payload)) + payload


def _hash_token(hash_: tuple[int, int]) -> bytes:
    return _token(_HASH.pack(*hash_))


def _parse_hash_token(token: bytes) -> tuple[int, int]:
    if len(token) != len(_TOKEN_HEADER) + _TOKEN_LENGTH.size + _HASH.size \
            or not token.startswith(_TOKEN_HEADER) \
            or _TOKEN_LENGTH.unpack_from(token, len(_TOKEN_HEADER))[0] != _HASH.size:
        raise TableFormatError("Unable to deserialize `serializedState`.")
    hash_ = _HASH.unpack_from(token, len(_TOKEN_HEADER) + _TOKEN_LENGTH.size)
    if not _MIN_HASH <= hash_ <= _MAX_HASH:
        raise TableArgumentError("keyHash must be at least IteratorState.MIN_HASH and at most "
                                 "IteratorState.MAX_HASH.")
    return hash_


def _compact_int(n: int) -> bytes:
    """``RevisionDataOutput.writeCompactInt``: 1, 2 or 4 bytes, the top two bits saying which."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return (0x4000 | n).to_bytes(2, "big")
    return (0x80000000 | n).to_bytes(4, "big")


def _key_token(key: bytes) -> bytes:
    return _token(_compact_int(len(key)) + key)


def check_create_key_length(key_length: int) -> None:
    """:class:`TableArgumentError` unless ``key_length`` makes a table (0: a hash table)."""
    if key_length < 0:
        raise TableArgumentError(
            f"Segment KeyLength must be 0 for HashTableSegments; actual {key_length}.")
    if key_length > MAX_FIXED_KEY_LENGTH:
        raise TableArgumentError(
            f"Segment KeyLength for segment `' must be a positive integer smaller than or "
            f"equal to {MAX_FIXED_KEY_LENGTH}; actual {key_length}.")


class _Live:
    """A live key: its version and value, and (hash tables) its hash."""

    __slots__ = ("version", "value", "hash")

    def __init__(self, version: int, value: bytes, hash_: tuple[int, int] | None):
        self.version = version
        self.value = value
        self.hash = hash_


class Table:
    """The index of one table segment. ``key_length`` 0 makes a hash table, > 0 a
    fixed-key-length one.

    Writes take the segment's current ``length`` and return the bytes the segment must append
    (the caller appends them at once: the versions given out are offsets in them).
    """

    def __init__(self, key_length: int = 0) -> None:
        check_create_key_length(key_length)
        self.key_length = key_length
        self._live: dict[bytes, _Live] = {}
        #: Iteration order of the live keys: (hash, key) for hash tables, key for fixed ones.
        self._order: list[tuple[tuple[int, int], bytes]] | list[bytes] = []
        #: Bytes of the live keys' records (header, key and value).
        self.live_bytes = 0
        self.compaction_min_bytes = COMPACTION_MIN_BYTES
        self.compaction_min_utilization = COMPACTION_MIN_UTILIZATION
        self.compaction_max_bytes = COMPACTION_MAX_BYTES

    @property
    def fixed(self) -> bool:
        return self.key_length > 0

    # ---- reading ------------------------------------------------------------------------------

    @property
    def entry_count(self) -> int:
        """Number of live keys."""
        return len(self._live)

    def get(self, keys: Iterable[bytes]) -> list[Entry | None]:
        """The current entry of each key, or None for a missing one."""
        keys = [bytes(k) for k in keys]
        if self.fixed:
            for key in keys:
                if len(key) != self.key_length:
                    raise TableArgumentError(f"Expected Attribute Id length {self.key_length}, "
                                             f"given {len(key)}.")
        out: list[Entry | None] = []
        for key in keys:
            found = self._live.get(key)
            out.append(None if found is None else Entry(key, found.value, found.version))
        return out

    def iterate(self, token: bytes, from_key: bytes, to_key: bytes, max_count: int,
                max_bytes: int, size: Callable[[Entry], int]) -> tuple[list[Entry], bytes]:
        """One page of ReadTableKeys / ReadTableEntries: ``(entries, continuation token)``.

        Buckets (a hash table's keys of one hash; a fixed table's single keys) are added while
        fewer than ``max_count`` entries and ``max_bytes`` bytes (as measured by ``size``) are
        in the page. An empty ``token`` starts at the beginning; the end is an empty page with
        an empty token.
        """
        if self.fixed:
            return self._iterate_sorted(token, from_key, to_key, max_count, max_bytes, size)
        if from_key or to_key:
            raise TableArgumentError("Range Iterators not supported for HashTableSegments.")
        order: list[tuple[tuple[int, int], bytes]] = self._order  # type: ignore[assignment]
        start = 0
        if token:
            after = _parse_hash_token(token)
            start = bisect.bisect_right(order, (after, b"\xff" * (MAX_KEY_LENGTH + 1)))
        out: list[Entry] = []
        used = 0
        last_token = b""
        index = start
        while index < len(order) and len(out) < max_count and used < max_bytes:
            bucket = order[index][0]
            while index < len(order) and order[index][0] == bucket:
                key = order[index][1]
                live = self._live[key]
                entry = Entry(key, live.value, live.version)
                out.append(entry)
                used += size(entry)
                index += 1
            last_token = _hash_token(bucket)
        return out, last_token

    def _iterate_sorted(self, token: bytes, from_key: bytes, to_key: bytes, max_count: int,
                        max_bytes: int, size: Callable[[Entry], int]
                        ) -> tuple[list[Entry], bytes]:
        if token:
            raise TableArgumentError(
                "ContinuationToken not supported for FixedKeyLengthTableSegments.")
        order: list[bytes] = self._order  # type: ignore[assignment]
        start = bisect.bisect_left(order, from_key) if from_key else 0
        out: list[Entry] = []
        used = 0
        for key in order[start:]:
            if (to_key and key > to_key) or len(out) >= max_count or used >= max_bytes:
                break
            live = self._live[key]
            entry = Entry(key, live.value, live.version)
            out.append(entry)
            used += size(entry)
        return out, (_key_token(out[-1].key) if out else b"")

    def delta(self, read: Callable[[int, int], bytes], start_offset: int, length: int,
              from_position: int, max_count: int, max_bytes: int,
              size: Callable[[Entry], int]) -> tuple[list[Entry], bool, bool, int]:
        """One page of ReadTableEntriesDelta over the records in ``[from_position, length)``:
        ``(entries, should_clear, reached_end, last_position)``, as Java's store computes it.

        Records are taken in order while fewer than ``max_count`` distinct keys and
        ``max_bytes`` bytes are in the page: an update puts its key last (replacing an older
        entry of it), a removal takes its key out. ``last_position`` is the position after the
        last record taken and ``reached_end`` whether that record ends the table; a page that
        takes no record answers ``last_position`` 0 and ``reached_end`` (the real store's
        defaults). A position before the start offset (compacted away) reads from the start
        offset and sets ``should_clear``.
        """
        if self.fixed:
            raise TableUnsupportedError("entryDeltaIterator")
        if from_position > length:
            raise TableArgumentError(f"fromPosition ({from_position}) can not exceed the "
                                     f"length ({length}) of the TableSegment.")
        should_clear = from_position < start_offset
        page: dict[bytes, Entry] = {}
        used = 0
        state = (0, True, False)
        for record in parse_records(read, max(from_position, start_offset), length):
            if len(page) >= max_count or used >= max_bytes:
                break
            old = page.pop(record.key, None)
            if old is not None:
                used -= size(old)
            if record.value is not None:
                entry = Entry(record.key, record.value, record.version)
                page[record.key] = entry
                used += size(entry)
            state = (record.end, record.end >= length, should_clear)
        last_position, reached_end, clear = state
        return list(page.values()), clear, reached_end, last_position

    # ---- writing ------------------------------------------------------------------------------

    def update(self, entries: Sequence[tuple[bytes, bytes, int]], length: int,
               table_offset: int = NO_OFFSET, segment: str = "") -> tuple[list[int], bytes]:
        """Apply ``(key, value, expected_version)`` entries atomically at a table of ``length``
        bytes; returns the new version of each (in order) and the bytes to append. Raises a
        :class:`TableError` (and applies nothing) if any condition fails."""
        entries = [(bytes(k), bytes(v), version) for k, v, version in entries]
        for key, value, _version in entries:
            self._check_key(key, segment, "Entry Key Length")
            if len(value) > MAX_VALUE_LENGTH:
                raise TableArgumentError("Key+Value serialization too large.")
        self._check_offset(table_offset, length)
        for key, _value, version in entries:
            self._check_version(key, version)
        records = []
        versions = []
        position = length
        for key, value, _version in entries:
            record = serialize_update(key, value)
            versions.append(position)
            self._set(key, value, position, len(record))
            position += len(record)
            records.append(record)
        return versions, b"".join(records)

    def remove(self, keys: Sequence[tuple[bytes, int]], length: int,
               table_offset: int = NO_OFFSET, segment: str = "") -> bytes:
        """Remove ``(key, expected_version)`` keys atomically; returns the bytes to append (a
        removal record per key on a hash table, nothing on a fixed-key-length one)."""
        keys = [(bytes(k), version) for k, version in keys]
        for key, _version in keys:
            self._check_key(key, segment, "Key Length")
        self._check_offset(table_offset, length)
        for key, version in keys:
            self._check_version(key, version)
        for key, _version in keys:
            self._drop(key)
        if self.fixed:
            return b""
        return b"".join(serialize_removal(key) for key, _version in keys)

    def compaction(self, read: Callable[[int, int], bytes], start_offset: int,
                   length: int) -> tuple[bytes, int] | None:
        """If the table is due for compaction: ``(copies, new_start_offset)``: the live records
        of the head (up to ``compaction_max_bytes`` of it), with their versions explicit, to
        append, and the offset to truncate the segment at afterwards. None otherwise."""
        span = length - start_offset
        if span < self.compaction_min_bytes \
                or self.live_bytes >= self.compaction_min_utilization * span:
            return None
        copies = []
        end = start_offset
        for record in parse_records(read, start_offset, length):
            if end - start_offset >= self.compaction_max_bytes:
                break
            live = self._live.get(record.key)
            if record.value is not None and live is not None and live.version == record.version:
                copies.append(serialize_update(record.key, record.value, record.version))
            end = record.end
        return b"".join(copies), end

    def rebuild(self, read: Callable[[int, int], bytes], start_offset: int, length: int,
                removals: Sequence[tuple[int, Sequence[bytes]]] = ()) -> None:
        """Recovery: the index of the records in ``[start_offset, length)``. ``removals``
        (fixed-key-length tables, whose removals write no record): ``(at, keys)`` removed when
        the table was ``at`` bytes long, in order."""
        self._live.clear()
        self._order.clear()
        self.live_bytes = 0
        pending = list(removals)
        step = 0
        for record in parse_records(read, start_offset, length):
            while step < len(pending) and pending[step][0] <= record.offset:
                for key in pending[step][1]:
                    self._drop(key)
                step += 1
            if record.value is None:
                self._drop(record.key)
            else:
                self._set(record.key, record.value, record.version, record.end - record.offset)
        for _at, keys in pending[step:]:
            for key in keys:
                self._drop(key)

    def dead_keys(self, read: Callable[[int, int], bytes], start_offset: int,
                  length: int) -> list[bytes]:
        """Keys with an update record in ``[start_offset, length)`` that are not live (on a
        fixed-key-length table: removed after their last record)."""
        seen = {record.key for record in parse_records(read, start_offset, length)
                if record.value is not None}
        return sorted(seen.difference(self._live))

    # ---- internals ----------------------------------------------------------------------------

    def _set(self, key: bytes, value: bytes, version: int, record_size: int) -> None:
        live = self._live.get(key)
        if live is None:
            hash_ = None if self.fixed else key_hash(key)
            self._live[key] = _Live(version, value, hash_)
            if hash_ is None:
                bisect.insort(self._order, key)  # type: ignore[arg-type]
            else:
                bisect.insort(self._order, (hash_, key))  # type: ignore[arg-type]
        else:
            self.live_bytes -= HEADER_LENGTH + len(key) + len(live.value)
            live.version, live.value = version, value
        self.live_bytes += record_size

    def _drop(self, key: bytes) -> None:
        live = self._live.pop(key, None)
        if live is None:
            return
        self.live_bytes -= HEADER_LENGTH + len(key) + len(live.value)
        item = key if live.hash is None else (live.hash, key)
        index = bisect.bisect_left(self._order, item)  # type: ignore[arg-type]
        del self._order[index]

    def _check_key(self, key: bytes, segment: str, what: str) -> None:
        if self.fixed:
            if len(key) != self.key_length:
                raise TableArgumentError(
                    f"{what} for key `{key.hex()}` incompatible with segment '{segment}' which "
                    f"requires key lengths of {self.key_length}.")
        elif len(key) > MAX_KEY_LENGTH:
            raise TableArgumentError("Key too large.")

    @staticmethod
    def _check_offset(table_offset: int, length: int) -> None:
        if table_offset != NO_OFFSET and table_offset != length:
            raise BadTableOffsetError(
                f"table length is {length}, the request expected {table_offset}", length)

    def _check_version(self, key: bytes, version: int) -> None:
        if version == NO_VERSION:
            return
        current = self._live.get(key)
        if version == NOT_EXISTS:
            if current is not None:
                raise KeyVersionMismatchError(f"key {key!r} exists (version {current.version})")
            return
        if current is None:
            raise KeyNotFoundError(f"key {key!r} does not exist (expected version {version})")
        if current.version != version:
            raise KeyVersionMismatchError(
                f"key {key!r} has version {current.version}, the request expected {version}")

    def __repr__(self) -> str:
        kind = f"fixed({self.key_length})" if self.fixed else "hash"
        return f"<Table {kind} entries={len(self._live)}>"
