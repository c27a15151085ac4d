"""Key-value tables: Java's ``KeyValueTableManager`` and ``KeyValueTable``, asyncio.

A key-value table is a set of partitions, each a table segment with fixed-length keys (created
by the controller, ``<scope>/<table>_kvtable/<n>.#epoch.0``: :data:`~pravega_wire.naming.
KVTABLE_SUFFIX`). A key is a primary key of the table's ``primary_key_length`` bytes followed by
a secondary key of its ``secondary_key_length`` bytes (possibly none). All the keys with one
primary key live in one partition, so a batch of updates (or of removals) that share a primary
key is applied atomically: all of it or, if one condition fails, none of it.

**Which partition** (Java's ``KeyValueTableSegments.getSegmentForKey``): the primary key's bytes
are hashed with Guava's ``murmur3_128`` seeded with ``"KeyValueTableRouter".hashCode()``
(:data:`KVT_ROUTER_SEED`, a negative Java ``int`` that Guava sign-extends: see
:func:`pravega_wire.routing.hash_bytes_to_range`); the first 64 bits give a position in
``[0, 1)`` and the partition is the one with the smallest upper key bound at or above it. A
table written by Java's client is readable here and the other way round.

**Versions** (:class:`Version`): the partition's segment id and the key's version in that
segment (the offset of its last update). ``replace`` and conditional ``remove`` succeed only
at the key's current version: :class:`BadKeyVersionError` otherwise, :class:`NoSuchKeyError`
when the key does not exist. ``put_if_absent`` fails with :class:`BadKeyVersionError` if the
key exists. A key of the wrong length is :class:`KeyLengthError`, raised before anything is
sent (the store would close the connection on it).

**Iteration** (:meth:`KeyValueTable.iterator`): over all keys, one primary key's keys (all, a
secondary-key range, or a secondary-key prefix), a primary-key range or a primary-key prefix;
in key order (unsigned bytes) within each partition, partitions one after another. Pages of at
most ``max_iteration_size`` items; every page carries a continuation token that resumes the
iteration after it (:attr:`Page.token`).

Requests go through the pool's connections (a :class:`~pravega_wire.client.raw.RawClient` per
segment store: the first table command for a partition goes on a dedicated connection, as for
every table command, then they share the pooled one); connection trouble, WrongHost and expired
tokens are retried with the :class:`~pravega_wire.client._common.RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Generic, NamedTuple, Optional, TypeVar, Union

from .. import commands as C
from ..errors import PravegaWireError
from ..naming import KVTABLE_SUFFIX
from ..routing import KeyRanges, hash_bytes_to_range
from .controller import (KeyValueTableConfiguration, KeyValueTableNotFoundError,
                         SegmentWithRange, segment_name)
from .raw import _SegmentClientBase
from .stream import _token_provider

__all__ = ["KVT_ROUTER_SEED", "java_string_hash", "key_position", "KeyValueTableConfiguration",
           "KeyValueTableNotFoundError", "KeyValueTableManager", "KeyValueTable", "TableKey",
           "TableEntry", "Version", "NO_VERSION", "NOT_EXISTS", "Put", "Insert", "Remove", "Page",
           "ConditionalTableUpdateError", "BadKeyVersionError", "NoSuchKeyError",
           "KeyLengthError", "DEFAULT_ITERATION_SIZE"]


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()`` (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    units = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


#: Seed of the partition hash: ``"KeyValueTableRouter".hashCode()`` (Java's
#: ``KeyValueTableSegments``).
KVT_ROUTER_SEED = java_string_hash("KeyValueTableRouter")

#: Items per page of an iteration unless told otherwise (Java's iterator default).
DEFAULT_ITERATION_SIZE = 100

_NO_SEGMENT = -(2 ** 63)  # Java's VersionImpl.NO_SEGMENT_ID
_PARTITION = struct.Struct(">I")


def key_position(primary_key: bytes) -> float:
    """The position in ``[0, 1)`` of a primary key: which partition holds it."""
    return hash_bytes_to_range(primary_key, KVT_ROUTER_SEED)


# ---- errors ----------------------------------------------------------------------------------

class ConditionalTableUpdateError(PravegaWireError):
    """A conditional update or removal was refused; nothing of its batch was applied."""


class BadKeyVersionError(ConditionalTableUpdateError):
    """A key's version is not the one expected (or the key exists, for ``put_if_absent``)."""


class NoSuchKeyError(ConditionalTableUpdateError, LookupError):
    """A conditional update or removal named a version of a key that does not exist."""


class KeyLengthError(PravegaWireError, ValueError):
    """A primary or secondary key does not have the table's length for it."""


# ---- keys, entries, versions -----------------------------------------------------------------

class Version(NamedTuple):
    """A key's version: the partition's segment id and the key's version in that segment."""

    segment_id: int
    segment_version: int


#: Java's ``Version.NO_VERSION``: a ``replace`` or ``remove`` at it is unconditional.
NO_VERSION = Version(_NO_SEGMENT, C.TableKey.NO_VERSION)
#: Java's ``Version.NOT_EXISTS``: a ``replace`` at it succeeds only if the key does not exist
#: (as ``put_if_absent``), a ``remove`` at it changes nothing and fails if the key exists.
NOT_EXISTS = Version(_NO_SEGMENT, C.TableKey.NOT_EXISTS)


class TableKey(NamedTuple):
    """A key: a primary key and a secondary key (``b""`` when the table has none)."""

    primary_key: bytes
    secondary_key: bytes = b""


class TableEntry(NamedTuple):
    """A key, its current version and its value."""

    key: TableKey
    version: Version
    value: bytes


@dataclasses.dataclass(frozen=True)
class Put:
    """Set ``key`` to ``value``: unconditionally (``version`` None) or only at ``version``."""

    key: Any
    value: bytes
    version: Optional[Version] = None


@dataclasses.dataclass(frozen=True)
class Insert:
    """Set ``key`` to ``value`` only if it does not exist."""

    key: Any
    value: bytes


@dataclasses.dataclass(frozen=True)
class Remove:
    """Remove ``key``: unconditionally (``version`` None) or only at ``version``."""

    key: Any
    version: Optional[Version] = None


_Item = TypeVar("_Item")


@dataclasses.dataclass(frozen=True)
class Page(Generic[_Item]):
    """One page of an iteration: its ``items`` (TableKey or TableEntry, in order) and the
    ``token`` that resumes the iteration after them (``b""`` when the page ends the iteration
    for sure; resuming after the last page yields nothing)."""

    items: list[_Item]
    token: bytes


def _next_key(key: bytes) -> Optional[bytes]:
    """The smallest key of the same length after ``key`` (unsigned big-endian), None after
    the last one."""
    value = int.from_bytes(key, "big") + 1
    if value >> (8 * len(key)):
        return None
    return value.to_bytes(len(key), "big")


# ---- the manager -----------------------------------------------------------------------------

class KeyValueTableManager:
    """Creates, lists, describes and deletes key-value tables through a
    :class:`~pravega_wire.client.controller.ControllerClient`."""

    def __init__(self, controller: Any):
        self._controller = controller

    async def create_key_value_table(self, scope: str, name: str,
                                     config: KeyValueTableConfiguration) -> bool:
        """True if created, False if a table of that name exists. ScopeNotFoundError,
        InvalidNameError."""
        if not isinstance(config, KeyValueTableConfiguration):
            raise TypeError(f"config must be a KeyValueTableConfiguration, not {config!r}")
        return await self._controller.create_key_value_table(scope, name, config)

    async def delete_key_value_table(self, scope: str, name: str) -> bool:
        """Delete the table and its data: True if deleted, False if it did not exist."""
        return await self._controller.delete_key_value_table(scope, name)

    async def list_key_value_tables(self, scope: str) -> list[str]:
        """The scope's table names (ScopeNotFoundError for a missing scope)."""
        return await self._controller.list_key_value_tables(scope)

    async def get_key_value_table_configuration(self, scope: str,
                                                name: str) -> KeyValueTableConfiguration:
        """The table's configuration (KeyValueTableNotFoundError for an unknown table)."""
        return await self._controller.get_key_value_table_configuration(scope, name)


# ---- table segments --------------------------------------------------------------------------

class _Partitions(_SegmentClientBase):
    """Table commands to a table's partitions, with the retry policy of the segment clients."""

    async def probe(self, segment: str) -> None:
        await self._call(segment, C.GetTableSegmentInfo, C.TableSegmentInfo,
                         segment_name=segment)

    async def update(self, segment: str, entries: list[tuple[C.TableKey, C.TableValue]]
                     ) -> list[int]:
        reply = await self._call(segment, C.UpdateTableEntries, _UPDATED, segment=segment,
                                 table_entries=C.TableEntries(entries),
                                 table_segment_offset=-1)
        return list(_checked(segment, reply).updated_versions)

    async def remove(self, segment: str, keys: list[C.TableKey]) -> None:
        reply = await self._call(segment, C.RemoveTableKeys, _REMOVED, segment=segment,
                                 keys=keys, table_segment_offset=-1)
        _checked(segment, reply)

    async def read(self, segment: str, keys: list[bytes]) -> list[tuple[Any, Any]]:
        reply = await self._call(segment, C.ReadTable, C.TableRead, segment=segment,
                                 keys=[C.TableKey(k) for k in keys])
        return list(reply.entries.entries)

    async def iterate(self, segment: str, entries: bool, count: int, from_key: bytes,
                      to_key: bytes) -> list[Any]:
        args = C.TableIteratorArgs(b"", b"", from_key, to_key)
        if entries:
            reply = await self._call(segment, C.ReadTableEntries, C.TableEntriesRead,
                                     segment=segment, suggested_entry_count=count, args=args)
            return list(reply.entries.entries)
        reply = await self._call(segment, C.ReadTableKeys, C.TableKeysRead, segment=segment,
                                 suggested_key_count=count, args=args)
        return list(reply.keys)


_CONDITION_FAILED = (C.TableKeyBadVersion, C.TableKeyDoesNotExist)
_UPDATED = (C.TableEntriesUpdated, *_CONDITION_FAILED)
_REMOVED = (C.TableKeysRemoved, *_CONDITION_FAILED)


def _checked(segment: str, reply: Any) -> Any:
    if type(reply) is C.TableKeyBadVersion:
        raise BadKeyVersionError(f"a key's version in {segment} is not the expected one")
    if type(reply) is C.TableKeyDoesNotExist:
        raise NoSuchKeyError(f"a key expected at a version in {segment} does not exist")
    return reply


# ---- the table -------------------------------------------------------------------------------

KeyLike = Union[TableKey, bytes, bytearray, memoryview, tuple]


class KeyValueTable:
    """A key-value table's data (Java's ``KeyValueTable``). Open it with :meth:`open`; close
    it with :meth:`close` (or ``async with``).

    A key is a :class:`TableKey`, a ``(primary_key, secondary_key)`` tuple, or, for a table
    without secondary keys, the primary key's bytes.

    An update retried after a connection failure may have been applied the first time: an
    unconditional one is then applied again (same value, new version); a conditional one fails
    with BadKeyVersionError, as with Java's client.
    """

    def __init__(self, scope: str, name: str, config: KeyValueTableConfiguration,
                 partitions: Sequence[SegmentWithRange], pool: Any, locator: Any,
                 **segment_options: Any):
        if len(partitions) != config.partition_count:
            raise ValueError(f"the table {scope}/{name} has {len(partitions)} partitions, its "
                             f"configuration says {config.partition_count}")
        self.scope = scope
        self.name = name
        self.config = config
        self._ranges = KeyRanges(partitions)
        self.partitions: list[SegmentWithRange] = list(self._ranges.segments)
        self._segments = {p.segment_id: segment_name(scope, name + KVTABLE_SUFFIX, p.segment_id)
                          for p in self.partitions}
        self._client = _Partitions(pool, locator, **segment_options)

    @classmethod
    async def open(cls, controller: Any, pool: Any, scope: str, name: str, *,
                   auth: bool = False, **segment_options: Any) -> "KeyValueTable":
        """The table ``scope/name``: its configuration and partitions from ``controller`` (a
        ControllerClient, which also locates the partitions' stores), requests through
        ``pool``. With ``auth`` the delegation tokens come from the controller (cached).
        ``segment_options``: ``retry``, ``timeout`` or ``token_provider`` of the segment
        clients. KeyValueTableNotFoundError for an unknown table."""
        config = await controller.get_key_value_table_configuration(scope, name)
        partitions = await controller.get_key_value_table_segments(scope, name)
        if auth:
            if "token_provider" in segment_options:
                raise TypeError("pass auth=True or a token_provider, not both")
            segment_options["token_provider"] = _token_provider(
                controller, scope, name + KVTABLE_SUFFIX)
        table = cls(scope, name, config, partitions, pool, controller, **segment_options)
        await table._probe_partitions()
        return table

    async def _probe_partitions(self) -> None:
        """Ask every partition for its info, concurrently: each one's first table command
        goes on a dedicated connection (see :mod:`pravega_wire.client.raw`), so that the
        table's concurrent first requests do not each open one. A failure here is left to the
        requests that follow to report."""
        await asyncio.gather(*(self._client.probe(s) for s in self._segments.values()),
                             return_exceptions=True)

    async def close(self) -> None:
        """Release the connections' flows; pending and later requests fail with
        ConnectionClosedError. Idempotent."""
        await self._client.close()

    async def __aenter__(self) -> "KeyValueTable":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # ---- keys --------------------------------------------------------------------------------

    def _key(self, key: KeyLike) -> TableKey:
        if isinstance(key, tuple) and len(key) == 2:
            primary, secondary = key
        elif isinstance(key, (bytes, bytearray, memoryview)):
            primary, secondary = key, b""
        else:
            raise TypeError(f"a key is a TableKey, a (primary, secondary) tuple or bytes, not "
                            f"{key!r}")
        primary, secondary = bytes(primary), bytes(secondary)
        config = self.config
        if len(primary) != config.primary_key_length:
            raise KeyLengthError(f"the primary keys of {self.scope}/{self.name} have "
                                 f"{config.primary_key_length} bytes, not {len(primary)}")
        if len(secondary) != config.secondary_key_length:
            raise KeyLengthError(f"the secondary keys of {self.scope}/{self.name} have "
                                 f"{config.secondary_key_length} bytes, not {len(secondary)}")
        return TableKey(primary, secondary)

    def partition_for(self, primary_key: bytes) -> SegmentWithRange:
        """The partition holding the keys with ``primary_key``."""
        return self._ranges.segments[self._ranges.index_of(key_position(primary_key))]

    def _segment_of(self, key: TableKey) -> tuple[int, str]:
        segment_id = self.partition_for(key.primary_key).segment_id
        return segment_id, self._segments[segment_id]

    def _entry(self, segment_id: int, key: Any, value: Any) -> Optional[TableEntry]:
        if key.key_version == C.TableKey.NOT_EXISTS:
            return None
        data = bytes(key.data)
        split = self.config.primary_key_length
        return TableEntry(TableKey(data[:split], data[split:]),
                          Version(segment_id, key.key_version), bytes(value.data))

    @staticmethod
    def _segment_version(segment_id: int, version: Optional[Version], scoped: str) -> int:
        if version is None:
            return C.TableKey.NO_VERSION
        if not isinstance(version, Version):
            raise TypeError(f"version must be a Version, not {version!r}")
        if version.segment_id not in (segment_id, _NO_SEGMENT):
            raise BadKeyVersionError(f"{scoped}: the version {version} is of another partition")
        return version.segment_version

    # ---- updates -----------------------------------------------------------------------------

    async def put(self, key: KeyLike, value: bytes) -> Version:
        """Set ``key`` to ``value`` (whatever its version); the new version."""
        return (await self.update([Put(key, value)]))[0]

    async def put_if_absent(self, key: KeyLike, value: bytes) -> Version:
        """Set ``key`` to ``value`` if it does not exist (BadKeyVersionError if it does)."""
        return (await self.update([Insert(key, value)]))[0]

    async def replace(self, key: KeyLike, value: bytes, version: Version) -> Version:
        """Set ``key`` to ``value`` if its version is ``version``: BadKeyVersionError if not,
        NoSuchKeyError if the key does not exist."""
        return (await self.update([Put(key, value, version)]))[0]

    async def remove(self, key: KeyLike, version: Optional[Version] = None) -> None:
        """Remove ``key``: unconditionally (removing a missing key succeeds) or only at
        ``version`` (BadKeyVersionError / NoSuchKeyError)."""
        await self.update([Remove(key, version)])

    async def exists(self, key: KeyLike) -> bool:
        """Whether ``key`` exists, without reading its value (as Java: a removal conditioned
        on the key not existing, which changes nothing either way)."""
        try:
            await self.update([Remove(key, NOT_EXISTS)])
        except BadKeyVersionError:
            return True
        return False

    async def update(self, updates: Sequence[Union[Put, Insert, Remove]]) -> list[Version]:
        """Apply ``updates`` atomically: all :class:`Put`/:class:`Insert` or all
        :class:`Remove`, every key with the same primary key (ValueError otherwise). Returns
        the new versions of the put keys, in order (``[]`` for removals). If any condition
        fails nothing is applied (BadKeyVersionError, NoSuchKeyError)."""
        updates = list(updates)
        if not updates:
            return []
        removal = isinstance(updates[0], Remove)
        keys = []
        for update in updates:
            if not isinstance(update, (Put, Insert, Remove)):
                raise TypeError(f"an update is a Put, Insert or Remove, not {update!r}")
            if isinstance(update, Remove) != removal:
                raise ValueError("cannot combine removals with updates in one batch")
            keys.append(self._key(update.key))
        primary = keys[0].primary_key
        if any(k.primary_key != primary for k in keys):
            raise ValueError("all the keys of a batch must have the same primary key")
        segment_id, segment = self._segment_of(keys[0])
        scoped = f"{self.scope}/{self.name}"
        wire_keys = []
        for update, key in zip(updates, keys):
            if isinstance(update, Insert):
                version = C.TableKey.NOT_EXISTS
            else:
                version = self._segment_version(segment_id, update.version, scoped)
            wire_keys.append(C.TableKey(key.primary_key + key.secondary_key, version))
        if removal:
            await self._client.remove(segment, wire_keys)
            return []
        entries = [(k, C.TableValue(bytes(u.value))) for k, u in zip(wire_keys, updates)]
        versions = await self._client.update(segment, entries)
        return [Version(segment_id, v) for v in versions]

    # ---- reads -------------------------------------------------------------------------------

    async def get(self, key: KeyLike) -> Optional[TableEntry]:
        """The entry of ``key``, or None if it does not exist."""
        return (await self.get_all([key]))[0]

    async def get_all(self, keys: Iterable[KeyLike]) -> list[Optional[TableEntry]]:
        """The entries of ``keys`` in order (None for a missing one): one ReadTable per
        partition involved, concurrently."""
        checked = [self._key(k) for k in keys]
        groups: dict[int, list[int]] = {}
        for index, key in enumerate(checked):
            groups.setdefault(self._segment_of(key)[0], []).append(index)
        results: list[Optional[TableEntry]] = [None] * len(checked)

        async def read(segment_id: int, indexes: list[int]) -> None:
            found = await self._client.read(
                self._segments[segment_id],
                [checked[i].primary_key + checked[i].secondary_key for i in indexes])
            for index, (key, value) in zip(indexes, found):
                results[index] = self._entry(segment_id, key, value)

        if len(groups) == 1:  # the common case: no task to create
            await read(*next(iter(groups.items())))
        else:
            await asyncio.gather(*(read(s, i) for s, i in groups.items()))
        return results

    def iterator(self, max_iteration_size: int = DEFAULT_ITERATION_SIZE) -> "_IteratorBuilder":
        """An iteration over some of the table's keys or entries (Java's
        ``KeyValueTable.iterator()``): choose which with the builder's methods."""
        if type(max_iteration_size) is not int or max_iteration_size < 1:
            raise ValueError(f"max_iteration_size must be an int >= 1, not "
                             f"{max_iteration_size!r}")
        return _IteratorBuilder(self, max_iteration_size)

    def __repr__(self) -> str:
        return (f"<KeyValueTable {self.scope}/{self.name} partitions="
                f"{self.config.partition_count}>")


class _IteratorBuilder:
    """Which keys an iteration covers: :meth:`all`, :meth:`for_primary_key`,
    :meth:`for_range`, :meth:`for_prefix`; each returns an :class:`_Iteration`."""

    def __init__(self, table: KeyValueTable, size: int):
        self._table = table
        self._size = size

    def _pad(self, prefix: bytes, length: int, fill: int, what: str) -> bytes:
        prefix = bytes(prefix)
        if len(prefix) > length:
            raise KeyLengthError(f"a {what} of {len(prefix)} bytes is longer than the "
                                 f"{length} bytes of the table's {what}s")
        return prefix + bytes((fill,)) * (length - len(prefix))

    def all(self) -> "_Iteration":
        """Every key, partition after partition."""
        total = self._table.config.total_key_length
        return _Iteration(self._table, self._size, self._table.partitions,
                          b"\x00" * total, b"\xff" * total)

    def for_primary_key(self, primary_key: bytes, *, from_secondary: Optional[bytes] = None,
                        to_secondary: Optional[bytes] = None,
                        secondary_prefix: Optional[bytes] = None) -> "_Iteration":
        """The keys with ``primary_key``: all, those whose secondary key is in
        ``[from_secondary, to_secondary]`` (either bound optional), or those whose secondary
        key starts with ``secondary_prefix``."""
        config = self._table.config
        key = self._table._key(TableKey(primary_key, b"\x00" * config.secondary_key_length))
        length = config.secondary_key_length
        if secondary_prefix is not None:
            if from_secondary is not None or to_secondary is not None:
                raise ValueError("give a secondary-key range or a prefix, not both")
            low = self._pad(secondary_prefix, length, 0, "secondary key")
            high = self._pad(secondary_prefix, length, 0xFF, "secondary key")
        else:
            low = b"\x00" * length if from_secondary is None else bytes(from_secondary)
            high = b"\xff" * length if to_secondary is None else bytes(to_secondary)
            if len(low) != length or len(high) != length:
                raise KeyLengthError(f"secondary-key bounds must have {length} bytes")
        partition = self._table.partition_for(key.primary_key)
        return _Iteration(self._table, self._size, [partition], key.primary_key + low,
                          key.primary_key + high)

    def for_range(self, from_primary: Optional[bytes] = None,
                  to_primary: Optional[bytes] = None) -> "_Iteration":
        """The keys whose primary key is in ``[from_primary, to_primary]`` (either bound
        optional), from every partition."""
        config = self._table.config
        length, rest = config.primary_key_length, config.secondary_key_length
        low = b"\x00" * length if from_primary is None else bytes(from_primary)
        high = b"\xff" * length if to_primary is None else bytes(to_primary)
        if len(low) != length or len(high) != length:
            raise KeyLengthError(f"primary-key bounds must have {length} bytes")
        return _Iteration(self._table, self._size, self._table.partitions,
                          low + b"\x00" * rest, high + b"\xff" * rest)

    def for_prefix(self, primary_prefix: bytes) -> "_Iteration":
        """The keys whose primary key starts with ``primary_prefix``, from every partition."""
        config = self._table.config
        length, rest = config.primary_key_length, config.secondary_key_length
        return _Iteration(self._table, self._size, self._table.partitions,
                          self._pad(primary_prefix, length, 0, "primary key") + b"\x00" * rest,
                          self._pad(primary_prefix, length, 0xFF, "primary key")
                          + b"\xff" * rest)


class _Iteration:
    """The keys in ``[low, high]`` of some partitions: :meth:`keys` and :meth:`entries` yield
    pages. A page's token (partition index and the next key to read) given as
    ``continuation`` resumes after that page."""

    def __init__(self, table: KeyValueTable, size: int, partitions: Sequence[SegmentWithRange],
                 low: bytes, high: bytes):
        self._table = table
        self._size = size
        self._partitions = list(partitions)
        self._low = low
        self._high = high

    def keys(self, continuation: bytes = b"") -> AsyncIterator[Page[TableKey]]:
        """Pages of the keys (:class:`TableKey`)."""
        return self._pages(False, continuation)

    def entries(self, continuation: bytes = b"") -> AsyncIterator[Page[TableEntry]]:
        """Pages of the entries (:class:`TableEntry`)."""
        return self._pages(True, continuation)

    def _start(self, continuation: bytes) -> tuple[int, bytes]:
        if not continuation:
            return 0, self._low
        total = self._table.config.total_key_length
        if len(continuation) != _PARTITION.size + total:
            raise ValueError("not a continuation token of this iteration")
        index = _PARTITION.unpack_from(continuation)[0]
        start = bytes(continuation[_PARTITION.size:])
        if index >= len(self._partitions) or not self._low <= start <= self._high:
            raise ValueError("not a continuation token of this iteration")
        return index, start

    async def _pages(self, entries: bool, continuation: bytes) -> AsyncIterator[Page[Any]]:
        table = self._table
        index, start = self._start(continuation)
        split = table.config.primary_key_length
        while index < len(self._partitions):
            segment_id = self._partitions[index].segment_id
            found = await table._client.iterate(table._segments[segment_id], entries,
                                                self._size, start, self._high)
            if found:
                if entries:
                    items: list[Any] = [table._entry(segment_id, k, v) for k, v in found]
                    last = items[-1].key
                    last_key = last.primary_key + last.secondary_key
                else:
                    items = [TableKey(bytes(k.data[:split]), bytes(k.data[split:]))
                             for k in found]
                    last_key = bytes(found[-1].data)
                after = _next_key(last_key)
                if after is not None and after <= self._high:
                    start = after
                else:
                    index, start = index + 1, self._low
                token = (_PARTITION.pack(index) + start) if index < len(self._partitions) \
                    else b""
                yield Page(items, token)
                continue
            index, start = index + 1, self._low
