"""Property tests of the codec: random commands round-trip through both twins; on random and
mutated bytes the compiled and pure decoders agree (same command, or both InvalidMessageError);
streams split at any byte decode the same; nothing crashes."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pravega_wire import InvalidMessageError
from pravega_wire import _codec_py as P
from pravega_wire import commands as C

I32 = st.integers(-(2 ** 31), 2 ** 31 - 1)
I64 = st.integers(-(2 ** 63), 2 ** 63 - 1)
# Strings without surrogate code points: a high+low pair written as two Python code points comes
# back as one character (Java strings are UTF-16), so it would not compare equal.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
SMALL_BYTES = st.binary(max_size=64)
BYTES = st.one_of(SMALL_BYTES, st.binary(min_size=P.VIEW_THRESHOLD, max_size=P.VIEW_THRESHOLD + 64))
UUIDS = st.builds(uuid.UUID, int=st.integers(0, 2 ** 128 - 1))
KEYS = st.one_of(st.builds(C.TableKey, st.binary(min_size=1, max_size=32), I64),
                 st.just(C.TableKey(b"", C.NULL_ATTRIBUTE_VALUE)))
VALUES = st.builds(C.TableValue, SMALL_BYTES)

KIND_STRATEGIES = {
    P.I8: st.integers(-128, 127), P.I32: I32, P.I64: I64, P.BOOL: st.booleans(), P.UUID: UUIDS,
    P.UTF: TEXT, P.TOKEN: TEXT, P.NULLABLE_UTF: TEXT, P.BLOB: BYTES, P.BLOB_LENIENT: BYTES,
    P.REST: BYTES, P.EVENT: st.builds(C.Event, BYTES),
    P.UTF_LIST: st.lists(TEXT, max_size=4), P.I64_LIST: st.lists(I64, max_size=4),
    P.KEY_LIST: st.lists(KEYS, max_size=4),
    P.ENTRIES: st.builds(C.TableEntries, st.lists(st.tuples(KEYS, VALUES), max_size=4)),
    P.CAU_LIST: st.lists(st.builds(C.ConditionalAttributeUpdate, UUIDS, st.sampled_from([1, 4]),
                                   I64, I64), max_size=3),
    P.CHUNK_LIST: st.lists(st.builds(C.ChunkInfo, I64, I64, I64, TEXT, st.booleans()), max_size=3),
    P.ITER_ARGS: st.builds(C.TableIteratorArgs, SMALL_BYTES, st.just(b""), SMALL_BYTES, SMALL_BYTES),
    P.AUTH_CODE: st.sampled_from([-1, 0, 1]), P.ERROR_CODE: st.sampled_from([-1, 0]),
}


def _command_strategy(cls):
    if cls is C.Padding:
        return st.builds(C.Padding, st.integers(0, 100))
    if cls is C.SegmentsBatchMerged:
        return st.lists(st.tuples(TEXT, I64), max_size=4).flatmap(lambda pairs: st.builds(
            C.SegmentsBatchMerged, I64, TEXT, st.just([p[0] for p in pairs]),
            st.just([p[1] for p in pairs])))
    fields = {spec[0]: KIND_STRATEGIES[spec[1]] for spec in P.LAYOUTS[cls]}
    return st.builds(cls, **fields)


FRAMEABLE = [cls for code, cls in sorted(C.COMMAND_TYPES.items()) if code not in (0, -2)]
COMMANDS = st.one_of([_command_strategy(cls) for cls in FRAMEABLE])

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(cmd=COMMANDS)
def test_round_trip_pure(cmd):
    frame = P.encode(cmd)
    assert P.decode(frame) == cmd


@SETTINGS
@given(cmd=COMMANDS)
def test_round_trip_compiled_matches_pure(compiled_codec, cmd):
    frame = compiled_codec.encode(cmd)
    assert frame == P.encode(cmd)
    assert compiled_codec.decode(frame) == cmd


def _outcome(codec, data, server=False):
    """What a twin makes of ``data``: ('ok', commands, buffered) or ('error', offset, decoded)."""
    decoder = codec.FrameDecoder(server=server)
    try:
        return ("ok", decoder.feed(data), decoder.buffered)
    except InvalidMessageError as e:
        return ("error", e.offset, e.decoded)


def _single(codec, data):
    try:
        return ("ok", codec.decode(data))
    except InvalidMessageError as e:
        return ("error", e.offset)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_twins_agree(compiled_codec, data):
    assert _outcome(compiled_codec, data) == _outcome(P, data)
    assert _outcome(compiled_codec, data, server=True) == _outcome(P, data, server=True)
    assert _single(compiled_codec, data) == _single(P, data)


MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "set"]),
                               st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


def _mutate(frame: bytes, mutations) -> bytes:
    data = bytearray(frame)
    for op, where, byte in mutations:
        if not data:
            break
        i = where % len(data)
        if op == "flip":
            data[i] ^= 1 << (byte % 8)
        elif op == "insert":
            data.insert(i, byte)
        elif op == "delete":
            del data[i]
        else:
            data[i] = byte
    return bytes(data)


@SETTINGS
@given(cmds=st.lists(COMMANDS, min_size=1, max_size=3), mutations=MUTATIONS)
def test_mutated_frames_twins_agree(compiled_codec, cmds, mutations):
    data = _mutate(b"".join(P.encode(c) for c in cmds), mutations)
    assert _outcome(compiled_codec, data) == _outcome(P, data)
    if len(cmds) == 1:
        assert _single(compiled_codec, data) == _single(P, data)


@SETTINGS
@given(cmds=st.lists(COMMANDS, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 10 ** 6),
                                                                       max_size=8))
def test_any_split_decodes_the_same(codec, cmds, cuts):
    """Frames split at any byte, and many frames in one chunk, decode to the same commands."""
    stream = b"".join(P.encode(c) for c in cmds)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    decoder = codec.FrameDecoder()
    out = []
    previous = 0
    for point in points + [len(stream)]:
        out += decoder.feed(stream[previous:point])
        previous = point
    assert out == cmds
    assert decoder.buffered == 0


@pytest.mark.parametrize("size", [P.VIEW_THRESHOLD - 1, P.VIEW_THRESHOLD, 1 << 20])
def test_large_payloads_are_views(codec, size):
    read = C.SegmentRead(segment="s", offset=0, at_tail=False, end_of_segment=False,
                         data=bytes(range(256)) * (size // 256) + bytes(size % 256), request_id=5)
    frame = codec.encode(read)
    whole = codec.decode(frame)
    assert whole == read
    assert isinstance(whole.data, memoryview) == (size >= P.VIEW_THRESHOLD)
    # Split across feeds: the large frame is assembled once in its own buffer, then viewed.
    decoder = codec.FrameDecoder()
    assert decoder.feed(frame[:1000]) == []
    (split,) = decoder.feed(frame[1000:])
    assert split == read
    assert isinstance(split.data, memoryview) == (size >= P.VIEW_THRESHOLD)
    # A mutable chunk is never viewed directly: changing it afterwards changes nothing.
    chunk = bytearray(frame)
    (copied,) = codec.FrameDecoder().feed(chunk)
    chunk[-20] ^= 0xFF
    assert copied == read


def test_decoder_reports_stream_offset_and_earlier_commands(codec):
    good = P.encode(C.KeepAlive()) + P.encode(C.SegmentCreated(request_id=1, segment="abc"))
    bad = (6).to_bytes(4, "big") + (0).to_bytes(4, "big")
    decoder = codec.FrameDecoder()
    assert decoder.feed(good[:5]) == []
    with pytest.raises(InvalidMessageError) as info:
        decoder.feed(good[5:] + bad)
    assert info.value.offset == len(good)
    assert info.value.decoded == [C.KeepAlive(), C.SegmentCreated(request_id=1, segment="abc")]


@pytest.mark.parametrize("text, wire", [
    ("", "0000"), ("seg", "0003736567"), ("\x00", "0002c080"), ("\u00e9", "0002c3a9"),
    ("\u20ac", "0003e282ac"), ("\U0001F600", "0006eda0bdedb880"), ("\ud800", "0003eda080"),
])
def test_modified_utf8(codec, text, wire):
    assert codec.encode_utf(text).hex() == wire
    assert codec.decode_utf(bytes.fromhex(wire)[2:]) == text


@pytest.mark.parametrize("raw, where", [("f09f9880", 0), ("61c3", 2), ("c361", 2), ("80", 0)])
def test_modified_utf8_rejects(codec, raw, where):
    with pytest.raises(InvalidMessageError) as info:
        codec.decode_utf(bytes.fromhex(raw))
    assert info.value.offset == where


def test_modified_utf8_lenient_reads(codec):
    assert codec.decode_utf(b"\x00a") == "\x00a"  # raw NUL accepted
    assert codec.decode_utf(bytes.fromhex("c0af")) == "/"  # overlong form accepted
