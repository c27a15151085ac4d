"""``encode_parts(cmd)`` on both codec twins: the frame ``encode(cmd)`` makes, as buffers in which
every byte field of at least ``VIEW_THRESHOLD`` bytes is the caller's own object (never a copy)
and the bytes around such fields are as few non-empty ``bytes`` objects as possible; the errors
are ``encode``'s."""

from __future__ import annotations

import array
import struct
import sys
import uuid

import pytest
from hypothesis import given

import pravega_wire.codec
from pravega_wire import InvalidMessageError
from pravega_wire import _codec_py as P
from pravega_wire import commands as C
from test_codec_properties import COMMANDS, SETTINGS

T = P.VIEW_THRESHOLD
W = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
BIG = bytes(range(256)) * (T // 256 * 2)  # 2 * VIEW_THRESHOLD bytes
MAX = C.MAX_WIRECOMMAND_SIZE


def _large_fields(cmd) -> list:
    """The byte fields of ``cmd`` of at least VIEW_THRESHOLD bytes, in wire order."""
    if type(cmd) in (C.Event, C.PartialEvent):
        found = [cmd.data]
    elif type(cmd) in (C.Padding, C.SegmentsBatchMerged):
        found = []
    else:
        found = []
        for spec in P.LAYOUTS[type(cmd)]:
            kind, value = spec[1], getattr(cmd, spec[0])
            if kind in (P.BLOB, P.BLOB_LENIENT, P.REST):
                found.append(value)
            elif kind == P.EVENT:
                found.append(value.data)
            elif kind == P.KEY_LIST:
                found += [key.data for key in value]
            elif kind == P.ENTRIES:
                for key, val in value.entries:
                    found += [key.data, val.data]
            elif kind == P.ITER_ARGS:  # the prefix filter is never written
                found += [value.continuation_token, value.from_key, value.to_key]
    return [f for f in found if f is not None and memoryview(f).nbytes >= T]


def _check_parts(codec, cmd):
    """The parts of ``cmd``: their bytes are ``encode(cmd)``; the large byte fields are elements
    of their own, by identity, with one non-empty bytes object before each of them and after
    the last one unless the frame ends with it."""
    parts = codec.encode_parts(cmd)
    assert type(parts) is list
    assert b"".join(parts) == codec.encode(cmd)
    fields = _large_fields(cmd)
    assert len(parts) in (2 * len(fields), 2 * len(fields) + 1)
    for i, field in enumerate(fields):
        assert parts[2 * i + 1] is field
    for run in parts[0::2]:
        assert type(run) is bytes and len(run) > 0
    return parts


@SETTINGS
@given(cmd=COMMANDS)
def test_random_commands(codec, cmd):
    parts = _check_parts(codec, cmd)
    assert codec.decode(b"".join(parts)) == cmd


def _read(data, request_id=(7 << 32) | 9):
    return C.SegmentRead(segment="seg", offset=1 << 40, at_tail=True, end_of_segment=False,
                         data=data, request_id=request_id)


def test_segment_read_is_head_data_tail(codec):
    read = _read(BIG)
    head, data, tail = _check_parts(codec, read)
    assert data is BIG
    assert head == codec.encode(read)[:len(head)] and len(head) == 8 + 5 + 8 + 1 + 1 + 4
    assert tail == struct.pack(">q", read.request_id)


@pytest.mark.parametrize("size", [0, 1, T - 1])
def test_small_payloads_are_copied_into_one_frame(codec, size):
    read = _read(BIG[:size])
    assert codec.encode_parts(read) == [codec.encode(read)]
    assert type(codec.encode_parts(read)[0]) is bytes


@pytest.mark.parametrize("size", [T, T + 1, 32 * 1024, 1 << 20])
def test_threshold_and_above_are_passed_on(codec, size):
    data = bytes(size)
    parts = _check_parts(codec, _read(data))
    assert len(parts) == 3 and parts[1] is data


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview,
                                  lambda b: memoryview(bytearray(b)),
                                  lambda b: memoryview(array.array("I", b)),
                                  lambda b: memoryview(b"xx" + b)[2:],
                                  lambda b: memoryview(b).cast("B", (2, len(b) // 2))],
                         ids=["bytes", "bytearray", "memoryview", "view-of-bytearray", "uint32-view",
                              "sliced-view", "2d-view"])
def test_every_contiguous_buffer_is_passed_on(codec, make):
    data = make(BIG)
    for cmd in (_read(data),
                C.AppendBlockEnd(writer_id=W, size_of_whole_events=10, data=data, num_events=2,
                                 last_event_number=5, request_id=3),
                C.ConditionalBlockEnd(writer_id=W, event_number=3, expected_offset=-1, data=data,
                                      request_id=4),
                C.ConditionalAppend(writer_id=W, event_number=3, expected_offset=0,
                                    event=C.Event(data), request_id=5),
                C.AppendBlock(writer_id=W, data=data), C.PartialEvent(data), C.Event(data)):
        parts = _check_parts(codec, cmd)
        assert any(part is data for part in parts), type(cmd).__name__


def test_frames_that_end_with_their_payload_have_no_tail(codec):
    for cmd in (C.AppendBlock(writer_id=W, data=BIG), C.PartialEvent(BIG), C.Event(BIG)):
        head, data = codec.encode_parts(cmd)
        assert data is BIG and head + data == codec.encode(cmd)
    assert codec.encode_parts(C.Event(BIG))[0] == struct.pack(">ii", 0, len(BIG))


def test_several_large_fields(codec):
    key, value, token = bytes(T), bytearray(T + 3), memoryview(bytes(5 * T))
    entries = C.TableEntries([(C.TableKey(key, 1), C.TableValue(value)),
                              (C.TableKey(b"k", 2), C.TableValue(BIG))])
    updates = C.UpdateTableEntries(request_id=1, segment="t", delegation_token="",
                                   table_entries=entries, table_segment_offset=-1)
    parts = _check_parts(codec, updates)
    assert [id(p) for p in parts[1::2]] == [id(key), id(value), id(BIG)]
    read = C.TableEntriesRead(request_id=2, segment="t", entries=entries,
                              continuation_token=token)
    assert _check_parts(codec, read)[-1] is token  # the frame ends with it: no tail
    args = C.TableIteratorArgs(token, b"", b"from", BIG)
    keys = C.ReadTableKeys(request_id=3, segment="t", delegation_token="",
                           suggested_key_count=10, args=args)
    assert [id(p) for p in _check_parts(codec, keys)[1::2]] == [id(token), id(BIG)]


def test_large_padding_and_strings_are_encoded_bytes(codec):
    """Only byte fields are passed on: padding and long strings are the codec's own bytes."""
    for cmd in (C.Padding(3 * T), C.WrongHost(request_id=1, segment="s" * 3 * T,
                                               correct_host="h" * 60000, server_stack_trace="")):
        assert codec.encode_parts(cmd) == [codec.encode(cmd)]


def _released():
    view = memoryview(BIG)
    view.release()
    return view


BAD = [
    5, None, ("x",), C.TableKey(BIG, 1),
    _read(bytes(MAX - 32)),  # one byte over the frame limit
    _read(BIG, request_id=2 ** 63), _read(BIG, request_id="1"), _read(BIG)._replace(segment=None),
    _read(BIG)._replace(segment="\u65e5" * 21846), _read(BIG)._replace(offset=1.5),
    _read("text"), _read(_released()),
    C.AppendBlockEnd(writer_id="w", size_of_whole_events=1, data=BIG, num_events=1,
                     last_event_number=0, request_id=1),
    C.AppendBlockEnd(writer_id=W, size_of_whole_events=1, data=BIG, num_events=2 ** 31,
                     last_event_number=0, request_id=1),
    C.AppendBlock(writer_id=W, data=bytes(MAX - 23)),
    C.ConditionalAppend(writer_id=W, event_number=1, expected_offset=0, event=BIG),
    C.Event(bytes(MAX - 7)), C.Event(None), C.Padding(MAX - 7), C.PartialEvent(None),
    C.UpdateTableEntries(request_id=1, segment="t", delegation_token="",
                         table_entries=C.TableEntries([(C.TableKey(BIG, 1), "v")]),
                         table_segment_offset=0),
]


@pytest.mark.parametrize("cmd", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_errors_are_encodes(codec, cmd):
    with pytest.raises(Exception) as expected:
        codec.encode(cmd)
    with pytest.raises(type(expected.value)) as got:
        codec.encode_parts(cmd)
    assert str(got.value) == str(expected.value)
    assert getattr(got.value, "offset", None) == getattr(expected.value, "offset", None)


def test_frame_limit_is_inclusive(codec):
    overhead = len(codec.encode(_read(b"")))
    data = bytes(MAX - overhead)
    parts = codec.encode_parts(_read(data))
    assert parts[1] is data and sum(len(p) for p in parts) == MAX
    with pytest.raises(InvalidMessageError, match="exceeds"):
        codec.encode_parts(_read(bytes(MAX - overhead + 1)))


def test_passed_on_buffers_are_neither_held_nor_leaked(codec):
    """No buffer export outlives the call (a bytearray can be resized at once) and the parts
    hold exactly one reference to each payload."""
    data = bytearray(BIG)
    cmd = C.AppendBlockEnd(writer_id=W, size_of_whole_events=1, data=data, num_events=1,
                           last_event_number=0, request_id=1)
    before = sys.getrefcount(data)
    parts = codec.encode_parts(cmd)
    assert sys.getrefcount(data) == before + 1
    data.append(1)  # BufferError if an export were still held
    del parts
    assert sys.getrefcount(data) == before


def test_codec_module_exports_the_chosen_twin():
    assert pravega_wire.codec.encode_parts is pravega_wire.codec.impl.encode_parts
    assert "encode_parts" in pravega_wire.codec.__all__


@pytest.mark.parametrize("cmd", [_read(BIG), C.AppendBlock(writer_id=W, data=BIG),
                                 C.ConditionalAppend(writer_id=W, event_number=1,
                                                     expected_offset=0, event=C.Event(BIG),
                                                     request_id=2)],
                         ids=["SegmentRead", "AppendBlock", "ConditionalAppend"])
def test_peer_reads_the_parts_as_one_frame(codec, cmd):
    """Each part written (and received) on its own: the peer decodes the one command."""
    decoder = codec.FrameDecoder(server=True)
    received = []
    for part in codec.encode_parts(cmd):
        received += decoder.feed(bytes(part))
    assert received == [cmd] and decoder.buffered == 0


def test_strided_byte_fields_are_refused(codec):
    """A non-contiguous buffer cannot be framed: a typed error, from every encoding path."""
    strided = memoryview(bytes(range(200)))[::2]
    read = C.SegmentRead(segment="s", offset=0, at_tail=False, end_of_segment=False,
                         data=strided, request_id=1)
    for encoder in (codec.encode, codec.encode_parts):
        with pytest.raises(InvalidMessageError):
            encoder(read)
    with pytest.raises(InvalidMessageError):
        codec.encode_event(strided)
