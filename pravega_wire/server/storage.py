"""Segment storage for the embedded segment store: segments (data, start offset, sealed flag,
attributes, last-modified time), transient segments, merges and table segments.

Plain state with no sockets, tasks or clocks of its own (``clock`` is injectable), so the segment
store's protocol handling can be tested on its own.

In memory by default. With a data directory every change is also written to disk and made
durable by :meth:`Storage.commit`, which the segment store calls before it sends any reply that
acknowledges the change (group commit: one commit covers all changes made since the last one):

- ``segments/<id>.dat``: the bytes of each segment, append-only (a table segment's bytes are
  its entry records, see :mod:`.tables`);
- ``journal.log``: one record per change (create, append with the new length and the writer
  attributes, seal, truncate, delete, merge, attribute updates, and the removals of
  fixed-key-length tables, which write no bytes). A record is
  ``u32 length, u32 crc32, JSON payload``.

A commit syncs the data files first and only then writes and syncs the journal records, so every
record that reached the disk describes data that is on disk. Recovery (on open) replays the
journal up to its first torn or corrupt record (and cuts the file there), cuts each data file to
the length its segment was recorded with, rebuilds each table's index from its bytes, removes
files of deleted segments, and rewrites the journal as a compact snapshot. A restarted store
therefore has everything that was committed, which includes everything that was acknowledged.

Segment data lives in pages (``bytearray`` chunks that are filled once and never resized), so a
read returns a ``memoryview`` of stored bytes without copying them.
"""

from __future__ import annotations

import base64
import bisect
import json
import logging
import os
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .tables import NO_OFFSET, Table

__all__ = [
    "NULL_ATTRIBUTE_VALUE", "EVENT_COUNT", "STREAM", "TRANSIENT", "TABLE", "StorageError",
    "SegmentExistsError", "SegmentNotFoundError", "SealedSegmentError", "UnexpectedOffsetError",
    "SegmentTypeMismatchError", "CorruptStorageError", "Segment", "Storage",
    "transient_segment_name",
]

_LOG = logging.getLogger("pravega_wire.server.storage")

#: ``Long.MIN_VALUE``: an attribute that is not set.
NULL_ATTRIBUTE_VALUE = -(2 ** 63)
#: The core attribute holding how many events were appended to a segment (Java's
#: ``Attributes.EVENT_COUNT``: core prefix ``Long.MIN_VALUE``, id 1); unset until the first
#: append, then the sum of the appends' event counts.
EVENT_COUNT = uuid.UUID("80000000-0000-0000-0000-000000000001")

#: Segment kinds.
STREAM, TRANSIENT, TABLE = "stream", "transient", "table"
_KINDS = (STREAM, TRANSIENT, TABLE)

_MIN_PAGE = 64 * 1024
_MAX_PAGE = 4 * 1024 * 1024
_RECORD_HEADER = struct.Struct(">II")
_JOURNAL = "journal.log"
_SEGMENTS = "segments"


class StorageError(Exception):
    """A storage operation that was refused; nothing was changed."""


class SegmentExistsError(StorageError):
    """The segment to create already exists."""


class SegmentNotFoundError(StorageError):
    """The segment does not exist (``segment`` names it)."""

    def __init__(self, segment: str):
        super().__init__(f"segment {segment!r} does not exist")
        self.segment = segment


class SealedSegmentError(StorageError):
    """The segment is sealed: it takes no more data."""


class UnexpectedOffsetError(StorageError):
    """An offset the operation depends on is not the expected one: a conditional append whose
    expected offset is not the segment's length, or a truncation outside ``[start, length]``.
    ``expected_offset`` is what the segment has (its length, or its start offset)."""

    def __init__(self, message: str, expected_offset: int, offset: int):
        super().__init__(message)
        self.expected_offset = expected_offset
        self.offset = offset


class SegmentTypeMismatchError(StorageError):
    """A byte operation on a table segment, or a table operation on a byte segment."""


class CorruptStorageError(StorageError):
    """The data directory is inconsistent beyond what crash recovery repairs."""


# Deprecated aliases: the old names of three storage errors, which are also the names of
# different (client-side) errors in pravega_wire.errors.
SegmentSealedError = SealedSegmentError
BadOffsetError = UnexpectedOffsetError
WrongSegmentTypeError = SegmentTypeMismatchError


def transient_segment_name(parent: str, writer_id: uuid.UUID) -> str:
    """A fresh transient segment name for ``parent``:
    ``<parent>#transient.<32 hex writer id>.<32 hex random>``."""
    return f"{parent}#transient.{writer_id.hex}.{uuid.uuid4().hex}"


class Segment:
    """One segment. Read its fields; change it only through :class:`Storage`.

    ``watchers`` holds one-shot callbacks ``f(segment)``: every change of the segment (data,
    seal, truncation, deletion) calls and clears them.
    """

    __slots__ = ("name", "kind", "file_id", "table", "start_offset", "length", "sealed",
                 "deleted", "attributes", "last_modified", "watchers", "_pages", "_starts",
                 "_tail_fill")

    def __init__(self, name: str, kind: str, file_id: int, now_ms: int):
        if kind not in _KINDS:
            raise ValueError(f"unknown segment kind {kind!r}")
        self.name = name
        self.kind = kind
        self.file_id = file_id
        #: A table segment's index (its bytes are the segment's data, as any segment's).
        self.table: Table | None = Table() if kind == TABLE else None
        self.start_offset = 0
        self.length = 0
        self.sealed = False
        self.deleted = False
        self.attributes: dict[uuid.UUID, int] = {}
        self.last_modified = now_ms
        self.watchers: list[Callable[[Segment], None]] = []
        self._pages: list[bytearray] = []
        self._starts: list[int] = []
        self._tail_fill = 0

    @property
    def is_table(self) -> bool:
        return self.kind == TABLE

    @property
    def write_offset(self) -> int:
        """The segment's length (a table segment's too: its records are its data)."""
        return self.length

    def attribute(self, attribute_id: uuid.UUID) -> int:
        """An attribute's value, ``NULL_ATTRIBUTE_VALUE`` when not set."""
        return self.attributes.get(attribute_id, NULL_ATTRIBUTE_VALUE)

    def read_exact(self, offset: int, length: int) -> bytes:
        """Exactly the ``length`` stored bytes from ``offset`` (joined across pages)."""
        chunks = []
        while length > 0:
            chunk = self.read(offset, length)
            if not chunk:
                raise ValueError(f"segment {self.name!r} ends before offset {offset + length}")
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def read(self, offset: int, max_length: int) -> memoryview:
        """Up to ``max_length`` contiguous bytes from ``offset`` (a view of the stored bytes;
        fewer when the data ends, or when a page ends first). ``offset`` must lie within
        ``[start_offset, length]``."""
        if not self.start_offset <= offset <= self.length:
            raise ValueError(f"offset {offset} is outside [{self.start_offset}, {self.length}]")
        if offset == self.length or max_length <= 0:
            return memoryview(b"")
        index = bisect.bisect_right(self._starts, offset) - 1
        page, base = self._pages[index], self._starts[index]
        page_end = base + (self._tail_fill if index == len(self._pages) - 1 else len(page))
        end = min(offset + max_length, page_end)
        return memoryview(page)[offset - base:end - base]

    def iter_data(self, offset: int | None = None) -> Iterator[memoryview]:
        """Views of all stored bytes from ``offset`` (default the start offset) to the end."""
        position = self.start_offset if offset is None else offset
        while position < self.length:
            chunk = self.read(position, self.length - position)
            position += len(chunk)
            yield chunk

    def _write(self, data: memoryview) -> None:
        n = len(data)
        pos = 0
        while pos < n:
            if not self._pages or self._tail_fill == len(self._pages[-1]):
                previous = len(self._pages[-1]) if self._pages else 0
                capacity = min(_MAX_PAGE, max(_MIN_PAGE, 2 * previous, n - pos))
                self._pages.append(bytearray(capacity))
                self._starts.append(self.length + pos)
                self._tail_fill = 0
            page = self._pages[-1]
            take = min(n - pos, len(page) - self._tail_fill)
            page[self._tail_fill:self._tail_fill + take] = data[pos:pos + take]
            self._tail_fill += take
            pos += take
        self.length += n

    def _load(self, data: bytes, start_offset: int) -> None:
        """Recovery: the segment's bytes from ``start_offset`` on, as one full page."""
        self._pages, self._starts, self._tail_fill = [], [], 0
        if data:
            page = bytearray(data)
            self._pages.append(page)
            self._starts.append(start_offset)
            self._tail_fill = len(page)

    def _drop_before(self, offset: int) -> None:
        while len(self._pages) > 1 and self._starts[1] <= offset:
            del self._pages[0]
            del self._starts[0]

    def _notify(self) -> None:
        watchers, self.watchers = self.watchers, []
        for watcher in watchers:
            watcher(self)

    def __repr__(self) -> str:
        state = " sealed" if self.sealed else ""
        return (f"<Segment {self.name!r} {self.kind} [{self.start_offset}, "
                f"{self.write_offset}){state}>")


def _as_bytes_view(data: Any) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class _Journal:
    """The durable half of :class:`Storage`: data files and the journal."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.segments_dir = directory / _SEGMENTS
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.path = directory / _JOURNAL
        self._fd = -1
        self._data_fds: dict[int, int] = {}
        self._buffer = bytearray()
        self._dirty: set[int] = set()
        self._unlink: list[Path] = []
        self._dir_dirty = False

    # ---- recovery -----------------------------------------------------------------------------

    def read_records(self) -> list[dict[str, Any]]:
        """All intact records; a torn or corrupt tail is cut off the file."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        records, pos = [], 0
        while pos + _RECORD_HEADER.size <= len(raw):
            length, crc = _RECORD_HEADER.unpack_from(raw, pos)
            body = raw[pos + _RECORD_HEADER.size:pos + _RECORD_HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            try:
                record = json.loads(body)
            except ValueError:
                break
            records.append(record)
            pos += _RECORD_HEADER.size + length
        if pos < len(raw):
            _LOG.warning("journal %s: cutting %d bytes of torn or corrupt tail at offset %d",
                         self.path, len(raw) - pos, pos)
            with open(self.path, "r+b") as f:
                f.truncate(pos)
                os.fsync(f.fileno())
        return records

    def data_path(self, file_id: int) -> Path:
        return self.segments_dir / f"{file_id}.dat"

    def load_data(self, file_id: int, start: int, length: int) -> bytes:
        """Bytes ``[start, length)`` of a segment's data file, cutting anything after
        ``length`` (written but never committed)."""
        path = self.data_path(file_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        if size < length:
            raise CorruptStorageError(
                f"{path} holds {max(size, 0)} bytes but the journal committed {length}")
        with open(path, "r+b") as f:
            if size > length:
                _LOG.warning("%s: cutting %d uncommitted bytes", path, size - length)
                f.truncate(length)
                os.fsync(f.fileno())
            f.seek(start)
            return f.read(length - start)

    def remove_unreferenced(self, file_ids: set[int]) -> None:
        for path in self.segments_dir.glob("*.dat"):
            stem = path.stem
            if not stem.isdigit() or int(stem) not in file_ids:
                path.unlink()

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the journal by ``records`` atomically (write, sync, rename, sync dir)."""
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as f:
            for record in records:
                f.write(_frame(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.directory)
        _fsync_dir(self.segments_dir)

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # ---- changes ------------------------------------------------------------------------------

    def record(self, record: dict[str, Any]) -> None:
        self._buffer += _frame(record)

    def create_file(self, file_id: int) -> None:
        self._data_fds[file_id] = os.open(self.data_path(file_id),
                                          os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._dir_dirty = True

    def open_file(self, file_id: int) -> None:
        self._data_fds[file_id] = os.open(self.data_path(file_id), os.O_WRONLY | os.O_APPEND)

    def write(self, file_id: int, data: memoryview) -> None:
        fd = self._data_fds[file_id]
        view = data
        while len(view):
            written = os.write(fd, view)
            view = view[written:]
        self._dirty.add(file_id)

    def drop_file(self, file_id: int) -> None:
        """Delete a data file once the change that dropped it is committed."""
        fd = self._data_fds.pop(file_id, None)
        if fd is not None:
            os.close(fd)
        self._dirty.discard(file_id)
        self._unlink.append(self.data_path(file_id))

    @property
    def pending(self) -> bool:
        return bool(self._buffer or self._dirty or self._unlink)

    def commit(self) -> None:
        for file_id in self._dirty:
            os.fdatasync(self._data_fds[file_id])
        self._dirty.clear()
        if self._dir_dirty:
            _fsync_dir(self.segments_dir)
            self._dir_dirty = False
        if self._buffer:
            view = memoryview(self._buffer)
            while len(view):
                view = view[os.write(self._fd, view):]
            view.release()
            self._buffer.clear()
            os.fdatasync(self._fd)
        for path in self._unlink:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._unlink.clear()

    def close(self) -> None:
        """Close the files; uncommitted changes are discarded (as a crash would)."""
        for fd in self._data_fds.values():
            os.close(fd)
        self._data_fds.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._buffer.clear()
        self._dirty.clear()
        self._unlink.clear()


def _frame(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":")).encode("utf-8")
    return _RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


class Storage:
    """All segments of one segment store.

    ``data_dir``: None keeps everything in memory; a directory makes the storage durable
    (see the module docstring) and recovers what the directory holds. ``clock`` returns the
    time in seconds (``time.time`` by default), used for last-modified times.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.time):
        self._clock = clock
        self._segments: dict[str, Segment] = {}
        self._by_id: dict[int, Segment] = {}
        self._next_id = 1
        self._journal: _Journal | None = None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None:
            self._journal = _Journal(self.data_dir)
            self._recover()
            self._journal.open()

    # ---- queries ------------------------------------------------------------------------------

    @property
    def durable(self) -> bool:
        return self._journal is not None

    def get(self, name: str) -> Segment | None:
        """The segment called ``name``, or None."""
        return self._segments.get(name)

    def require(self, name: str) -> Segment:
        """The segment called ``name``; :class:`SegmentNotFoundError` if there is none."""
        segment = self._segments.get(name)
        if segment is None:
            raise SegmentNotFoundError(name)
        return segment

    def names(self) -> list[str]:
        """The names of all segments, sorted."""
        return sorted(self._segments)

    def __contains__(self, name: object) -> bool:
        return name in self._segments

    def __len__(self) -> int:
        return len(self._segments)

    # ---- segment lifecycle --------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def create(self, name: str, kind: str = STREAM, *, key_length: int = 0) -> Segment:
        """Create an empty segment; :class:`SegmentExistsError` if the name is taken.
        ``key_length`` > 0 makes a table segment a fixed-key-length one (see
        :class:`~.tables.Table`; :class:`~.tables.TableArgumentError` if it cannot be)."""
        if name in self._segments:
            raise SegmentExistsError(f"segment {name!r} already exists")
        table = Table(key_length) if kind == TABLE else None
        segment = Segment(name, kind, self._next_id, self._now_ms())
        segment.table = table
        self._next_id += 1
        if self._journal is not None:
            self._journal.create_file(segment.file_id)
            record: dict[str, Any] = {"op": "create", "name": name, "id": segment.file_id,
                                      "kind": kind, "t": segment.last_modified}
            if key_length:
                record["klen"] = key_length
            self._journal.record(record)
        self._segments[name] = segment
        self._by_id[segment.file_id] = segment
        return segment

    def append(self, segment: Segment, data: Any,
               attributes: Sequence[tuple[uuid.UUID, int]] = (),
               expected_offset: int | None = None, event_count: int = 0) -> int:
        """Append ``data`` (bytes-like) and set ``attributes``, atomically; returns the new
        length. With ``expected_offset``, the append happens only if the segment's length is
        exactly that (:class:`UnexpectedOffsetError` otherwise). ``event_count`` (the events ``data``
        holds) is added to the :data:`EVENT_COUNT` attribute in the same change."""
        self._check_bytes(segment)
        if segment.sealed:
            raise SealedSegmentError(f"segment {segment.name!r} is sealed")
        if expected_offset is not None and expected_offset != segment.length:
            raise UnexpectedOffsetError(
                f"segment {segment.name!r} has length {segment.length}, the append expected "
                f"{expected_offset}", segment.length, expected_offset)
        view = _as_bytes_view(data)
        if event_count:
            attributes = (*attributes,
                          (EVENT_COUNT, segment.attributes.get(EVENT_COUNT, 0) + event_count))
        self._write_data(segment, view, attributes)
        return segment.length

    def _write_data(self, segment: Segment, view: memoryview,
                    attributes: Sequence[tuple[uuid.UUID, int]] = ()) -> None:
        """Append bytes and set attributes (no checks), journal it and wake the watchers."""
        segment._write(view)
        for attribute_id, value in attributes:
            segment.attributes[attribute_id] = value
        segment.last_modified = self._now_ms()
        if self._journal is not None:
            if len(view):
                self._journal.write(segment.file_id, view)
            record: dict[str, Any] = {"op": "append", "id": segment.file_id,
                                      "len": segment.length, "t": segment.last_modified}
            if attributes:
                record["attrs"] = [[a.hex, v] for a, v in attributes]
            self._journal.record(record)
        segment._notify()

    def update_attributes(self, segment: Segment,
                          attributes: Sequence[tuple[uuid.UUID, int]]) -> None:
        """Set attributes (``NULL_ATTRIBUTE_VALUE`` removes one)."""
        for attribute_id, value in attributes:
            if value == NULL_ATTRIBUTE_VALUE:
                segment.attributes.pop(attribute_id, None)
            else:
                segment.attributes[attribute_id] = value
        segment.last_modified = self._now_ms()
        if self._journal is not None:
            self._journal.record({"op": "attrs", "id": segment.file_id,
                                  "attrs": [[a.hex, v] for a, v in attributes],
                                  "t": segment.last_modified})

    def seal(self, segment: Segment) -> bool:
        """Seal the segment; False if it already was sealed."""
        if segment.sealed:
            return False
        segment.sealed = True
        segment.last_modified = self._now_ms()
        if self._journal is not None:
            self._journal.record({"op": "seal", "id": segment.file_id,
                                  "t": segment.last_modified})
        segment._notify()
        return True

    def truncate(self, segment: Segment, offset: int) -> None:
        """Drop the data before ``offset``; :class:`UnexpectedOffsetError` unless
        ``start_offset ≤ offset ≤ length``."""
        self._check_bytes(segment)
        if offset > segment.length:
            raise UnexpectedOffsetError(
                f"truncation offset {offset} is beyond the length {segment.length} of "
                f"{segment.name!r}", segment.length, offset)
        if offset < segment.start_offset:
            raise UnexpectedOffsetError(
                f"segment {segment.name!r} is already truncated at {segment.start_offset}",
                segment.start_offset, offset)
        if offset == segment.start_offset:
            return
        self._truncate(segment, offset)

    def _truncate(self, segment: Segment, offset: int) -> None:
        segment.start_offset = offset
        segment._drop_before(offset)
        segment.last_modified = self._now_ms()
        if self._journal is not None:
            self._journal.record({"op": "truncate", "id": segment.file_id, "start": offset,
                                  "t": segment.last_modified})
        segment._notify()

    def delete(self, segment: Segment) -> None:
        """Delete the segment and its data."""
        if self._segments.get(segment.name) is not segment:
            raise SegmentNotFoundError(segment.name)
        del self._segments[segment.name]
        del self._by_id[segment.file_id]
        segment.deleted = True
        if self._journal is not None:
            self._journal.record({"op": "delete", "id": segment.file_id})
            self._journal.drop_file(segment.file_id)
        segment._notify()

    def merge(self, target: Segment, source: Segment) -> int:
        """Append all of ``source``'s data to ``target`` and delete ``source`` (sealing it
        first, as Pravega does); returns the target's new length."""
        self._check_bytes(target)
        self._check_bytes(source)
        if target is source:
            raise StorageError("cannot merge a segment into itself")
        if target.sealed:
            raise SealedSegmentError(f"segment {target.name!r} is sealed")
        for chunk in source.iter_data():
            target._write(chunk)
            if self._journal is not None:
                self._journal.write(target.file_id, chunk)
        target.last_modified = self._now_ms()
        del self._segments[source.name]
        del self._by_id[source.file_id]
        source.sealed = True
        source.deleted = True
        if self._journal is not None:
            self._journal.record({"op": "merge", "target": target.file_id,
                                  "source": source.file_id, "len": target.length,
                                  "t": target.last_modified})
            self._journal.drop_file(source.file_id)
        target._notify()
        source._notify()
        return target.length

    # ---- tables -------------------------------------------------------------------------------

    def table_update(self, segment: Segment, entries: Sequence[tuple[bytes, bytes, int]],
                     table_offset: int = NO_OFFSET) -> list[int]:
        """Conditional batch update of a table segment (see :meth:`Table.update`): its records
        are appended to the segment. Returns the new versions."""
        table = self._table_of(segment)
        self._check_open(segment)
        versions, data = table.update(entries, segment.length, table_offset, segment.name)
        self._write_data(segment, memoryview(data))
        self._compact(segment, table)
        return versions

    def table_remove(self, segment: Segment, keys: Sequence[tuple[bytes, int]],
                     table_offset: int = NO_OFFSET) -> None:
        """Conditional batch removal from a table segment (see :meth:`Table.remove`)."""
        table = self._table_of(segment)
        self._check_open(segment)
        at = segment.length
        data = table.remove(keys, at, table_offset, segment.name)
        if data:
            self._write_data(segment, memoryview(data))
            self._compact(segment, table)
            return
        # A fixed-key-length table's removal writes no record: journal it on its own.
        segment.last_modified = self._now_ms()
        if self._journal is not None:
            self._journal.record({"op": "tremove", "id": segment.file_id, "at": at,
                                  "keys": [_b64(k) for k, _ in keys],
                                  "t": segment.last_modified})
        segment._notify()

    def _compact(self, segment: Segment, table: Table) -> None:
        plan = table.compaction(segment.read_exact, segment.start_offset, segment.length)
        if plan is None:
            return
        copies, start = plan
        if copies:
            self._write_data(segment, memoryview(copies))
        if start > segment.start_offset:
            self._truncate(segment, start)

    @staticmethod
    def _check_open(segment: Segment) -> None:
        if segment.sealed:
            raise SealedSegmentError(f"segment {segment.name!r} is sealed")

    @staticmethod
    def _table_of(segment: Segment) -> Table:
        if segment.table is None:
            raise SegmentTypeMismatchError(f"segment {segment.name!r} is not a table segment")
        return segment.table

    @staticmethod
    def _check_bytes(segment: Segment) -> None:
        if segment.table is not None:
            raise SegmentTypeMismatchError(f"segment {segment.name!r} is a table segment")

    # ---- durability ---------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """True when there are changes :meth:`commit` has not made durable yet."""
        return self._journal is not None and self._journal.pending

    def commit(self) -> None:
        """Make every change so far durable (no-op in memory)."""
        if self._journal is not None and self._journal.pending:
            self._journal.commit()

    def close(self) -> None:
        """Release the files. Uncommitted changes are not written (as after a crash)."""
        if self._journal is not None:
            self._journal.close()

    def _recover(self) -> None:
        journal = self._journal
        assert journal is not None
        records = journal.read_records()
        #: file id -> fixed-key-length table removals (at, keys), in journal order
        removals: dict[int, list[tuple[int, list[bytes]]]] = {}
        for record in records:
            self._replay(record, removals)
        for segment in [s for s in self._segments.values() if s.kind == TRANSIENT]:
            # A transient segment lives only as long as the connection that created it (it is
            # merged or deleted with it); no connection survives a restart.
            del self._segments[segment.name]
            del self._by_id[segment.file_id]
        for segment in list(self._segments.values()):
            data = journal.load_data(segment.file_id, segment.start_offset, segment.length)
            segment._load(data, segment.start_offset)
            if segment.table is not None:
                segment.table.rebuild(segment.read_exact, segment.start_offset, segment.length,
                                      removals.get(segment.file_id, ()))
        live = set(self._by_id)
        journal.remove_unreferenced(live)
        journal.rewrite(self._snapshot_records())
        for file_id in sorted(live):
            journal.open_file(file_id)
        if records:
            _LOG.info("recovered %d segments from %s", len(self._segments), self.data_dir)

    def _replay(self, record: dict[str, Any],
                removals: dict[int, list[tuple[int, list[bytes]]]]) -> None:
        op = record["op"]
        if op == "create" or op == "segment":
            segment = Segment(record["name"], record["kind"], record["id"], record["t"])
            if segment.table is not None:
                segment.table = Table(record.get("klen", 0))
            if op == "segment":
                segment.start_offset = record["start"]
                segment.length = record["len"]
                segment.sealed = record["sealed"]
                segment.attributes = {uuid.UUID(hex=a): v for a, v in record["attrs"]}
                if record.get("dead"):
                    removals[segment.file_id] = [
                        (segment.length, [_unb64(k) for k in record["dead"]])]
            self._segments[segment.name] = segment
            self._by_id[segment.file_id] = segment
            self._next_id = max(self._next_id, segment.file_id + 1)
            return
        if op == "merge":
            target, source = self._by_id[record["target"]], self._by_id.pop(record["source"])
            del self._segments[source.name]
            target.length = record["len"]
            target.last_modified = record["t"]
            return
        segment = self._by_id[record["id"]]
        if op == "append":
            segment.length = record["len"]
            for attribute, value in record.get("attrs", ()):
                segment.attributes[uuid.UUID(hex=attribute)] = value
        elif op == "attrs":
            for attribute, value in record["attrs"]:
                if value == NULL_ATTRIBUTE_VALUE:
                    segment.attributes.pop(uuid.UUID(hex=attribute), None)
                else:
                    segment.attributes[uuid.UUID(hex=attribute)] = value
        elif op == "seal":
            segment.sealed = True
        elif op == "truncate":
            segment.start_offset = record["start"]
        elif op == "delete":
            del self._segments[segment.name]
            del self._by_id[segment.file_id]
            return
        elif op == "tremove":
            removals.setdefault(segment.file_id, []).append(
                (record["at"], [_unb64(k) for k in record["keys"]]))
        else:
            raise CorruptStorageError(f"unknown journal record {op!r}")
        if "t" in record:
            segment.last_modified = record["t"]

    def _snapshot_records(self) -> Iterator[dict[str, Any]]:
        for segment in sorted(self._segments.values(), key=lambda s: s.file_id):
            record = {"op": "segment", "name": segment.name, "kind": segment.kind,
                      "id": segment.file_id, "t": segment.last_modified,
                      "start": segment.start_offset, "len": segment.length,
                      "sealed": segment.sealed,
                      "attrs": [[a.hex, v] for a, v in segment.attributes.items()]}
            table = segment.table
            if table is not None and table.fixed:
                # The index is rebuilt from the records; a fixed-key-length table's removals
                # wrote none, so the keys removed since their last record are listed.
                record["klen"] = table.key_length
                record["dead"] = [_b64(k) for k in table.dead_keys(
                    segment.read_exact, segment.start_offset, segment.length)]
            yield record
