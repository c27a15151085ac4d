"""Table segments of the embedded segment store, held to what Pravega's real segment store does
(the numbers below are the ones recorded from it in tests/data/realstore/public.json; each test
names its scenario): the entry layout and the versions and lengths that follow from it,
iteration in key-hash order with the real continuation tokens, delta reads, fixed-key-length
tables, compaction, recovery, and the replies on the wire.

Waits are bounded (``WAIT``); nothing here measures time.
"""

from __future__ import annotations

import hashlib

import pytest

from pravega_wire import commands as C
from pravega_wire.server.storage import TABLE, Storage
from pravega_wire.server.tables import (
    HEADER_LENGTH, NO_VERSION, NOT_EXISTS, KeyVersionMismatchError, BadTableOffsetError,
    KeyNotFoundError, Table, TableArgumentError, TableFormatError, TableUnsupportedError,
    key_hash, parse_records, serialize_removal, serialize_update)
from test_server_support import SEGMENT, Wire, serving

NO, ABSENT = C.TableKey.NO_VERSION, C.TableKey.NOT_EXISTS
ARGS = C.TableIteratorArgs()
KEYS = [b"key%02d" % i for i in range(7)]


def unlimited(_entry) -> int:
    return 0


class Image:
    """A table and the bytes its writes returned, as a segment holds them."""

    def __init__(self, key_length: int = 0):
        self.table = Table(key_length)
        self.data = bytearray()
        self.start = 0

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset:offset + n])

    def update(self, *entries, offset: int = -1) -> list[int]:
        versions, data = self.table.update(list(entries), len(self.data), offset, "t")
        self.data += data
        return versions

    def remove(self, *keys, offset: int = -1) -> None:
        self.data += self.table.remove(list(keys), len(self.data), offset, "t")

    def delta(self, position: int, count: int, budget: int = 1 << 30):
        return self.table.delta(self.read, self.start, len(self.data), position, count, budget,
                                unlimited)

    def iterate(self, token: bytes = b"", count: int = 100, from_key: bytes = b"",
                to_key: bytes = b""):
        return self.table.iterate(token, from_key, to_key, count, 1 << 30, unlimited)


# ---- the entry layout ---------------------------------------------------------------------------

def test_records_are_javas_entry_serialization():
    # read_segment_on_table_segment: the bytes of one update of k -> v.
    assert serialize_update(b"k", b"v") == bytes.fromhex("00000000010000000180000000000000006b76")
    assert serialize_removal(b"k") == bytes.fromhex("0000000001ffffffff80000000000000006b")
    assert serialize_update(b"k", b"v", 5)[9:17] == (5).to_bytes(8, "big")
    assert HEADER_LENGTH == 17
    image = Image()
    image.update((b"a", b"1", NO_VERSION))
    image.remove((b"a", NO_VERSION))
    image.data += serialize_update(b"b", b"22", 0)  # a compaction copy keeps its version
    assert list(parse_records(image.read, 0, len(image.data))) == [
        (0, b"a", b"1", 0), (19, b"a", None, 19), (37, b"b", b"22", 0)]


def test_versions_are_record_offsets_and_removals_count_in_the_length():
    image = Image()
    # table_update_unconditional: two keys, then a longer value for the first.
    assert image.update((b"k1", b"v1", NO_VERSION), (b"k2", b"v2", NO_VERSION)) == [0, 21]
    assert image.update((b"k1", b"v1b", NO_VERSION)) == [42]
    # get_table_segment_info: three inserts and one removal make 75 bytes, 2 entries.
    image = Image()
    assert image.update(*[(k, v, NO_VERSION) for k, v in ((b"a", b"1"), (b"b", b"2"),
                                                        (b"c", b"3"))]) == [0, 19, 38]
    image.remove((b"b", NO_VERSION))
    assert (len(image.data), image.table.entry_count) == (75, 2)
    # A removal of an absent key still writes its record (Java serializes every key).
    image.remove((b"zz", NO_VERSION))
    assert len(image.data) == 75 + HEADER_LENGTH + 2


def test_a_conditional_batch_applies_all_or_nothing():
    image = Image()
    (version,) = image.update((b"k", b"v", NOT_EXISTS))
    before = len(image.data)
    with pytest.raises(KeyVersionMismatchError):
        image.update((b"new", b"x", NO_VERSION), (b"k", b"w", version + 1))
    with pytest.raises(KeyVersionMismatchError):  # table_insert_if_absent
        image.update((b"k", b"w", NOT_EXISTS))
    with pytest.raises(KeyNotFoundError):
        image.update((b"new", b"x", NO_VERSION), (b"missing", b"x", 0))
    with pytest.raises(BadTableOffsetError) as refused:
        image.update((b"new", b"x", NO_VERSION), offset=before + 1)
    assert refused.value.length == before
    assert len(image.data) == before and image.table.get([b"new"]) == [None]
    assert image.update((b"new", b"x", NO_VERSION), offset=before) == [before]


def test_removes_are_conditional_and_unconditional_removes_of_missing_keys_pass():
    # remove_table_keys_conditional
    image = Image()
    (version,) = image.update((b"k1", b"v1", NO_VERSION))
    with pytest.raises(KeyVersionMismatchError):
        image.remove((b"k1", 777))
    image.remove((b"k1", version))
    image.remove((b"k1", NO_VERSION))
    with pytest.raises(KeyNotFoundError):
        image.remove((b"k1", 0))
    assert image.table.get([b"k1"]) == [None] and image.table.entry_count == 0


def test_oversized_keys_and_values_are_refused_with_javas_messages():
    with pytest.raises(TableArgumentError, match="Key too large"):
        Table().update([(b"k" * 8193, b"", NO_VERSION)], 0)
    with pytest.raises(TableArgumentError, match="serialization too large"):
        Table().update([(b"k", b"v" * (1024 * 1024), NO_VERSION)], 0)


# ---- iteration ----------------------------------------------------------------------------------

def test_key_hashes_are_sha256_prefixes_as_signed_longs():
    digest = hashlib.sha256(b"key04").digest()
    assert key_hash(b"key04") == (int.from_bytes(digest[:8], "big", signed=True),
                                  int.from_bytes(digest[8:16], "big", signed=True))


def test_hash_tables_iterate_in_hash_order_with_the_real_stores_tokens():
    # read_table_keys_paging / read_table_entries_paging: 7 keys, pages of 3.
    image = Image()
    versions = image.update(*[(k, b"val%02d" % i, NO_VERSION) for i, k in enumerate(KEYS)])
    assert versions == [0, 27, 54, 81, 108, 135, 162]
    pages, token = [], b""
    while True:
        found, token = image.iterate(token, 3)
        pages.append(([e.key[-2:] for e in found], token.hex()))
        if not found:
            break
    assert pages == [
        ([b"00", b"05", b"04"], "00000100000000101c064d1e516b63eb96a819b1d867d565"),
        ([b"06", b"02", b"01"], "000001000000001066f1f9c5ca5897c41a3d0d093c0068cb"),
        ([b"03"], "00000100000000107fbccdfafed3c56cdc5fbb56d0df369e"),
        ([], "")]
    assert image.iterate(b"", 3)[0][1] == (b"key05", b"val05", 135)  # an empty token restarts


def test_hash_tables_refuse_ranges_and_bad_tokens():
    image = Image()
    image.update((b"a", b"1", NO_VERSION))
    with pytest.raises(TableArgumentError, match="Range Iterators not supported"):
        image.iterate(from_key=b"a")
    with pytest.raises(TableFormatError):
        image.iterate(b"\x00garbage")
    end = bytes.fromhex("0000010000000010") + (2 ** 63 - 2).to_bytes(8, "big") + b"\xff" * 8
    assert image.iterate(end) == ([], b"")  # the last possible hash: nothing after it
    with pytest.raises(TableArgumentError, match="MIN_HASH"):
        image.iterate(bytes.fromhex("0000010000000010") + b"\x80" + b"\x00" * 15)


def test_iteration_stops_at_the_count_or_the_byte_budget_but_takes_one_bucket():
    image = Image()
    image.update(*[(k, b"x" * 100, NO_VERSION) for k in KEYS])
    assert len(image.table.iterate(b"", b"", b"", 10, 150, lambda e: 110)[0]) == 2
    assert len(image.table.iterate(b"", b"", b"", 10, 1, lambda e: 110)[0]) == 1
    assert len(image.table.iterate(b"", b"", b"", 0, 1000, lambda e: 110)[0]) == 0


# ---- delta reads --------------------------------------------------------------------------------

def test_delta_reads_follow_the_real_store():
    # read_table_entries_delta
    image = Image()
    image.update((b"a", b"1", NO_VERSION))
    image.update((b"b", b"2", NO_VERSION))
    image.update((b"a", b"3", NO_VERSION))
    assert image.delta(0, 10) == ([(b"b", b"2", 19), (b"a", b"3", 38)], False, True, 57)
    assert image.delta(57, 10) == ([], False, True, 0)
    assert image.delta(19, 1) == ([(b"b", b"2", 19)], False, False, 38)


def test_delta_reads_drop_removed_keys_and_count_distinct_keys():
    image = Image()
    image.update((b"a", b"1", NO_VERSION), (b"b", b"2", NO_VERSION))
    image.remove((b"a", NO_VERSION))
    image.update((b"c", b"3", NO_VERSION))
    # The page is full once it holds 2 keys, before the removal of a is seen ...
    assert image.delta(0, 2) == ([(b"a", b"1", 0), (b"b", b"2", 19)], False, False, 38)
    # ... with room for 3, the removal takes a out again and c comes after b.
    entries, _clear, reached_end, last = image.delta(0, 3)
    assert [e.key for e in entries] == [b"b", b"c"] and reached_end and last == len(image.data)
    with pytest.raises(TableArgumentError, match="can not exceed the length"):
        image.delta(len(image.data) + 1, 10)
    with pytest.raises(TableFormatError):
        image.delta(3, 10)  # not a record boundary


# ---- fixed-key-length tables --------------------------------------------------------------------

def test_fixed_key_tables_check_key_lengths_with_javas_messages():
    # fixed_length_table_wrong_key_length
    image = Image(8)
    with pytest.raises(TableArgumentError, match="which requires key lengths of 8"):
        image.update((b"abc", b"v", NO_VERSION))
    with pytest.raises(TableArgumentError) as refused:
        image.table.get([b"abc"])
    assert str(refused.value) == "Expected Attribute Id length 8, given 3."
    with pytest.raises(TableArgumentError):
        Table(257)
    with pytest.raises(TableArgumentError):
        Table(-1)


def test_fixed_key_tables_remove_without_records_and_iterate_in_key_order():
    image = Image(2)
    assert image.update((b"bb", b"1", NO_VERSION), (b"\xffa", b"2", NO_VERSION),
                        (b"aa", b"3", NO_VERSION)) == [0, 20, 40]
    length = len(image.data)
    image.remove((b"bb", NO_VERSION))
    assert len(image.data) == length and image.table.entry_count == 2
    with pytest.raises(KeyNotFoundError):
        image.remove((b"bb", 0))
    found, token = image.iterate()
    assert [e.key for e in found] == [b"aa", b"\xffa"] and token.endswith(b"\x02\xffa")
    assert [e.key for e in image.iterate(from_key=b"ab", to_key=b"zz")[0]] == []
    with pytest.raises(TableArgumentError, match="ContinuationToken not supported"):
        image.iterate(token)
    with pytest.raises(TableUnsupportedError):
        image.delta(0, 10)


# ---- compaction ---------------------------------------------------------------------------------

def compacting(storage: Storage, name: str, key_length: int = 0):
    segment = storage.create(name, TABLE, key_length=key_length)
    segment.table.compaction_min_bytes = 2000
    segment.table.compaction_max_bytes = 1000
    return segment


def test_compaction_bounds_a_busy_table_and_keeps_versions():
    storage = Storage()
    segment = compacting(storage, "t")
    (steady,) = storage.table_update(segment, [(b"steady", b"s", NO_VERSION)])
    for i in range(500):
        storage.table_update(segment, [(b"hot", b"%04d" % i, NO_VERSION)])
    assert segment.start_offset > 0 and segment.length - segment.start_offset < 4000
    table = segment.table
    assert table.get([b"steady"]) == [(b"steady", b"s", steady)]
    assert table.get([b"hot"])[0].value == b"0499"
    # The remaining bytes are still a valid image that rebuilds the same index.
    copy = Table()
    copy.rebuild(segment.read_exact, segment.start_offset, segment.length)
    assert copy.get([b"steady", b"hot"]) == table.get([b"steady", b"hot"])
    # A delta read from before the start offset is told to clear, and sees both keys.
    entries, clear, reached_end, _last = table.delta(
        segment.read_exact, segment.start_offset, segment.length, 0, 10, 1 << 20, unlimited)
    assert clear and reached_end
    assert {e.key: e.version for e in entries} == {
        b"steady": steady, b"hot": table.get([b"hot"])[0].version}


# ---- durability ---------------------------------------------------------------------------------

def test_tables_survive_a_restart_with_the_same_bytes_and_versions(tmp_path):
    storage = Storage(tmp_path)
    hashed = storage.create("hashed", TABLE)
    fixed = storage.create("fixed", TABLE, key_length=2)
    busy = compacting(storage, "busy")
    storage.table_update(hashed, [(k, k, NO_VERSION) for k in KEYS] + [(b"", b"", NO_VERSION)])
    storage.table_remove(hashed, [(KEYS[1], NO_VERSION)])
    storage.table_update(fixed, [(b"aa", b"1", NO_VERSION), (b"bb", b"2", NO_VERSION)])
    storage.table_remove(fixed, [(b"aa", NO_VERSION)])
    for i in range(300):
        storage.table_update(busy, [(b"k%d" % (i % 3), b"%04d" % i, NO_VERSION)])
    storage.commit()
    before = {name: (storage.get(name).start_offset,
                     storage.get(name).read_exact(storage.get(name).start_offset,
                                                  storage.get(name).length
                                                  - storage.get(name).start_offset),
                     storage.get(name).table.iterate(b"", b"", b"", 100, 1 << 20, unlimited))
              for name in ("hashed", "fixed", "busy")}
    storage.table_update(hashed, [(b"lost", b"x", NO_VERSION)])  # never committed
    storage.close()

    for _restart in range(2):  # the second one recovers from the rewritten snapshot
        again = Storage(tmp_path)
        after = {name: (again.get(name).start_offset,
                        again.get(name).read_exact(again.get(name).start_offset,
                                                   again.get(name).length
                                                   - again.get(name).start_offset),
                        again.get(name).table.iterate(b"", b"", b"", 100, 1 << 20, unlimited))
                 for name in ("hashed", "fixed", "busy")}
        assert after == before
        assert again.get("fixed").table.key_length == 2
        assert again.get("fixed").table.get([b"aa"]) == [None]
        assert again.get("hashed").table.get([b"lost"]) == [None]
        again.close()
    again = Storage(tmp_path)
    fixed = again.get("fixed")
    storage_length = fixed.length
    again.table_remove(fixed, [(b"bb", NO_VERSION)])
    again.table_update(fixed, [(b"aa", b"back", NO_VERSION)])
    again.commit()
    again.close()
    fixed = Storage(tmp_path).get("fixed")
    assert fixed.table.get([b"aa", b"bb"]) == [(b"aa", b"back", storage_length), None]


# ---- on the wire --------------------------------------------------------------------------------

def entries(*items):
    return C.TableEntries([(C.TableKey(k, v), C.TableValue(d)) for k, d, v in items])



@pytest.mark.asyncio
async def test_table_commands_and_replies():
    table = "sc/rg_kvtable/0.#epoch.0"
    async with serving() as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTableSegment(1, table), C.CreateTableSegment(2, table),
                  C.UpdateTableEntries(3, table, "", entries((b"a", b"1", ABSENT),
                                                             (b"b", b"2", NO))))
        assert await wire.recv_n(3) == [C.SegmentCreated(1, table),
                                        C.SegmentAlreadyExists(2, table, ""),
                                        C.TableEntriesUpdated(3, [0, 19])]
        wire.send(C.UpdateTableEntries(4, table, "", entries((b"c", b"3", NO), (b"a", b"x", 19))),
                  C.UpdateTableEntries(5, table, "", entries((b"zz", b"3", 0))),
                  C.UpdateTableEntries(6, table, "", entries((b"a", b"x", ABSENT))),
                  C.UpdateTableEntries(7, table, "", entries((b"c", b"3", NO)), 5),
                  C.ReadTable(8, table, "", [C.TableKey(b"a"), C.TableKey(b"c")]))
        assert await wire.recv_n(5) == [
            C.TableKeyBadVersion(4, table, ""), C.TableKeyDoesNotExist(5, table, ""),
            C.TableKeyBadVersion(6, table, ""), C.SegmentIsTruncated(7, table, 38, "", 5),
            C.TableRead(8, table, entries((b"a", b"1", 0), (b"c", b"", ABSENT)))]
        wire.send(C.ReadTableEntriesDelta(9, table, "", 0, 1),
                  C.ReadTableEntriesDelta(10, table, "", 19, 10),
                  C.ReadTableEntriesDelta(11, table, "", 38, 10),
                  C.ReadTableEntriesDelta(12, table, "", 39, 10))
        assert await wire.recv_n(4) == [
            C.TableEntriesDeltaRead(9, table, entries((b"a", b"1", 0)), False, False, 19),
            C.TableEntriesDeltaRead(10, table, entries((b"b", b"2", 19)), False, True, 38),
            C.TableEntriesDeltaRead(11, table, entries(), False, True, 0),
            C.ErrorMessage(12, table, "fromPosition (39) can not exceed the length (38) of "
                                      "the TableSegment.", 0)]
        wire.send(C.ReadTableKeys(13, table, "", 1, ARGS),
                  C.ReadTableKeys(14, table, "", 5, ARGS._replace(from_key=b"a")),
                  C.GetTableSegmentInfo(15, table, ""),
                  C.RemoveTableKeys(16, table, "", [C.TableKey(b"a", 19)]),
                  C.RemoveTableKeys(17, table, "", [C.TableKey(b"a", 0)]),
                  C.DeleteTableSegment(18, table, True, ""))
        keys, ranged, info, *rest = await wire.recv_n(6)
        first = min((b"a", b"b"), key=key_hash)
        assert keys.keys == [C.TableKey(first, 0 if first == b"a" else 19)]
        assert keys.continuation_token == bytes.fromhex("0000010000000010") + b"".join(
            part.to_bytes(8, "big", signed=True) for part in key_hash(first))
        assert ranged == C.ErrorMessage(14, table, "Range Iterators not supported for "
                                                   "HashTableSegments.", 0)
        assert info == C.TableSegmentInfo(15, table, 0, 38, 2, 0)
        assert rest == [C.TableKeyBadVersion(16, table, ""), C.TableKeysRemoved(17, table),
                        C.TableSegmentNotEmpty(18, table, "")]
        wire.send(C.DeleteTableSegment(19, table, False, ""),
                  C.ReadTable(20, table, "", [C.TableKey(b"a")]))
        assert await wire.recv_n(2) == [C.SegmentDeleted(19, table),
                                        C.NoSuchSegment(20, table, "", -1)]
        await wire.close()


@pytest.mark.asyncio
async def test_read_segment_returns_a_tables_bytes():
    # read_segment_on_table_segment
    async with serving() as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTableSegment(1, "t"),
                  C.UpdateTableEntries(2, "t", "", entries((b"k", b"v", NO))),
                  C.ReadSegment("t", 0, 1000, "", 3),
                  C.GetStreamSegmentInfo(4, "t", ""))
        replies = await wire.recv_n(4)
        assert replies[2] == C.SegmentRead("t", 0, True, False, bytes.fromhex(
            "00000000010000000180000000000000006b76"), 3)
        assert (replies[3].write_offset, replies[3].start_offset) == (19, 0)
        await wire.close()


@pytest.mark.asyncio
async def test_fixed_key_length_tables_on_the_wire():
    # create_table_fixed_key_length, fixed_length_table_wrong_key_length
    async with serving() as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTableSegment(1, "f", key_length=8),
                  C.GetTableSegmentInfo(2, "f", ""),
                  C.UpdateTableEntries(3, "f", "", entries((b"abc", b"v", NO))),
                  C.ReadTable(4, "f", "", [C.TableKey(b"abc")]),
                  C.UpdateTableEntries(5, "f", "", entries((b"12345678", b"v", NO))),
                  C.ReadTableEntriesDelta(6, "f", "", 0, 10),
                  C.DeleteTableSegment(7, "f", True, ""),
                  C.CreateTableSegment(8, "g", key_length=300))
        replies = await wire.recv_n(8)
        assert replies[:2] == [C.SegmentCreated(1, "f"), C.TableSegmentInfo(2, "f", 0, 0, 0, 8)]
        assert (type(replies[2]), replies[2].error_code) == (C.ErrorMessage, 0)
        assert "requires key lengths of 8" in replies[2].message
        assert replies[3] == C.ErrorMessage(4, "f", "Expected Attribute Id length 8, given 3.", 0)
        assert replies[4:7] == [C.TableEntriesUpdated(5, [0]),
                                C.OperationUnsupported(6, "readTableEntriesDelta", ""),
                                C.OperationUnsupported(7, "deleteTableSegment", "")]
        assert (type(replies[7]), replies[7].error_code) == (C.ErrorMessage, 0)
        await wire.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("command", [
    C.UpdateTableEntries(2, SEGMENT, "", entries((b"k", b"v", NO))),
    C.RemoveTableKeys(2, SEGMENT, "", [C.TableKey(b"k")]),
    C.ReadTable(2, SEGMENT, "", [C.TableKey(b"k")]),
    C.ReadTableKeys(2, SEGMENT, "", 5, ARGS),
    C.ReadTableEntries(2, SEGMENT, "", 5, ARGS),
    C.ReadTableEntriesDelta(2, SEGMENT, "", 0, 5),
    C.GetTableSegmentInfo(2, SEGMENT, ""),
    C.DeleteTableSegment(2, SEGMENT, False, ""),
], ids=lambda c: type(c).__name__)
async def test_a_table_command_on_a_stream_segment_closes_the_connection(command):
    # table_command_on_stream_segment: no reply, the connection is closed; others are served.
    async with serving(SEGMENT) as store:
        other = await Wire.open(store.endpoint)
        wire = await Wire.open(store.endpoint)
        wire.send(C.GetStreamSegmentInfo(1, SEGMENT, ""), command,
                  C.GetStreamSegmentInfo(3, SEGMENT, ""))
        assert await wire.closed_by_server()
        assert [type(c) for c in wire.pending] == [C.StreamSegmentInfo]
        other.send(C.GetStreamSegmentInfo(4, SEGMENT, ""))
        assert (await other.recv()).request_id == 4
        assert store.storage.get(SEGMENT).length == 0
        await other.close()


@pytest.mark.asyncio
async def test_a_bad_continuation_token_closes_the_connection():
    async with serving() as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTableSegment(1, "t"),
                  C.ReadTableKeys(2, "t", "", 5, ARGS._replace(continuation_token=b"junk")))
        assert await wire.closed_by_server()
        assert wire.pending == [C.SegmentCreated(1, "t")]


@pytest.mark.asyncio
async def test_a_sealed_table_takes_no_more_writes():
    async with serving() as store:
        store.create_segment("t", TABLE)
        store.seal_segment("t")
        wire = await Wire.open(store.endpoint)
        wire.send(C.UpdateTableEntries(1, "t", "", entries((b"k", b"v", NO))),
                  C.RemoveTableKeys(2, "t", "", [C.TableKey(b"k")]),
                  C.ReadTable(3, "t", "", [C.TableKey(b"k")]))
        assert await wire.recv_n(3) == [
            C.SegmentIsSealed(1, "t", "", -1), C.SegmentIsSealed(2, "t", "", -1),
            C.TableRead(3, "t", entries((b"k", b"", ABSENT)))]
        assert store.storage.get("t").length == 0
        await wire.close()


@pytest.mark.asyncio
async def test_a_read_at_a_tables_tail_is_answered_by_the_next_update():
    async with serving(read_wait=30.0) as store:
        store.create_segment("t", TABLE)
        reader, writer = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        reader.send(C.ReadSegment("t", 0, 1000, "", 1))
        assert await reader.quiet() == []  # held at the tail of the empty table
        writer.send(C.UpdateTableEntries(2, "t", "", entries((b"k", b"v", NO))))
        assert await writer.recv() == C.TableEntriesUpdated(2, [0])
        assert await reader.recv() == C.SegmentRead("t", 0, True, False,
                                                    serialize_update(b"k", b"v"), 1)
        await reader.close()
        await writer.close()
