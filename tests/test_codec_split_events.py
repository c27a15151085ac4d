"""``split_events(data, limit)`` on both codec twins: the complete Event records at the start
of a buffer (copies of small payloads, views of large ones), stopping before an incomplete
record or one that is not an Event record (the reader's slow path raises the typed error for
those)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_fakes import event_record

HEADER = struct.Struct(">ii")


def test_small_events_are_copies_large_ones_views_and_the_limit_holds(codec):
    big = bytes(range(256)) * (codec.VIEW_THRESHOLD // 256)
    payloads = (b"one", b"", big, b"three")
    data = memoryview(b"".join(event_record(p) for p in payloads))
    events, used = codec.split_events(data, 10)
    assert [bytes(e) for e in events] == list(payloads) and used == len(data)
    assert [type(e) for e in events] == [bytes, bytes, memoryview, bytes]
    assert events[2].obj is data.obj  # a view of the received buffer: no copy
    assert type(codec.split_events(memoryview(event_record(big[1:])), 1)[0][0]) is bytes
    events, used = codec.split_events(data, 2)
    assert [bytes(e) for e in events] == [b"one", b""] and used == 11 + 8
    assert codec.split_events(data, 0) == ([], 0)


@pytest.mark.parametrize("tail", [
    b"",                                # nothing more
    b"\0\0\0",                          # part of a header
    HEADER.pack(0, 5) + b"abcd",        # the payload one byte short
    HEADER.pack(7, 1) + b"x",           # not an Event record
    HEADER.pack(0, -1),                 # a negative length
    HEADER.pack(0, 2 ** 31 - 1),        # longer than anything buffered
], ids=["end", "partial-header", "partial-payload", "other-type", "negative", "huge"])
def test_stops_before_what_is_not_a_complete_event(codec, tail):
    head = event_record(b"ok")
    events, used = codec.split_events(memoryview(head + tail), 1 << 62)
    assert [bytes(e) for e in events] == [b"ok"] and used == len(head)
    assert codec.split_events(memoryview(tail), 5) == ([], 0)


def test_bytes_give_bytes(codec):
    events, used = codec.split_events(event_record(b"ab") + event_record(b"c"), 5)
    assert events == [b"ab", b"c"] and used == 19


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=30), max_size=10), cut=st.integers(0, 400),
       limit=st.integers(1, 12))
def test_twins_agree(payloads, cut, limit):
    from conftest import TWINS, load_twin  # both twins in one example (compiled when built)
    data = memoryview(b"".join(event_record(p) for p in payloads)[:cut])
    results = []
    for which in TWINS:
        try:
            twin = load_twin("_codec", which)
        except pytest.skip.Exception:
            continue
        events, used = twin.split_events(data, limit)
        results.append(([bytes(e) for e in events], used))
    whole = [p for p in payloads]
    expect, pos = [], 0
    for p in whole:
        if len(expect) == limit or pos + 8 + len(p) > len(data):
            break
        expect.append(p)
        pos += 8 + len(p)
    assert all(r == (expect, pos) for r in results)
