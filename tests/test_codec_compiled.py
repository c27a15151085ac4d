"""Tests specific to the compiled codec twin (``pravega_wire._codec``).

That it really is compiled and exposes exactly the pure twin's names; and that it matches the
pure twin (results, field types, views, error types, messages, offsets and ``decoded``) where its
code differs from the pure code: ``encode_parts`` (the same parts, the same objects passed on),
the streaming decoder over the Java-made streams cut into random
chunks of every buffer type, streams corrupted mid-way, the fall-backs of the encode fast path
(int subclasses, strided views, out-of-range values, ...), modified UTF-8, request ids, and the
cache of decoded writer ids. The shared vector and property tests run both twins as well.
"""

from __future__ import annotations

import array
import gc
import random
import struct
import types
import uuid
import weakref
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pravega_wire import InvalidMessageError
from pravega_wire import _codec_py as P
from pravega_wire import commands as C

STREAMS = sorted((Path(__file__).parent / "data" / "streams").glob("*.bin"))
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
W = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")


def _shape(value):
    """A value's type structure: memoryviews (with their writability) told apart from bytes."""
    if isinstance(value, memoryview):
        return ("view", value.readonly, value.format, value.nbytes)
    if isinstance(value, tuple):
        return (type(value).__name__, tuple(_shape(v) for v in value))
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _error(e: BaseException):
    return (type(e).__name__, str(e), getattr(e, "offset", None),
            getattr(e, "decoded", None), _shape(getattr(e, "decoded", None)))


def _outcome(function, *args):
    """('ok', result, its shape) or ('error', type, message, offset, decoded, shape)."""
    try:
        result = function(*args)
    except Exception as e:  # noqa: BLE001 - comparing whatever either twin raises
        return ("error",) + _error(e)
    return ("ok", result, _shape(result))


def _chunks(data: bytes, rng: random.Random, max_chunk: int):
    """``data`` cut at random points, each piece as bytes, bytearray or memoryview."""
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 7, 8, 9, rng.randint(1, max_chunk)])
        piece = data[pos:pos + size]
        pos += size
        kind = rng.randrange(3)
        yield piece if kind == 0 else bytearray(piece) if kind == 1 else memoryview(piece)


def _feed_both(compiled_codec, stream: bytes, seed: int, max_chunk: int, server=True):
    """Feed the same chunks to both twins' decoders and compare every step (results, field
    types, errors, ``buffered``); return the commands decoded and the error, if any."""
    ours, ref = compiled_codec.FrameDecoder(server=server), P.FrameDecoder(server=server)
    decoded = []
    for piece in _chunks(stream, random.Random(seed), max_chunk):
        got, want = _outcome(ours.feed, piece), _outcome(ref.feed, piece)
        assert got == want
        assert ours.buffered == ref.buffered
        if want[0] == "error":
            # The decoder is unusable afterwards, with the same message.
            assert _outcome(ours.feed, b"") == _outcome(ref.feed, b"")
            return decoded, want
        decoded += want[1]
    return decoded, None


# --------------------------------------------------------------------------------------------
# It is the compiled module, with the pure twin's names


def test_is_compiled(compiled_codec):
    assert compiled_codec.IMPLEMENTATION == "compiled"
    assert Path(compiled_codec.__file__).suffix in (".so", ".pyd")
    for name in ("encode", "encode_parts", "decode", "encode_utf", "decode_utf", "encode_event",
                 "pack_request_id", "unpack_request_id"):
        assert not isinstance(getattr(compiled_codec, name), types.FunctionType), name
    assert not hasattr(compiled_codec.FrameDecoder(), "__dict__")  # an extension type


def test_same_public_names(compiled_codec):
    assert sorted(compiled_codec.__all__) == sorted(P.__all__)
    for name in P.__all__:
        assert hasattr(compiled_codec, name), name
    assert compiled_codec.VIEW_THRESHOLD == P.VIEW_THRESHOLD
    decoder = compiled_codec.FrameDecoder(server=True)
    assert (decoder.server, decoder.max_payload, decoder.buffered) == (
        True, C.MAX_WIRECOMMAND_SIZE - 8, 0)
    assert compiled_codec.FrameDecoder().max_payload == C.MAX_WIRECOMMAND_SIZE


# --------------------------------------------------------------------------------------------
# Streaming: the Java-made streams, random chunking, every buffer type


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
@pytest.mark.parametrize("seed", range(3))
def test_streams_decode_like_pure(compiled_codec, path, seed):
    stream = path.read_bytes()
    decoded, error = _feed_both(compiled_codec, stream, seed, max_chunk=max(64, len(stream) // 5))
    assert error is None
    assert b"".join(P.encode(cmd) for cmd in decoded) == stream


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_whole_stream_in_one_chunk(compiled_codec, path):
    stream = path.read_bytes()
    for chunk in (stream, bytearray(stream), memoryview(stream)):
        got = _outcome(compiled_codec.FrameDecoder(server=True).feed, chunk)
        assert got == _outcome(P.FrameDecoder(server=True).feed, chunk)
        assert got[0] == "ok"


# (offset in a frame, bytes written there): headers every decoder rejects ...
BAD_HEADERS = [(0, b"\x00\x00\x00\x06"), (0, b"\x00\x00\x00\x00"), (0, b"\xff\xff\xff\xfe"),
               (0, b"\x7f\x00\x00\x00"), (4, b"\xff\xff\xff\xff"), (4, b"\x01\x00\x00\x00")]
# ... and damage to the first fields (a short frame, string lengths, bad UTF-8, lengths of data)
BAD_FIELDS = [(4, b"\x00\x00\x00\x03"), (8, b"\xff\xff"), (8, b"\x00\x05\xf0"), (10, b"\xc3"),
              (16, b"\xff\xff\xff\xff"), (24, b"\xff\xff"), (28, b"\x80\x00\x00\x00")]


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
@pytest.mark.parametrize("seed", range(6))
def test_corrupted_streams_fail_like_pure(compiled_codec, path, seed):
    """The same error (type, message, offset, commands decoded before it) at the same feed."""
    rng = random.Random(seed)
    stream = bytearray(path.read_bytes())
    starts, at = [], 0
    for cmd in P.FrameDecoder(server=True).feed(bytes(stream)):
        starts.append(at)
        at += len(P.encode(cmd))
    first, second = sorted(rng.sample(starts, 2) if len(starts) > 1 else starts * 2)
    damage = ((second, rng.choice(BAD_HEADERS)), (first, rng.choice(BAD_FIELDS)))
    for start, (where, patch) in damage:
        stream[start + where:start + where + len(patch)] = patch
    decoded, error = _feed_both(compiled_codec, bytes(stream), seed,
                                max_chunk=max(64, len(stream) // 5))
    assert error is not None


@SETTINGS
@given(cmds=st.lists(st.sampled_from([
    C.DataAppended(request_id=1 << 32 | 5, writer_id=W, event_number=9, previous_event_number=8,
                   current_segment_write_offset=4096),
    C.SegmentRead(segment="sc/st/0", offset=0, at_tail=True, end_of_segment=False,
                  data=bytes(range(256)) * 17, request_id=3),
    C.AppendBlock(writer_id=W, data=bytes(P.VIEW_THRESHOLD)),
    C.WrongHost(request_id=2, segment="s\x00\u00e9\U0001F600", correct_host="",
                server_stack_trace="t"),
    C.Padding(length=5),
    C.KeepAlive(),
]), min_size=1, max_size=8), seed=st.integers(0, 2 ** 32), server=st.booleans(),
    max_chunk=st.sampled_from([16, 200, 5000, 100_000]))
def test_random_chunkings_like_pure(compiled_codec, cmds, seed, server, max_chunk):
    stream = b"".join(P.encode(c) for c in cmds)
    decoded, error = _feed_both(compiled_codec, stream, seed, max_chunk, server=server)
    assert error is None
    assert decoded == cmds


# --------------------------------------------------------------------------------------------
# Views: which buffer a large byte field belongs to


def _segment_read(size: int) -> C.SegmentRead:
    return C.SegmentRead(segment="s", offset=7, at_tail=False, end_of_segment=False,
                         data=bytes(i % 251 for i in range(size)), request_id=1)


def test_views_of_a_bytes_chunk(compiled_codec):
    read = _segment_read(P.VIEW_THRESHOLD)
    chunk = compiled_codec.encode(read) * 2
    first, second = compiled_codec.FrameDecoder().feed(chunk)
    assert first == second == read
    assert first.data.obj is chunk and second.data.obj is chunk and first.data.readonly
    del chunk
    gc.collect()
    assert bytes(second.data) == read.data  # the view keeps the chunk alive


def test_mutable_chunks_are_copied(compiled_codec):
    read = _segment_read(P.VIEW_THRESHOLD + 10)
    two = compiled_codec.encode(read) * 2
    for chunk in (bytearray(two), memoryview(bytearray(two))):
        first, second = compiled_codec.FrameDecoder().feed(chunk)
        chunk[:] = bytes(len(chunk))  # the caller reuses its buffer
        assert first == second == read
        assert first.data.obj is not second.data.obj  # one buffer per frame


def test_split_frames_get_a_buffer_each(compiled_codec):
    read = _segment_read(P.VIEW_THRESHOLD * 3)
    frame = compiled_codec.encode(read)
    decoder = compiled_codec.FrameDecoder()
    views = []
    for _ in range(3):
        assert decoder.feed(frame[:100]) == []
        assert decoder.buffered == 100
        (got,) = decoder.feed(frame[100:])
        views.append(got.data)
    assert all(v == read.data for v in views)
    assert len({id(v.obj) for v in views}) == 3 and all(not v.readonly for v in views)


def test_decode_views_the_frame(compiled_codec):
    read = _segment_read(1 << 20)
    frame = compiled_codec.encode(read)
    for source in (frame, bytearray(frame), memoryview(frame)):
        got = compiled_codec.decode(source)
        assert got == read
        assert _shape(got) == _shape(P.decode(source))
        assert got.data.obj is (source.obj if isinstance(source, memoryview) else source)


# --------------------------------------------------------------------------------------------
# Encoding: every fall-back of the fast path gives the pure twin's bytes or error


class MyInt(int):
    pass


class MyStr(str):
    pass


class MyBytes(bytes):
    pass


def _released():
    view = memoryview(b"abc")
    view.release()
    return view


def _base(cls):
    """A valid command of ``cls`` to vary one field of."""
    values = {
        C.DataAppended: dict(request_id=1, writer_id=W, event_number=2),
        C.SetupAppend: dict(request_id=1, writer_id=W, segment="s", delegation_token="t"),
        C.AppendBlockEnd: dict(writer_id=W, size_of_whole_events=0, data=b"", num_events=1,
                               last_event_number=0, request_id=3),
        C.SegmentRead: dict(segment="s", offset=0, at_tail=False, end_of_segment=True, data=b"x"),
        C.ConditionalAppend: dict(writer_id=W, event_number=1, expected_offset=0,
                                  event=C.Event(b"e")),
        C.CreateSegment: dict(request_id=1, segment="s", scale_type=0, target_rate=0),
        C.AuthTokenCheckFailed: dict(request_id=1, server_stack_trace="", error_code=1),
        C.ErrorMessage: dict(request_id=1, segment="s", message="m", error_code=0),
        C.AppendBlock: dict(writer_id=W, data=b"block"),
        C.PartialEvent: dict(data=b"part"),
        C.Padding: dict(length=3),
    }
    return cls(**values[cls])


VARIANTS = [
    (C.DataAppended, "request_id", [True, MyInt(5), 2 ** 63, -(2 ** 63) - 1, -(2 ** 63), 1.5,
                                    None]),
    (C.DataAppended, "writer_id", ["x", None, W.int, type("U", (uuid.UUID,), {})(int=5),
                                   uuid.UUID(int=2 ** 128 - 1)]),
    (C.SetupAppend, "segment", [MyStr("seg"), b"seg", None, "a" * 65535, "a" * 65536,
                                "\u65e5" * 21845, "\u65e5" * 21846, "\x00", "\ud800x",
                                "\U0001F600" * 10923, "\U0001F600" * 10922 + "\x00"]),
    (C.SetupAppend, "delegation_token", [None, "", 5]),
    (C.AppendBlockEnd, "data", [None, bytearray(b"ab"), memoryview(b"abcdef")[::2],
                                memoryview(array.array("i", [1, 2])), _released(), "str",
                                MyBytes(b"x"), memoryview(b"a" * 10)[2:5]]),
    (C.AppendBlockEnd, "size_of_whole_events", [2 ** 31, -(2 ** 31), -(2 ** 31) - 1, False]),
    (C.SegmentRead, "at_tail", [1, 0, "", "x", None]),
    (C.SegmentRead, "data", [None, bytes(C.MAX_WIRECOMMAND_SIZE - 33),
                             bytes(C.MAX_WIRECOMMAND_SIZE - 32)]),
    (C.ConditionalAppend, "event", [b"e", C.Event(None), C.Event(bytearray(b"ab")),
                                    C.Event(memoryview(b"abcd")[::2]),
                                    type("E", (C.Event,), {"__slots__": ()})(b"sub")]),
    (C.CreateSegment, "scale_type", [127, -128, 128, -129, MyInt(1)]),
    (C.AuthTokenCheckFailed, "error_code", [-1, 0, 2, True, 1.0]),
    (C.ErrorMessage, "error_code", [-1, 1, False]),
    (C.ErrorMessage, "message", [None, 5]),
    (C.AppendBlock, "data", [bytes(C.MAX_WIRECOMMAND_SIZE - 24),
                             bytes(C.MAX_WIRECOMMAND_SIZE - 23), memoryview(b"xy")[::-1]]),
    (C.PartialEvent, "data", [memoryview(b"xyz")[::2], None, bytearray(5)]),
    (C.Padding, "length", [0, -1, C.MAX_WIRECOMMAND_SIZE - 8, C.MAX_WIRECOMMAND_SIZE - 7,
                           True, MyInt(2), 2.0]),
]


@pytest.mark.parametrize("cls, field, values", VARIANTS,
                         ids=[f"{v[0].__name__}.{v[1]}" for v in VARIANTS])
def test_encode_matches_pure(compiled_codec, cls, field, values):
    for value in values:
        cmd = _base(cls)._replace(**{field: value})
        assert _outcome(compiled_codec.encode, cmd) == _outcome(P.encode, cmd), repr(value)[:80]


ODD_OBJECTS = [5, None, ("x",), C.TableKey(b"k", 1),
               type("DA", (C.DataAppended,), {"__slots__": ()})(1, W, 2, 3, 4),
               tuple.__new__(C.DataAppended, (1, W)), tuple.__new__(C.KeepAlive, (1,)),
               C.Event(b"ev"), C.Event(b"x" * (C.MAX_WIRECOMMAND_SIZE - 7)), C.KeepAlive(),
               C.Hello(17, 5), C.StorageChunksListed(1, [C.ChunkInfo(1, 2, 3, "c", True)])]


def test_encode_odd_objects_match_pure(compiled_codec):
    for obj in ODD_OBJECTS:
        assert _outcome(compiled_codec.encode, obj) == _outcome(P.encode, obj), repr(obj)[:80]


# --------------------------------------------------------------------------------------------
# encode_parts: the pure twin's parts, with the same objects passed on

BIG = bytes(range(256)) * (2 * P.VIEW_THRESHOLD // 256)
LARGE_DATA = [BIG, bytearray(BIG), memoryview(BIG), memoryview(BIG)[1:],
              memoryview(array.array("I", BIG)), memoryview(BIG).cast("B", (2, len(BIG) // 2)),
              memoryview(BIG)[::2], memoryview(BIG)[::-1], MyBytes(BIG), bytes(P.VIEW_THRESHOLD),
              bytes(P.VIEW_THRESHOLD - 1)]
PARTS_VARIANTS = VARIANTS + [
    (C.SegmentRead, "data", LARGE_DATA), (C.AppendBlockEnd, "data", LARGE_DATA),
    (C.AppendBlock, "data", LARGE_DATA), (C.PartialEvent, "data", LARGE_DATA),
    (C.ConditionalAppend, "event", [C.Event(d) for d in LARGE_DATA]),
    (C.Padding, "length", [P.VIEW_THRESHOLD, 5 * P.VIEW_THRESHOLD]),
]


def _parts_outcome(function, cmd):
    """``_outcome`` of ``function(cmd)``, plus which input objects came back as they are."""
    outcome = _outcome(function, cmd)
    if outcome[0] == "ok":
        inputs = [id(v) for v in cmd] + [id(v.data) for v in cmd if isinstance(v, C.Event)]
        if isinstance(cmd, C.Event):
            inputs.append(id(cmd.data))
        outcome += ([i for i, part in enumerate(outcome[1]) if id(part) in inputs],)
    return outcome


@pytest.mark.parametrize("cls, field, values", PARTS_VARIANTS,
                         ids=[f"{v[0].__name__}.{v[1]}" for v in PARTS_VARIANTS])
def test_encode_parts_matches_pure(compiled_codec, cls, field, values):
    for value in values:
        cmd = _base(cls)._replace(**{field: value})
        got = _parts_outcome(compiled_codec.encode_parts, cmd)
        assert got == _parts_outcome(P.encode_parts, cmd), repr(value)[:80]
        if got[0] == "ok":
            assert b"".join(got[1]) == compiled_codec.encode(cmd)


def test_encode_parts_odd_objects_match_pure(compiled_codec):
    for obj in ODD_OBJECTS + [C.Event(d) for d in LARGE_DATA]:
        assert _parts_outcome(compiled_codec.encode_parts, obj) == \
            _parts_outcome(P.encode_parts, obj), repr(obj)[:80]


BUFFER_TYPES = st.sampled_from([bytes, bytearray, memoryview,
                                lambda b: memoryview(b"." + b)[1:]])


@SETTINGS
@given(size=st.integers(0, 16) | st.integers(P.VIEW_THRESHOLD - 2, P.VIEW_THRESHOLD + 2),
       seed=st.integers(0, 2 ** 32), make=BUFFER_TYPES, tail=st.booleans(),
       segment=st.text(max_size=8), request_id=st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_random_payloads_split_like_pure(compiled_codec, size, seed, make, tail, segment,
                                         request_id):
    data = random.Random(seed).randbytes(size)
    payload = make(data)
    for cmd in (C.SegmentRead(segment=segment, offset=0, at_tail=tail, end_of_segment=False,
                              data=payload, request_id=request_id),
                C.AppendBlockEnd(writer_id=W, size_of_whole_events=len(data), data=payload,
                                 num_events=1, last_event_number=9, request_id=request_id),
                C.ConditionalBlockEnd(writer_id=W, event_number=3, expected_offset=-1,
                                      data=payload, request_id=request_id),
                C.AppendBlock(writer_id=W, data=payload), C.Event(payload)):
        got = _parts_outcome(compiled_codec.encode_parts, cmd)
        assert got == _parts_outcome(P.encode_parts, cmd)
        assert len(got[-1]) == (len(data) >= P.VIEW_THRESHOLD)


@pytest.mark.parametrize("data", [b"", b"abc", bytearray(b"ab"), memoryview(b"abcd")[::2],
                                  memoryview(array.array("h", [1])), "text", None, 5,
                                  bytes(C.MAX_WIRECOMMAND_SIZE - 8),
                                  bytes(C.MAX_WIRECOMMAND_SIZE - 7)])
def test_encode_event_matches_pure(compiled_codec, data):
    assert _outcome(compiled_codec.encode_event, data) == _outcome(P.encode_event, data)


# --------------------------------------------------------------------------------------------
# Decoding inputs the compiled path does not take itself


@pytest.mark.parametrize("frame", [
    "", "0000006400000000", bytearray.fromhex("0000006400000000"), "00000064000000",
    "000000640000000000", "0000000000000000", "fffffffe00000000", "0000000600000000",
    "ffffff8100000004", "0000000700000018" + "00" * 24, "0000000700000017" + "00" * 23,
    "0000003200000004000000000000000100", "0000000a00000000",
])
def test_decode_matches_pure(compiled_codec, frame):
    data = bytes.fromhex(frame) if isinstance(frame, str) else frame
    assert _outcome(compiled_codec.decode, data) == _outcome(P.decode, data)


def test_decode_odd_buffers_match_pure(compiled_codec):
    frame = P.encode(C.Hello(17, 5))
    for source in (memoryview(frame).cast("i"), memoryview(frame + frame)[::2],
                   array.array("B", frame), memoryview(frame).cast("B", (4, 4)), "text", None,
                   MyBytes(frame)):
        assert _outcome(compiled_codec.decode, source) == _outcome(P.decode, source), source


def test_feed_rejects_what_pure_rejects(compiled_codec):
    for chunk in ("text", None, 5, memoryview(P.encode(C.Hello(17, 5))).cast("i")):
        got = _outcome(compiled_codec.FrameDecoder().feed, chunk)
        assert got == _outcome(P.FrameDecoder().feed, chunk)
    # A strided view holding a header: the same BufferError as the pure twin's.
    strided = memoryview(P.encode(C.KeepAlive()) * 2)[::2]
    assert _outcome(compiled_codec.FrameDecoder().feed, strided) == \
        _outcome(P.FrameDecoder().feed, strided)


# --------------------------------------------------------------------------------------------
# Modified UTF-8 and request ids

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=60)  # surrogates too


@SETTINGS
@given(text=ANY_TEXT)
def test_utf_encoding_like_pure(compiled_codec, text):
    assert _outcome(compiled_codec.encode_utf, text) == _outcome(P.encode_utf, text)
    encoded = P.encode_utf(text)[2:]
    assert _outcome(compiled_codec.decode_utf, encoded) == _outcome(P.decode_utf, encoded)


@SETTINGS
@given(raw=st.binary(max_size=40) | st.lists(st.sampled_from(
    [b"\xc0", b"\x80", b"\xe0", b"\xed\xa0\xbd", b"\xed\xb8\x80", b"a", b"\x00", b"\xf0", b"\xdf"]),
    max_size=10).map(b"".join))
def test_utf_decoding_like_pure(compiled_codec, raw):
    assert _outcome(compiled_codec.decode_utf, raw) == _outcome(P.decode_utf, raw)
    # SegmentCreated(request_id=1, segment=raw): header, i64, u16 length, the bytes
    framed = struct.pack(">iiqH", C.SegmentCreated.TYPE, 10 + len(raw), 1, len(raw)) + raw
    assert _outcome(compiled_codec.decode, framed) == _outcome(P.decode, framed)


@pytest.mark.parametrize("value", [b"abc", bytearray(b"\xc3\xa9"), memoryview(b"x"), 3, "s", None])
def test_decode_utf_inputs_like_pure(compiled_codec, value):
    assert _outcome(compiled_codec.decode_utf, value) == _outcome(P.decode_utf, value)


def test_encode_utf_inputs_like_pure(compiled_codec):
    for value in (MyStr("x"), b"x", None, "a" * 65536, "\u00e9" * 32768, "\u00e9" * 32767):
        assert _outcome(compiled_codec.encode_utf, value) == _outcome(P.encode_utf, value)


EDGES = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32,
         2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, True, MyInt(3), 1.0, None]


@pytest.mark.parametrize("flow", EDGES)
def test_request_ids_like_pure(compiled_codec, flow):
    for sequence in EDGES:
        assert _outcome(compiled_codec.pack_request_id, flow, sequence) == \
            _outcome(P.pack_request_id, flow, sequence)
    assert _outcome(compiled_codec.unpack_request_id, flow) == _outcome(P.unpack_request_id, flow)


@SETTINGS
@given(flow=st.integers(-(2 ** 31), 2 ** 31 - 1), sequence=st.integers(0, 2 ** 32 - 1))
def test_request_id_round_trip(compiled_codec, flow, sequence):
    rid = compiled_codec.pack_request_id(flow, sequence)
    assert rid == P.pack_request_id(flow, sequence)
    assert compiled_codec.unpack_request_id(rid) == (flow, sequence)


# --------------------------------------------------------------------------------------------
# The writer-id cache


def test_writer_ids_from_the_cache_are_right(compiled_codec):
    """Many ids sharing cache slots, in interleaved order: each decode gives its own id, as a
    normal UUID (shared objects are fine: UUIDs are immutable)."""
    rng = random.Random(7)
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(300)]
    ids += [uuid.UUID(int=i) for i in range(64)] + [uuid.UUID(int=i << 64) for i in range(64)]
    frames = {u: P.encode(C.DataAppended(request_id=1, writer_id=u, event_number=3)) for u in ids}
    order = ids * 3
    rng.shuffle(order)
    decoder = compiled_codec.FrameDecoder()
    got = decoder.feed(b"".join(frames[u] for u in order))
    assert [c.writer_id for c in got] == order
    for u, cmd in zip(order, got):
        w = cmd.writer_id
        assert type(w) is uuid.UUID and w.is_safe is uuid.SafeUUID.unknown
        assert (w.int, w.bytes, str(w), hash(w)) == (u.int, u.bytes, str(u), hash(u))
        assert compiled_codec.decode(frames[u]).writer_id == u


def test_decoded_records_never_hide_cycles(compiled_codec):
    """Records of scalars are kept off the cyclic collector's lists; a record holding a view
    stays on them, so a cycle through the viewed chunk is still collected."""

    class Chunk(bytes):
        pass

    class Sentinel:
        pass

    ack = C.DataAppended(request_id=1, writer_id=W, event_number=2)
    small = compiled_codec.decode(P.encode(ack))
    assert not gc.is_tracked(small) and not gc.is_tracked(small.writer_id)
    chunk = Chunk(P.encode(_segment_read(P.VIEW_THRESHOLD)))
    (read,) = compiled_codec.FrameDecoder().feed(chunk)
    assert read.data.obj is chunk and gc.is_tracked(read)
    sentinel = Sentinel()
    chunk.cycle = (read, sentinel)  # chunk -> read -> view -> chunk
    alive = weakref.ref(sentinel)
    del chunk, read, sentinel
    gc.collect()
    assert alive() is None
