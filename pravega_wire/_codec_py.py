"""The pure-Python WireCommands codec: the reference twin, and the debugging mode.

Byte-compatible with Pravega's Java ``WireCommands`` (wire version 17): every rule here (field
order, modified UTF-8, optional trailing fields and their availability tests, lenient reads)
reproduces what Java's ``DataOutput``/``DataInput`` code does, as recorded in the vectors under
``tests/data``. The compiled twin (``_codec.pyx``) gives the same results and the same errors.

Public functions (both twins): :func:`encode`, :func:`encode_parts`, :func:`decode`,
:class:`FrameDecoder`, :func:`pack_request_id`, :func:`unpack_request_id`, :func:`encode_utf`,
:func:`decode_utf`, :func:`encode_event`.

Large byte fields (at least :data:`VIEW_THRESHOLD` bytes: SegmentRead data, append data, ...)
are decoded as ``memoryview`` slices of the input instead of copies; smaller ones as ``bytes``.
:func:`encode_parts` hands such fields back as they are, next to the encoded bytes around them,
so that a large payload reaches the socket without being copied into a frame first.
"""

from __future__ import annotations

import struct
import uuid as _uuid_mod

from . import commands as C
from .errors import InvalidMessageError

__all__ = [
    "encode", "encode_parts", "decode", "FrameDecoder", "pack_request_id", "unpack_request_id",
    "encode_utf", "decode_utf", "encode_event", "split_events", "VIEW_THRESHOLD",
    "IMPLEMENTATION",
]

IMPLEMENTATION = "pure"

#: Byte fields of at least this many bytes are decoded as views of the input, not copies.
VIEW_THRESHOLD = 4096

MAX_WIRECOMMAND_SIZE = C.MAX_WIRECOMMAND_SIZE
_I32_MIN, _I32_MAX = -(2 ** 31), 2 ** 31 - 1
_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1

_HEADER = struct.Struct(">ii")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U16 = struct.Struct(">H")
_UUID = _uuid_mod.UUID
_new_uuid = object.__new__
_set = object.__setattr__
_SAFE_UNKNOWN = _uuid_mod.SafeUUID.unknown

# --------------------------------------------------------------------------------------------
# Request ids


def pack_request_id(flow_id: int, sequence: int) -> int:
    """``(flow_id << 32) | sequence`` as a signed 64-bit requestId.

    ``flow_id`` is a signed 32-bit int; ``sequence`` a 32-bit int, signed or unsigned (a negative
    one stands for its two's-complement bits, as a Java int does). All 32 sequence bits are kept
    (Java masks them to 28, a defect this project does not copy).
    """
    if not (_I32_MIN <= flow_id <= _I32_MAX):
        raise ValueError(f"flow id {flow_id} is not a signed 32-bit integer")
    if not (_I32_MIN <= sequence <= 0xFFFFFFFF):
        raise ValueError(f"sequence {sequence} is not a 32-bit integer")
    return (flow_id << 32) | (sequence & 0xFFFFFFFF)


def unpack_request_id(request_id: int) -> tuple:
    """``(flow_id, sequence)`` of a requestId: the arithmetic high 32 bits and the low 32 bits."""
    if not (_I64_MIN <= request_id <= _I64_MAX):
        raise ValueError(f"request id {request_id} is not a signed 64-bit integer")
    return request_id >> 32, request_id & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# Modified UTF-8 (java.io.DataOutput.writeUTF / DataInput.readUTF)


def encode_utf(text) -> bytes:
    """``text`` as Java's ``writeUTF`` writes it: u16 length + modified UTF-8.

    NUL becomes ``C0 80``; every UTF-16 code unit is encoded on its own, so a character outside
    the BMP takes 6 bytes. Raises :class:`InvalidMessageError` if the encoding exceeds 65 535
    bytes, or if ``text`` is not a str.
    """
    if type(text) is not str:
        if not isinstance(text, str):
            raise InvalidMessageError(f"expected a str, got {type(text).__name__}")
    if text.isascii() and "\x00" not in text:
        body = text.encode("ascii")
    else:
        body = _encode_modified_utf8(text)
    n = len(body)
    if n > 0xFFFF:
        raise InvalidMessageError(f"encoded string too long: {n} bytes (the limit is 65535)")
    return _U16.pack(n) + body


def _encode_modified_utf8(text: str) -> bytes:
    units = text.encode("utf-16-be", "surrogatepass")
    out = bytearray()
    for i in range(0, len(units), 2):
        c = (units[i] << 8) | units[i + 1]
        if 0 < c < 0x80:
            out.append(c)
        elif c < 0x800:
            out += bytes((0xC0 | (c >> 6), 0x80 | (c & 0x3F)))
        else:
            out += bytes((0xE0 | (c >> 12), 0x80 | ((c >> 6) & 0x3F), 0x80 | (c & 0x3F)))
    return bytes(out)


def decode_utf(data) -> str:
    """Decode modified UTF-8 bytes (without the length prefix) as Java's ``readUTF`` does.

    Accepts 1-, 2- and 3-byte forms, a raw ``00`` byte and overlong forms; rejects other lead
    bytes (4-byte UTF-8 included), bad continuation bytes and truncated characters with
    :class:`InvalidMessageError` (``offset`` is the byte index inside the string).
    """
    raw = bytes(data)
    if raw.isascii():
        return raw.decode("ascii")
    return _decode_modified_utf8(raw)


def _decode_modified_utf8(raw: bytes) -> str:
    units = []
    n = len(raw)
    i = 0
    while i < n:
        c = raw[i]
        kind = c >> 4
        if kind < 8:
            units.append(c)
            i += 1
        elif kind == 12 or kind == 13:
            i += 2
            if i > n:
                raise InvalidMessageError("malformed input: partial character at end", n)
            c2 = raw[i - 1]
            if c2 & 0xC0 != 0x80:
                raise InvalidMessageError(f"malformed input around byte {i}", i)
            units.append(((c & 0x1F) << 6) | (c2 & 0x3F))
        elif kind == 14:
            i += 3
            if i > n:
                raise InvalidMessageError("malformed input: partial character at end", n)
            c2, c3 = raw[i - 2], raw[i - 1]
            if c2 & 0xC0 != 0x80 or c3 & 0xC0 != 0x80:
                raise InvalidMessageError(f"malformed input around byte {i - 1}", i - 1)
            units.append(((c & 0x0F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F))
        else:
            raise InvalidMessageError(f"malformed input around byte {i}", i)
    # Pair surrogates the way a Java String does; lone surrogates stay as they are.
    return struct.pack(f">{len(units)}H", *units).decode("utf-16-be", "surrogatepass")


# --------------------------------------------------------------------------------------------
# Field kinds

(I8, I32, I64, BOOL, UUID, UTF, BLOB, BLOB_LENIENT, REST, EVENT, UTF_LIST, I64_LIST, KEY_LIST,
 ENTRIES, CAU_LIST, CHUNK_LIST, ITER_ARGS, AUTH_CODE, ERROR_CODE, TOKEN, NULLABLE_UTF) = range(21)

# Availability tests of optional trailing fields (docs/protocol.md §2.9).
GT0, GE1, GE4, GE8 = "gt0", 1, 4, 8

_AUTH_CODES = (-1, 0, 1)
_ERROR_CODES = (-1, 0)


def _layouts():
    """Wire layout of every command: (field, kind[, availability test, default]) in wire order."""
    rid = ("request_id", I64)
    seg = ("segment", UTF)
    tok = ("delegation_token", TOKEN)
    trace = ("server_stack_trace", UTF, GT0, "")
    return {
        C.Hello: (("high_version", I32), ("low_version", I32)),
        C.KeepAlive: (),
        C.FlushToStorage: (("container_id", I32), tok, rid),
        C.StorageFlushed: (rid,),
        C.ListStorageChunks: (seg, tok, rid),
        C.StorageChunksListed: (rid, ("chunks", CHUNK_LIST)),
        C.SetupAppend: (rid, ("writer_id", UUID), seg, tok),
        C.AppendSetup: (rid, seg, ("writer_id", UUID), ("last_event_number", I64)),
        C.AppendBlock: (("writer_id", UUID), ("data", REST)),
        C.AppendBlockEnd: (("writer_id", UUID), ("size_of_whole_events", I32), ("data", BLOB_LENIENT),
                           ("num_events", I32), ("last_event_number", I64),
                           ("request_id", I64, GE8, -1)),
        C.ConditionalAppend: (("writer_id", UUID), ("event_number", I64), ("expected_offset", I64),
                              ("event", EVENT), ("request_id", I64, GE8, -1)),
        C.ConditionalBlockEnd: (("writer_id", UUID), ("event_number", I64),
                                ("expected_offset", I64), ("data", BLOB_LENIENT), rid),
        C.DataAppended: (("writer_id", UUID), ("event_number", I64),
                         ("previous_event_number", I64, GE8, -1), ("request_id", I64, GE8, -1),
                         ("current_segment_write_offset", I64, GE8, -1)),
        C.ConditionalCheckFailed: (("writer_id", UUID), ("event_number", I64),
                                   ("request_id", I64, GE8, -1)),
        C.ReadSegment: (seg, ("offset", I64), ("suggested_length", I32), tok,
                        ("request_id", I64, GE8, -1)),
        C.SegmentRead: (seg, ("offset", I64), ("at_tail", BOOL), ("end_of_segment", BOOL),
                        ("data", BLOB), ("request_id", I64, GE8, -1)),
        C.GetStreamSegmentInfo: (rid, ("segment_name", UTF), tok),
        C.StreamSegmentInfo: (rid, ("segment_name", UTF), ("exists", BOOL), ("is_sealed", BOOL),
                              ("is_deleted", BOOL), ("last_modified", I64), ("write_offset", I64),
                              ("start_offset", I64, GE8, 0)),
        C.CreateSegment: (rid, seg, ("target_rate", I32), ("scale_type", I8), tok,
                          ("rollover_size_bytes", I64, GE8, 0)),
        C.SegmentCreated: (rid, seg),
        C.SealSegment: (rid, seg, tok),
        C.SegmentSealed: (rid, seg),
        C.DeleteSegment: (rid, seg, tok),
        C.SegmentDeleted: (rid, seg),
        C.UpdateSegmentPolicy: (rid, seg, ("target_rate", I32), ("scale_type", I8), tok),
        C.SegmentPolicyUpdated: (rid, seg),
        C.GetSegmentAttribute: (rid, ("segment_name", UTF), ("attribute_id", UUID), tok),
        C.SegmentAttribute: (rid, ("value", I64)),
        C.UpdateSegmentAttribute: (rid, ("segment_name", UTF), ("attribute_id", UUID),
                                   ("new_value", I64), ("expected_value", I64), tok),
        C.SegmentAttributeUpdated: (rid, ("success", BOOL)),
        C.TruncateSegment: (rid, seg, ("truncation_offset", I64), tok),
        C.SegmentTruncated: (rid, seg),
        C.CreateTransientSegment: (rid, ("writer_id", UUID), ("parent_segment", UTF), tok),
        C.LocateOffset: (rid, seg, ("target_offset", I64), tok),
        C.OffsetLocated: (rid, seg, ("offset", I64)),
        C.WrongHost: (rid, seg, ("correct_host", UTF), trace),
        C.SegmentIsSealed: (rid, seg, trace, ("offset", I64, GE8, -1)),
        C.SegmentAlreadyExists: (rid, seg, trace),
        C.NoSuchSegment: (rid, seg, trace, ("offset", I64, GE8, -1)),
        C.InvalidEventNumber: (("writer_id", UUID), rid, trace, ("event_number", I64, GE8, -1)),
        C.SegmentIsTruncated: (rid, seg, ("start_offset", I64), trace, ("offset", I64, GE8, -1)),
        C.OperationUnsupported: (rid, ("operation_name", UTF), trace),
        C.MergeSegments: (rid, ("target", UTF), ("source", UTF), tok,
                          ("attribute_updates", CAU_LIST, GT0, None)),
        C.SegmentsMerged: (rid, ("target", UTF), ("source", UTF),
                           ("new_target_write_offset", I64, GT0, -1)),
        C.AuthTokenCheckFailed: (rid, trace, ("error_code", AUTH_CODE, GE4, -1)),
        C.ErrorMessage: (rid, ("segment", NULLABLE_UTF), ("message", NULLABLE_UTF),
                         ("error_code", ERROR_CODE)),
        C.GetTableSegmentInfo: (rid, ("segment_name", UTF), tok),
        C.TableSegmentInfo: (rid, ("segment_name", UTF), ("start_offset", I64), ("length", I64),
                             ("entry_count", I64), ("key_length", I32)),
        C.CreateTableSegment: (rid, seg, tok, ("sorted_deprecated", BOOL, GE1, False),
                               ("key_length", I32, GE4, 0), ("rollover_size_bytes", I64, GE8, 0)),
        C.DeleteTableSegment: (rid, seg, ("must_be_empty", BOOL), tok),
        C.UpdateTableEntries: (rid, seg, tok, ("table_entries", ENTRIES),
                               ("table_segment_offset", I64, GT0, -1)),
        C.TableEntriesUpdated: (rid, ("updated_versions", I64_LIST)),
        C.RemoveTableKeys: (rid, seg, tok, ("keys", KEY_LIST), ("table_segment_offset", I64, GT0, -1)),
        C.TableKeysRemoved: (rid, seg),
        C.ReadTable: (rid, seg, tok, ("keys", KEY_LIST)),
        C.TableRead: (rid, seg, ("entries", ENTRIES)),
        C.TableSegmentNotEmpty: (rid, seg, ("server_stack_trace", UTF)),
        C.TableKeyDoesNotExist: (rid, seg, ("server_stack_trace", UTF)),
        C.TableKeyBadVersion: (rid, seg, ("server_stack_trace", UTF)),
        C.ReadTableKeys: (rid, seg, tok, ("suggested_key_count", I32), ("args", ITER_ARGS)),
        C.TableKeysRead: (rid, seg, ("keys", KEY_LIST), ("continuation_token", BLOB)),
        C.ReadTableEntries: (rid, seg, tok, ("suggested_entry_count", I32), ("args", ITER_ARGS)),
        C.TableEntriesRead: (rid, seg, ("entries", ENTRIES), ("continuation_token", BLOB)),
        C.TableEntriesDeltaRead: (rid, seg, ("entries", ENTRIES), ("should_clear", BOOL),
                                  ("reached_end", BOOL), ("last_position", I64)),
        C.ReadTableEntriesDelta: (rid, seg, tok, ("from_position", I64),
                                  ("suggested_entry_count", I32)),
        C.MergeSegmentsBatch: (rid, ("target_segment_id", UTF), ("source_segment_ids", UTF_LIST),
                               tok),
    }


LAYOUTS = _layouts()

# --------------------------------------------------------------------------------------------
# Encoding


def _check_int(value, lo, hi, what):
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidMessageError(f"{what} must be an int, got {type(value).__name__}")
    if not (lo <= value <= hi):
        raise InvalidMessageError(f"{what} = {value} is outside [{lo}, {hi}]")
    return value


def _bytes_of(value, what, nullable=False):
    if value is None and nullable:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, memoryview):
        if not value.c_contiguous:
            raise InvalidMessageError(f"{what} must be a contiguous buffer")
        return value
    raise InvalidMessageError(f"{what} must be bytes-like, got {type(value).__name__}")


def _uuid_bytes(value, what):
    if not isinstance(value, _UUID):
        raise InvalidMessageError(f"{what} must be a uuid.UUID, got {type(value).__name__}")
    return value.bytes


def _blob(parts, data, what, nullable=False):
    data = _bytes_of(data, what, nullable)
    n = _nbytes(data)
    parts.append(_I32.pack(n))
    parts.data(data, n)


def _nbytes(data):
    return data.nbytes if isinstance(data, memoryview) else len(data)


def _table_key(parts, key):
    if not isinstance(key, C.TableKey):
        raise InvalidMessageError(f"expected a TableKey, got {type(key).__name__}")
    data = _bytes_of(key.data, "TableKey.data")
    n = _nbytes(data)
    parts.append(_HEADER.pack(4 + n + 8, n))
    if n:
        parts.data(data, n)
        parts.append(_I64.pack(_check_int(key.key_version, _I64_MIN, _I64_MAX, "TableKey.key_version")))


def _table_value(parts, value):
    if not isinstance(value, C.TableValue):
        raise InvalidMessageError(f"expected a TableValue, got {type(value).__name__}")
    data = _bytes_of(value.data, "TableValue.data")
    n = _nbytes(data)
    parts.append(_HEADER.pack(4 + n, n))
    if n:
        parts.data(data, n)


def _encode_field(parts, kind, value, what):
    if kind == I64:
        parts.append(_I64.pack(_check_int(value, _I64_MIN, _I64_MAX, what)))
    elif kind == UTF:
        parts.append(encode_utf(value))
    elif kind == TOKEN or kind == NULLABLE_UTF:
        parts.append(encode_utf("" if value is None else value))
    elif kind == I32:
        parts.append(_I32.pack(_check_int(value, _I32_MIN, _I32_MAX, what)))
    elif kind == UUID:
        parts.append(_uuid_bytes(value, what))
    elif kind == BOOL:
        parts.append(b"\x01" if value else b"\x00")
    elif kind == I8:
        parts.append(struct.pack(">b", _check_int(value, -128, 127, what)))
    elif kind == BLOB:
        _blob(parts, value, what)
    elif kind == BLOB_LENIENT:
        _blob(parts, value, what, nullable=True)
    elif kind == REST:
        data = _bytes_of(value, what)
        parts.data(data, _nbytes(data))
    elif kind == EVENT:
        if not isinstance(value, C.Event):
            raise InvalidMessageError(f"{what} must be an Event, got {type(value).__name__}")
        data = _bytes_of(value.data, "Event.data")
        n = _nbytes(data)
        parts.append(_HEADER.pack(0, n))
        parts.data(data, n)
    elif kind == AUTH_CODE or kind == ERROR_CODE:
        allowed = _AUTH_CODES if kind == AUTH_CODE else _ERROR_CODES
        if value not in allowed or isinstance(value, bool):
            raise InvalidMessageError(f"{what} = {value!r} is not one of {allowed}")
        parts.append(_I32.pack(value))
    else:
        items = _list_of(value, what)
        parts.append(_I32.pack(len(items)))
        for item in items:
            if kind == UTF_LIST:
                parts.append(encode_utf(item))
            elif kind == I64_LIST:
                parts.append(_I64.pack(_check_int(item, _I64_MIN, _I64_MAX, what)))
            elif kind == KEY_LIST:
                _table_key(parts, item)
            elif kind == CAU_LIST:
                if not isinstance(item, C.ConditionalAttributeUpdate):
                    raise InvalidMessageError(f"{what} items must be ConditionalAttributeUpdate")
                parts.append(_uuid_bytes(item.attribute_id, "attribute_id"))
                parts.append(struct.pack(
                    ">bqq", _check_int(item.attribute_update_type, -128, 127, "attribute_update_type"),
                    _check_int(item.new_value, _I64_MIN, _I64_MAX, "new_value"),
                    _check_int(item.old_value, _I64_MIN, _I64_MAX, "old_value")))
            elif kind == CHUNK_LIST:
                if not isinstance(item, C.ChunkInfo):
                    raise InvalidMessageError(f"{what} items must be ChunkInfo")
                parts.append(struct.pack(
                    ">qqq", _check_int(item.length_in_metadata, _I64_MIN, _I64_MAX, "length_in_metadata"),
                    _check_int(item.length_in_storage, _I64_MIN, _I64_MAX, "length_in_storage"),
                    _check_int(item.start_offset, _I64_MIN, _I64_MAX, "start_offset")))
                parts.append(encode_utf(item.chunk_name))
                parts.append(b"\x01" if item.exists_in_storage else b"\x00")
            else:  # pragma: no cover - layouts only use the kinds above
                raise AssertionError(kind)


def _list_of(value, what):
    if not isinstance(value, (list, tuple)):
        raise InvalidMessageError(f"{what} must be a list, got {type(value).__name__}")
    return value


def _encode_entries(parts, entries, what):
    if not isinstance(entries, C.TableEntries):
        raise InvalidMessageError(f"{what} must be TableEntries, got {type(entries).__name__}")
    items = _list_of(entries.entries, what)
    parts.append(_I32.pack(len(items)))
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise InvalidMessageError(f"{what} entries must be (TableKey, TableValue) pairs") from None
        _table_key(parts, key)
        _table_value(parts, value)


def _encode_iter_args(parts, args, what):
    if not isinstance(args, C.TableIteratorArgs):
        raise InvalidMessageError(f"{what} must be TableIteratorArgs, got {type(args).__name__}")
    _blob(parts, args.continuation_token, "continuation_token")
    parts.append(b"\x00\x00\x00\x00")  # prefix filter: deprecated, Java always writes length 0
    _blob(parts, args.from_key, "from_key")
    _blob(parts, args.to_key, "to_key")


class _Parts(list):
    """A frame's payload in pieces, in wire order: the caller's byte fields as they are, the rest
    as encoded ``bytes``. ``big`` holds the indexes of the byte fields of at least
    :data:`VIEW_THRESHOLD` bytes (the pieces :func:`encode_parts` passes on uncopied)."""

    big = ()

    def data(self, value, n):
        """Append the byte field ``value`` of ``n`` bytes."""
        if n >= VIEW_THRESHOLD:
            self.big += (len(self),)
        self.append(value)


def _payload_parts(cmd) -> _Parts:
    cls = type(cmd)
    parts = _Parts()
    if cls is C.Padding:
        length = _check_int(cmd.length, 0, MAX_WIRECOMMAND_SIZE, "Padding.length")
        parts.append(bytes(length))
        return parts
    if cls is C.PartialEvent:
        data = _bytes_of(cmd.data, "PartialEvent.data")
        parts.data(data, _nbytes(data))
        return parts
    if cls is C.SegmentsBatchMerged:
        parts.append(_I64.pack(_check_int(cmd.request_id, _I64_MIN, _I64_MAX, "request_id")))
        parts.append(encode_utf(cmd.target))
        sources = _list_of(cmd.sources, "sources")
        offsets = _list_of(cmd.new_target_write_offset, "new_target_write_offset")
        if len(sources) != len(offsets):
            raise InvalidMessageError("sources and new_target_write_offset differ in length")
        parts.append(_I32.pack(len(sources)))
        for source, offset in zip(sources, offsets):
            parts.append(encode_utf(source))
            parts.append(_I64.pack(_check_int(offset, _I64_MIN, _I64_MAX, "new_target_write_offset")))
        return parts
    layout = LAYOUTS.get(cls)
    if layout is None:
        raise InvalidMessageError(f"{cls.__name__} is not a WireCommand that can be framed")
    for spec in layout:
        name, kind = spec[0], spec[1]
        value = getattr(cmd, name)
        what = f"{cls.__name__}.{name}"
        if kind == ENTRIES:
            _encode_entries(parts, value, what)
        elif kind == ITER_ARGS:
            _encode_iter_args(parts, value, what)
        else:
            _encode_field(parts, kind, value, what)
    return parts


def encode(cmd) -> bytes:
    """One whole frame for ``cmd``: the 8-byte header (type, length) and the payload.

    ``encode(Event(data))`` gives the 8-byte-header Event record that appends carry (an Event is
    never a frame of its own). Raises :class:`InvalidMessageError` before producing anything if a
    field does not fit (a string over 65 535 encoded bytes, an int out of range, a frame over
    16 777 215 bytes including its header).
    """
    if not isinstance(cmd, C.Command):
        raise InvalidMessageError(f"not a WireCommand: {type(cmd).__name__}")
    if type(cmd) is C.Event:
        return encode_event(cmd.data)
    parts = _payload_parts(cmd)
    return b"".join([_frame_header(cmd, parts), *parts])


def encode_parts(cmd) -> list:
    """The frame :func:`encode` makes for ``cmd``, as a list of buffers to write in order.

    Every byte field of at least :data:`VIEW_THRESHOLD` bytes (SegmentRead data, the data of
    AppendBlock, AppendBlockEnd, ConditionalBlockEnd and PartialEvent, an Event's data, a large
    table key or value, ...) is an element of its own: the caller's object itself, not a copy.
    The bytes before, between and after such fields are one ``bytes`` object each (none is
    empty); a command without large fields comes back as ``[encode(cmd)]``. A large field in a
    memoryview that is not C-contiguous cannot be passed on: the result is then
    ``[encode(cmd)]`` as well.

    ``b"".join(encode_parts(cmd)) == encode(cmd)``, and the errors are :func:`encode`'s, raised
    before anything is returned. The caller must not change a passed-on buffer before the
    parts are written.
    """
    if not isinstance(cmd, C.Command):
        raise InvalidMessageError(f"not a WireCommand: {type(cmd).__name__}")
    if type(cmd) is C.Event:
        data, n = _event_data(cmd.data)
        parts = _Parts()
        parts.data(data, n)
        header = _HEADER.pack(0, n)
    else:
        parts = _payload_parts(cmd)
        header = _frame_header(cmd, parts)
    if not parts.big:
        return [b"".join([header, *parts])]
    out = []
    start = 0
    for i in parts.big:
        field = parts[i]
        if isinstance(field, memoryview) and not field.c_contiguous:
            return [encode(cmd)]  # only a copy can flatten it (or encode's error is raised)
        between = b"".join([header, *parts[start:i]])
        if between:
            out.append(between)
        out.append(field)
        header = b""
        start = i + 1
    after = b"".join(parts[start:])
    if after:
        out.append(after)
    return out


def _frame_header(cmd, parts):
    """The 8-byte header of the frame whose payload is ``parts``; checks the frame limit."""
    length = sum(_nbytes(p) for p in parts)
    if length + 8 > MAX_WIRECOMMAND_SIZE:
        raise InvalidMessageError(
            f"{type(cmd).__name__} frame of {length + 8} bytes exceeds the "
            f"{MAX_WIRECOMMAND_SIZE}-byte limit")
    return _HEADER.pack(cmd.TYPE, length)


def _event_data(data):
    """``(data, its size)`` for an Event's data, checked."""
    data = _bytes_of(data, "Event.data")
    n = _nbytes(data)
    if n > MAX_WIRECOMMAND_SIZE - 8:
        raise InvalidMessageError(f"event of {n} bytes exceeds the frame limit")
    return data, n


def encode_event(data) -> bytes:
    """The Event record for one event: ``i32 0``, ``i32 len``, the bytes."""
    data, n = _event_data(data)
    return _HEADER.pack(0, n) + bytes(data)


def split_events(data, limit: int) -> tuple:
    """``(payloads, consumed)``: the payloads of the complete Event records at the start of
    ``data`` (at most ``limit`` of them), and the bytes they took. As for the byte fields of
    a decoded command, a payload below :data:`VIEW_THRESHOLD` bytes is a ``bytes`` copy (for
    small events a copy costs less than a view, which the cyclic collector also tracks), a
    larger one a slice of ``data`` (a view when ``data`` is a memoryview, which must then be
    of bytes: format ``"B"``). Stops, without an error, before a record that is
    incomplete or is not an Event record (type other than 0, or a negative length): the caller
    reads that one on its slow path, which raises the typed error."""
    out = []
    pos = 0
    size = _nbytes(data)
    unpack = _HEADER.unpack_from
    while limit > 0 and size - pos >= 8:
        kind, length = unpack(data, pos)
        start = pos + 8
        end = start + length
        if kind != 0 or length < 0 or end > size:
            break
        out.append(bytes(data[start:end]) if length < VIEW_THRESHOLD else data[start:end])
        pos = end
        limit -= 1
    return out, pos


# --------------------------------------------------------------------------------------------
# Decoding


class _Reader:
    """Reads fields from ``buf[pos:end]``; every shortfall is an InvalidMessageError whose offset
    is relative to ``base`` (the start of the frame in the caller's stream)."""

    __slots__ = ("buf", "pos", "end", "base", "views", "start")

    def __init__(self, buf, pos, end, base, views):
        self.buf = buf
        self.pos = pos
        self.start = pos
        self.end = end
        self.base = base
        self.views = views

    def fail(self, message, pos=None):
        at = self.pos if pos is None else pos
        raise InvalidMessageError(message, self.base + at - self.start + 8)

    def remaining(self):
        return self.end - self.pos

    def need(self, n, what):
        if self.end - self.pos < n:
            self.fail(f"{what} needs {n} bytes but only {self.end - self.pos} remain")

    def i8(self, what):
        self.need(1, what)
        v = self.buf[self.pos]
        self.pos += 1
        return v - 256 if v > 127 else v

    def boolean(self, what):
        self.need(1, what)
        v = self.buf[self.pos]
        self.pos += 1
        return v != 0

    def i32(self, what):
        self.need(4, what)
        v = _I32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def i64(self, what):
        self.need(8, what)
        v = _I64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def uuid(self, what):
        self.need(16, what)
        u = _new_uuid(_UUID)
        _set(u, "int", int.from_bytes(self.buf[self.pos:self.pos + 16], "big"))
        _set(u, "is_safe", _SAFE_UNKNOWN)
        self.pos += 16
        return u

    def utf(self, what):
        self.need(2, what)
        n = _U16.unpack_from(self.buf, self.pos)[0]
        if self.end - self.pos - 2 < n:
            self.fail(f"{what}: string of {n} bytes but only {self.end - self.pos - 2} remain")
        start = self.pos + 2
        raw = bytes(self.buf[start:start + n])
        try:
            text = raw.decode("ascii") if raw.isascii() else _decode_modified_utf8(raw)
        except InvalidMessageError as e:
            self.fail(f"{what}: {e.args[0].split(' (at offset')[0]}", start + (e.offset or 0))
        self.pos = start + n
        return text

    def take(self, n, what):
        """``n`` bytes: a view for large ones (when views are allowed), else a copy."""
        if n < 0:
            self.fail(f"{what}: negative length {n}")
        if self.end - self.pos < n:
            self.fail(f"{what}: {n} bytes announced but only {self.end - self.pos} remain")
        start = self.pos
        self.pos += n
        if n >= VIEW_THRESHOLD and self.views:
            return memoryview(self.buf)[start:start + n]
        return bytes(self.buf[start:start + n])

    def blob(self, what, lenient=False):
        n = self.i32(what)
        if lenient and n <= 0:
            return b""
        return self.take(n, what)

    def count(self, what, lenient=False):
        n = self.i32(what)
        if n < 0:
            if lenient:
                return 0
            self.fail(f"{what}: negative count {n}")
        return n

    def table_key(self):
        available = self.end - self.pos
        payload = self.i32("TableKey payload size")
        n = self.i32("TableKey data length")
        if n == 0:
            return C.TableKey(b"", C.NULL_ATTRIBUTE_VALUE)
        if available < payload:
            self.fail(f"Was expecting length of at least : {payload} but found: {available}")
        data = self.take(n, "TableKey data")
        return C.TableKey(data, self.i64("TableKey version"))

    def table_value(self):
        available = self.end - self.pos
        payload = self.i32("TableValue payload size")
        n = self.i32("TableValue data length")
        if n == 0:
            return C.TableValue(b"")
        if available < payload:
            self.fail(f"Was expecting length of at least : {payload} but found: {available}")
        return C.TableValue(self.take(n, "TableValue data"))

    def iter_blob(self, what):
        if self.end - self.pos < 4:
            return b""
        return self.take(self.i32(what), what)


def _read_field(r, kind, what):
    if kind == I64:
        return r.i64(what)
    if kind == UTF or kind == TOKEN or kind == NULLABLE_UTF:
        return r.utf(what)
    if kind == I32:
        return r.i32(what)
    if kind == UUID:
        return r.uuid(what)
    if kind == BOOL:
        return r.boolean(what)
    if kind == I8:
        return r.i8(what)
    if kind == BLOB:
        return r.blob(what)
    if kind == BLOB_LENIENT:
        return r.blob(what, lenient=True)
    if kind == REST:
        return r.take(r.end - r.pos, what)
    if kind == EVENT:
        code = r.i32(what)
        if code != 0:
            r.fail(f"Was expecting EVENT but found: {code}", r.pos - 4)
        n = r.i32(what)
        frame_length = r.end - r.start
        if n > frame_length - 8:
            r.fail(f"Was expecting length: {frame_length} but found: {n}", r.pos - 4)
        return C.Event(r.take(n, what))
    if kind == AUTH_CODE:
        code = r.i32(what)
        return code if code in _AUTH_CODES else 0
    if kind == ERROR_CODE:
        code = r.i32(what)
        return code if code in _ERROR_CODES else -1
    if kind == ENTRIES:
        n = r.count(what, lenient=True)
        entries = []
        for _ in range(n):
            key = r.table_key()
            entries.append((key, r.table_value()))
        return C.TableEntries(entries)
    if kind == ITER_ARGS:
        return C.TableIteratorArgs(r.iter_blob("continuation_token"), r.iter_blob("prefix_filter"),
                                   r.iter_blob("from_key"), r.iter_blob("to_key"))
    if kind == CAU_LIST:
        n = r.count(what, lenient=True)
        items = []
        for _ in range(n):
            items.append(C.ConditionalAttributeUpdate(r.uuid(what), r.i8(what), r.i64(what), r.i64(what)))
        return items
    n = r.count(what)
    items = []
    if kind == UTF_LIST:
        for _ in range(n):
            items.append(r.utf(what))
    elif kind == I64_LIST:
        for _ in range(n):
            items.append(r.i64(what))
    elif kind == KEY_LIST:
        for _ in range(n):
            items.append(r.table_key())
    elif kind == CHUNK_LIST:
        for _ in range(n):
            items.append(C.ChunkInfo(r.i64(what), r.i64(what), r.i64(what), r.utf(what), r.boolean(what)))
    else:  # pragma: no cover
        raise AssertionError(kind)
    return items


def _available(r, test):
    left = r.end - r.pos
    return left > 0 if test == GT0 else left >= test


def _decode_generic(cls, layout, r):
    values = {}
    for spec in layout:
        name, kind = spec[0], spec[1]
        if len(spec) > 2 and not _available(r, spec[2]):
            default = spec[3]
            values[name] = [] if default is None else default
            continue
        values[name] = _read_field(r, kind, f"{cls.__name__}.{name}")
    return cls(**values)


def _decode_batch_merged(r):
    request_id = r.i64("request_id")
    target = r.utf("target")
    n = r.count("SegmentsBatchMerged count")
    sources, offsets = [], []
    for _ in range(n):
        sources.append(r.utf("source"))
        offsets.append(r.i64("new_target_write_offset"))
    return C.SegmentsBatchMerged(request_id, target, sources, offsets)


def _unknown(type_code):
    return f"Unknown wire command: {type_code}"


def decode_payload(type_code: int, buf, start: int, end: int, base: int = 0, views: bool = True):
    """Decode the payload ``buf[start:end]`` of a frame of ``type_code`` (a top-level frame:
    Event and PartialEvent are rejected). ``base`` is where the frame starts in the caller's
    stream, for error offsets."""
    cls = C.COMMAND_TYPES.get(type_code)
    if cls is None:
        raise InvalidMessageError(_unknown(type_code), base)
    if type_code == 0:
        raise InvalidMessageError("an Event (type 0) is not a frame of its own", base)
    if type_code == -2:
        raise InvalidMessageError("PartialEvent is only valid inside an AppendBlock", base)
    r = _Reader(buf, start, end, base, views)
    if cls is C.Padding:
        return C.Padding(end - start)
    if cls is C.PartialEvent:  # pragma: no cover - rejected above
        return C.PartialEvent(r.take(end - start, "data"))
    if cls is C.SegmentsBatchMerged:
        return _decode_batch_merged(r)
    return _decode_generic(cls, LAYOUTS[cls], r)


def _check_header(type_code, length, base, max_payload):
    if length < 0:
        raise InvalidMessageError(f"negative frame length {length}", base + 4)
    if length > max_payload:
        raise InvalidMessageError(
            f"frame length {length} exceeds the limit of {max_payload} bytes", base + 4)
    if type_code not in C.COMMAND_TYPES:
        raise InvalidMessageError(_unknown(type_code), base)
    if type_code == 0:
        raise InvalidMessageError("an Event (type 0) is not a frame of its own", base)
    if type_code == -2:
        raise InvalidMessageError("PartialEvent is only valid inside an AppendBlock", base)


def _as_bytes_view(data):
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise BufferError("the codec reads contiguous buffers only")
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def decode(frame):
    """Decode one whole frame (header included) into a command.

    Raises :class:`InvalidMessageError` for anything Java's decoder rejects, and also for a
    frame shorter or longer than its header says. Large byte fields are views of ``frame``.
    """
    mv = _as_bytes_view(frame)
    n = len(mv)
    if n < 8:
        raise InvalidMessageError(f"frame of {n} bytes is shorter than its 8-byte header", 0)
    type_code, length = _HEADER.unpack_from(mv, 0)
    _check_header(type_code, length, 0, MAX_WIRECOMMAND_SIZE)
    if n - 8 < length:
        raise InvalidMessageError(
            f"Header indicated more bytes than exist: {length} announced, {n - 8} present", 8)
    if n - 8 > length:
        raise InvalidMessageError(f"{n - 8 - length} bytes after the end of the frame", 8 + length)
    return decode_payload(type_code, mv, 8, 8 + length, 0, True)


class FrameDecoder:
    """Streaming frame decoder: ``feed(data)`` returns the commands completed so far and keeps
    any partial frame for the next call.

    ``server=False`` (a client reading replies) accepts payloads up to 16 777 215 bytes, as
    Java's client reader does; ``server=True`` limits the whole frame, header included, to
    16 777 215 bytes, as the segment store's frame decoder does.

    On malformed input ``feed`` raises :class:`InvalidMessageError` whose ``offset`` is the
    position in the whole stream fed so far and whose ``decoded`` attribute lists the commands
    completed before the bad frame; the decoder is then unusable (every later call raises).

    Large byte fields come out as views: of the fed chunk when it is ``bytes`` (immutable), or of
    a buffer the decoder allocated for that one frame and never reuses.
    """

    def __init__(self, *, server: bool = False):
        self.server = server
        self.max_payload = MAX_WIRECOMMAND_SIZE - 8 if server else MAX_WIRECOMMAND_SIZE
        self._partial = bytearray()  # the start of an incomplete small frame
        self._big = None  # bytearray(8 + L) being filled for an incomplete large frame
        self._big_fill = 0
        self._consumed = 0  # bytes of the stream before the current chunk
        self._error = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return self._big_fill if self._big is not None else len(self._partial)

    def feed(self, data) -> list:
        if self._error is not None:
            raise InvalidMessageError(f"decoder failed earlier: {self._error}")
        out = []
        try:
            self._feed(data, out)
        except InvalidMessageError as e:
            self._error = e.args[0]
            self._partial = bytearray()
            self._big = None
            e.decoded = out
            raise
        return out

    def _feed(self, data, out):
        mv = _as_bytes_view(data)
        views = isinstance(data, bytes)
        n = len(mv)
        pos = 0
        if self._big is not None:
            pos = self._fill_big(mv, 0, n, out)
            if self._big is not None:
                self._consumed += n
                return
        if self._partial:
            partial = self._partial
            if len(partial) < 8:
                take = min(8 - len(partial), n - pos)
                partial += mv[pos:pos + take]
                pos += take
                if len(partial) < 8:
                    self._consumed += n
                    return
            frame_start = self._consumed + pos - len(partial)
            type_code, length = _HEADER.unpack_from(partial, 0)
            _check_header(type_code, length, frame_start, self.max_payload)
            if length >= VIEW_THRESHOLD:
                self._big = bytearray(8 + length)
                self._big[:len(partial)] = partial
                self._big_fill = len(partial)
                self._partial = bytearray()
                pos = self._fill_big(mv, pos, n, out)
                if self._big is not None:
                    self._consumed += n
                    return
            else:
                take = min(8 + length - len(partial), n - pos)
                partial += mv[pos:pos + take]
                pos += take
                if len(partial) < 8 + length:
                    self._consumed += n
                    return
                self._partial = bytearray()
                out.append(decode_payload(type_code, bytes(partial), 8, 8 + length, frame_start, True))
        max_payload = self.max_payload
        while n - pos >= 8:
            type_code, length = _HEADER.unpack_from(mv, pos)
            base = self._consumed + pos
            _check_header(type_code, length, base, max_payload)
            if n - pos - 8 < length:
                break
            out.append(decode_payload(type_code, mv, pos + 8, pos + 8 + length, base, views)
                       if views else
                       decode_payload(type_code, bytes(mv[pos:pos + 8 + length]), 8, 8 + length,
                                      base, True))
            pos += 8 + length
        if pos < n:
            rest = mv[pos:]
            if n - pos >= 8:
                length = _HEADER.unpack_from(mv, pos)[1]
                if length >= VIEW_THRESHOLD:
                    self._big = bytearray(8 + length)
                    self._big[:n - pos] = rest
                    self._big_fill = n - pos
                    self._consumed += n
                    return
            self._partial = bytearray(rest)
        self._consumed += n

    def _fill_big(self, mv, pos, n, out):
        big = self._big
        take = min(len(big) - self._big_fill, n - pos)
        big[self._big_fill:self._big_fill + take] = mv[pos:pos + take]
        self._big_fill += take
        pos += take
        if self._big_fill == len(big):
            frame_start = self._consumed + pos - len(big)
            self._big = None
            self._big_fill = 0
            type_code, length = _HEADER.unpack_from(big, 0)
            out.append(decode_payload(type_code, big, 8, 8 + length, frame_start, True))
        return pos
