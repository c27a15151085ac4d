"""Storage of the embedded segment store, without any I/O but files: segment data and reads,
attributes, seal / truncate / delete / merge, and durability (commit, recovery, torn tails).
Table semantics: test_server_tables.py."""

from __future__ import annotations

import json
import os
import struct
import uuid
import zlib

import pytest

from pravega_wire.server.storage import (
    EVENT_COUNT, NULL_ATTRIBUTE_VALUE, TABLE, TRANSIENT, UnexpectedOffsetError, CorruptStorageError,
    SegmentExistsError, SegmentNotFoundError, SealedSegmentError, Storage,
    SegmentTypeMismatchError, transient_segment_name)
from pravega_wire.server.tables import NO_VERSION

W1, W2 = uuid.UUID(int=1), uuid.UUID(int=2)


def content(segment) -> bytes:
    return b"".join(bytes(chunk) for chunk in segment.iter_data())


# ---- segments -----------------------------------------------------------------------------------

def test_appends_are_read_back_as_views_across_pages():
    storage = Storage()
    segment = storage.create("s")
    expected = bytearray()
    early = None
    for i in range(300):
        block = bytes([i % 256]) * (997 + i)
        assert storage.append(segment, block) == len(expected) + len(block)
        expected += block
        if i == 0:
            early = segment.read(0, 10)
    assert content(segment) == expected
    assert bytes(early) == expected[:10]  # a view taken early stays valid while pages fill
    view = segment.read(100_000, 2 * 1024 * 1024)
    assert isinstance(view, memoryview)
    assert bytes(view) == expected[100_000:100_000 + len(view)]
    assert 0 < len(view) <= 2 * 1024 * 1024
    assert segment.read(len(expected), 100) == b""
    with pytest.raises(ValueError):
        segment.read(len(expected) + 1, 1)


def test_a_read_never_crosses_the_end_of_the_data():
    storage = Storage()
    segment = storage.create("s")
    storage.append(segment, b"abc")
    assert bytes(segment.read(1, 1000)) == b"bc"


def test_append_sets_attributes_atomically_and_checks_the_expected_offset():
    storage = Storage()
    segment = storage.create("s")
    storage.append(segment, b"xy", [(W1, 5)])
    assert segment.attribute(W1) == 5
    assert segment.attribute(W2) == NULL_ATTRIBUTE_VALUE
    with pytest.raises(UnexpectedOffsetError) as failure:
        storage.append(segment, b"z", [(W1, 6)], expected_offset=0)
    assert failure.value.expected_offset == 2
    assert (segment.length, segment.attribute(W1)) == (2, 5)
    assert storage.append(segment, b"z", [(W1, 6)], expected_offset=2) == 3


def test_appends_count_their_events_in_the_event_count_attribute(tmp_path):
    storage = Storage(tmp_path)
    segment = storage.create("s")
    assert segment.attribute(EVENT_COUNT) == NULL_ATTRIBUTE_VALUE  # unset before any event
    storage.append(segment, b"abc", [(W1, 3)], event_count=3)
    storage.append(segment, b"d")  # raw bytes: no events counted
    with pytest.raises(UnexpectedOffsetError):
        storage.append(segment, b"e", [(W1, 4)], expected_offset=0, event_count=1)
    storage.append(segment, b"efgh", [(W1, 7)], event_count=4)
    assert (segment.attribute(EVENT_COUNT), segment.attribute(W1)) == (7, 7)
    storage.commit()
    storage.close()
    assert Storage(tmp_path).get("s").attribute(EVENT_COUNT) == 7  # journalled with the data


def test_create_twice_and_missing_segments():
    storage = Storage()
    storage.create("s")
    with pytest.raises(SegmentExistsError):
        storage.create("s")
    with pytest.raises(SegmentNotFoundError):
        storage.require("t")
    assert storage.get("t") is None
    assert "s" in storage and len(storage) == 1


def test_sealed_segments_refuse_appends_and_merges_into_them():
    storage = Storage()
    segment = storage.create("s")
    assert storage.seal(segment) is True
    assert storage.seal(segment) is False
    with pytest.raises(SealedSegmentError):
        storage.append(segment, b"x")
    with pytest.raises(SealedSegmentError):
        storage.merge(segment, storage.create("t"))


def test_truncate_moves_the_start_and_rejects_offsets_outside_the_data():
    storage = Storage()
    segment = storage.create("s")
    for i in range(100):
        storage.append(segment, bytes([i]) * 10_000)
    storage.truncate(segment, 500_000)
    assert segment.start_offset == 500_000
    assert bytes(segment.read(500_000, 5)) == bytes([50]) * 5
    with pytest.raises(ValueError):
        segment.read(499_999, 1)
    with pytest.raises(UnexpectedOffsetError) as below:
        storage.truncate(segment, 10)
    assert below.value.expected_offset == 500_000
    with pytest.raises(UnexpectedOffsetError) as beyond:
        storage.truncate(segment, 1_000_001)
    assert beyond.value.expected_offset == 1_000_000
    assert content(segment) == b"".join(bytes([i]) * 10_000 for i in range(50, 100))


def test_merge_appends_the_source_and_deletes_it():
    storage = Storage()
    target, source = storage.create("t"), storage.create("t#transient.x", TRANSIENT)
    storage.append(target, b"head-")
    storage.append(source, b"tail")
    assert storage.merge(target, source) == 9
    assert content(target) == b"head-tail"
    assert storage.get(source.name) is None and source.deleted and source.sealed


def test_watchers_are_called_once_per_change():
    storage = Storage()
    segment = storage.create("s")
    seen = []
    segment.watchers.append(lambda s: seen.append(("first", s.length)))
    storage.append(segment, b"abc")
    storage.append(segment, b"d")
    segment.watchers.append(lambda s: seen.append(("second", s.sealed)))
    storage.seal(segment)
    assert seen == [("first", 3), ("second", True)]


def test_byte_and_table_operations_do_not_mix():
    storage = Storage()
    table, stream = storage.create("t", TABLE), storage.create("s")
    with pytest.raises(SegmentTypeMismatchError):
        storage.append(table, b"x")
    with pytest.raises(SegmentTypeMismatchError):
        storage.table_update(stream, [(b"k", b"v", NO_VERSION)])


def test_transient_names_follow_the_parent():
    writer = uuid.UUID(hex="0123456789abcdef0123456789abcdef")
    name = transient_segment_name("sc/st/0.#epoch.0", writer)
    parent, marker, rest = name.partition("#transient.")
    writer_hex, dot, random_hex = rest.partition(".")
    assert (parent, marker, writer_hex, dot) == ("sc/st/0.#epoch.0", "#transient.",
                                                 writer.hex, ".")
    assert len(random_hex) == 32 and int(random_hex, 16) >= 0
    assert transient_segment_name("p", writer) != transient_segment_name("p", writer)


# ---- durability ---------------------------------------------------------------------------------

def test_committed_changes_survive_and_uncommitted_ones_do_not(tmp_path):
    storage = Storage(tmp_path)
    stream = storage.create("sc/st/0.#epoch.0")
    table = storage.create("sc/rg_kvtable/0.#epoch.0", TABLE)
    storage.append(stream, b"hello ", [(W1, 1)])
    storage.append(stream, b"world", [(W1, 2)])
    storage.table_update(table, [(b"k", b"v", NO_VERSION)])
    storage.update_attributes(stream, [(W2, 9)])
    sealed = storage.create("sealed")
    storage.seal(sealed)
    gone = storage.create("gone")
    storage.append(gone, b"bye")
    storage.delete(gone)
    storage.commit()
    assert not storage.pending
    storage.append(stream, b"!!! lost", [(W1, 3)])  # never committed
    storage.table_update(table, [(b"lost", b"x", NO_VERSION)])
    assert storage.pending
    storage.close()

    again = Storage(tmp_path)
    stream = again.get("sc/st/0.#epoch.0")
    assert content(stream) == b"hello world"
    assert (stream.attribute(W1), stream.attribute(W2)) == (2, 9)
    table = again.get("sc/rg_kvtable/0.#epoch.0")
    assert [e.value for e in table.table.get([b"k"])] == [b"v"]
    assert table.table.get([b"lost"]) == [None]
    assert again.get("sealed").sealed and again.get("gone") is None
    assert sorted(os.listdir(tmp_path / "segments")) == sorted(
        f"{again.get(n).file_id}.dat" for n in ("sc/st/0.#epoch.0", "sc/rg_kvtable/0.#epoch.0",
                                                "sealed"))
    assert again.append(stream, b"!", [(W1, 3)]) == 12
    again.commit()
    again.close()
    assert content(Storage(tmp_path).get("sc/st/0.#epoch.0")) == b"hello world!"


def test_merges_truncations_and_table_removes_are_recovered(tmp_path):
    storage = Storage(tmp_path)
    target = storage.create("t")
    storage.append(target, b"0123456789")
    source = storage.create("t#transient.a.b", TRANSIENT)
    storage.append(source, b"abc")
    storage.merge(target, source)
    storage.truncate(target, 4)
    table = storage.create("tbl", TABLE)
    storage.table_update(table, [(b"a", b"1", NO_VERSION), (b"b", b"2", NO_VERSION)])
    storage.table_remove(table, [(b"a", NO_VERSION)])
    length = table.length
    storage.commit()
    storage.close()

    again = Storage(tmp_path)
    target = again.get("t")
    assert (target.start_offset, target.length) == (4, 13)
    assert content(target) == b"456789abc"
    assert again.get("t#transient.a.b") is None
    table = again.get("tbl")
    assert (table.table.get([b"a"]), table.length) == ([None], length)
    assert len(os.listdir(tmp_path / "segments")) == 2  # the stream's and the table's


def test_a_torn_journal_tail_is_cut_off(tmp_path):
    storage = Storage(tmp_path)
    segment = storage.create("s")
    storage.append(segment, b"kept", [(W1, 1)])
    storage.commit()
    storage.close()
    journal = tmp_path / "journal.log"
    intact = journal.read_bytes()
    body = json.dumps({"op": "append", "id": 1, "len": 8}).encode()
    # A record cut short, as a crash in the middle of a write leaves it.
    journal.write_bytes(intact + struct.pack(">II", len(body), zlib.crc32(body)) + body[:5])

    again = Storage(tmp_path)
    assert content(again.get("s")) == b"kept"
    assert again.get("s").attribute(W1) == 1
    again.close()
    # Garbage with a bad checksum is cut as well.
    journal.write_bytes(journal.read_bytes() + struct.pack(">II", 4, 0) + b"junk")
    assert content(Storage(tmp_path).get("s")) == b"kept"


def test_data_the_journal_does_not_cover_is_cut_and_missing_data_is_an_error(tmp_path):
    storage = Storage(tmp_path)
    segment = storage.create("s")
    storage.append(segment, b"abc")
    storage.commit()
    storage.close()
    data_file = tmp_path / "segments" / f"{segment.file_id}.dat"
    data_file.write_bytes(b"abc-torn-tail")
    assert content(Storage(tmp_path).get("s")) == b"abc"
    assert data_file.read_bytes() == b"abc"
    data_file.write_bytes(b"a")
    with pytest.raises(CorruptStorageError):
        Storage(tmp_path)
