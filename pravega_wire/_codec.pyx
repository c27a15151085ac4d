# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled WireCommands codec: the C twin of :mod:`pravega_wire._codec_py`.

Same public names, same results and same errors as the pure twin, for every input.

How it is built:

- **Layouts come from the reference.** Each command's wire layout (field kinds, wire order,
  optional-field availability tests and defaults) is read at import from the pure twin's
  ``LAYOUTS`` table and compiled into C arrays; commands whose layouts only use scalar kinds
  (ints, booleans, UUIDs, strings, byte blobs, the embedded Event) are encoded and decoded by one
  C loop over those arrays. That covers the whole append, ack and read path and every error reply.
  Commands with nested lists or table structures go through the pure twin's code.
- **Fast path for exact built-in types.** Encoding handles ``int``, ``bool``, ``str``,
  ``uuid.UUID``, ``bytes``, ``bytearray`` and contiguous ``memoryview`` values of the exact types;
  anything else (an int subclass, a strided view, a value out of range) is handed to the pure
  twin, which produces the canonical result or error.
- **Errors are defined once.** The C paths detect that an input is not valid and then let the
  pure twin raise: messages, ``offset`` and ``decoded`` are the reference's by construction.
  Nothing is emitted or consumed before the error.
- **Large payloads are not copied by ``encode_parts``.** It measures the fields like ``encode``,
  then writes only the bytes around the byte fields of at least :data:`VIEW_THRESHOLD` bytes,
  which it returns as the caller's objects themselves.
- **Decoding by pointer.** Frames are parsed in place over the caller's buffer; records are
  allocated directly as tuple subclasses; writer ids come from a small cache of recently seen
  16-byte ids (UUIDs are immutable, so sharing them is safe). Byte fields of at least
  :data:`VIEW_THRESHOLD` bytes are memoryviews of the input under the pure twin's rules.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release
from cpython.ref cimport PyObject
from libc.stdint cimport (INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, int8_t, int32_t, int64_t,
                          uint8_t, uint16_t, uint32_t, uint64_t)
from libc.string cimport memchr, memcpy, memset

import uuid as _uuid_mod

from . import _codec_py as _py
from . import commands as C
from .errors import InvalidMessageError

cdef extern from "Python.h":
    bint PyBytes_Check(object o)
    bint PyBytes_CheckExact(object o)
    char* PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    object PyBytes_FromStringAndSize(const char* v, Py_ssize_t n)
    bint PyByteArray_CheckExact(object o)
    char* PyByteArray_AS_STRING(object o)
    Py_ssize_t PyByteArray_GET_SIZE(object o)
    object PyByteArray_FromStringAndSize(const char* v, Py_ssize_t n)
    int PyByteArray_Resize(object o, Py_ssize_t n) except -1
    bint PyMemoryView_Check(object o)
    object PyMemoryView_FromObject(object o)
    bint PyLong_CheckExact(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1
    bint PyUnicode_CheckExact(object o)
    bint PyUnicode_IS_ASCII(object o)
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t index)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    object PyUnicode_FromKindAndData(int kind, const void* buffer, Py_ssize_t size)
    enum: PyUnicode_4BYTE_KIND
    int PyObject_GenericSetAttr(object o, object name, object value) except -1
    void PyObject_GC_UnTrack(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)
    void* PyMem_Malloc(size_t n)
    void PyMem_Free(void* p)
    void PyErr_Clear()
    # The same function twice: one raising, one leaving the error for the caller to clear.
    int _get_buffer "PyObject_GetBuffer"(object o, Py_buffer* view, int flags) except -1
    int _try_get_buffer "PyObject_GetBuffer"(object o, Py_buffer* view, int flags)

cdef extern from *:
    """
    /* type->tp_alloc: what object.__new__ and tuple's subtype constructor use. For a tuple
       subclass, n is the number of (NULL) items, filled with pw_set_item. */
    static inline PyObject* pw_alloc(PyObject* type, Py_ssize_t n) {
        return ((PyTypeObject*)type)->tp_alloc((PyTypeObject*)type, n);
    }
    static inline void pw_set_item(PyObject* t, Py_ssize_t i, PyObject* v) {
        Py_INCREF(v);
        PyTuple_SET_ITEM(t, i, v);
    }
    /* Strings made by the legacy API must be made ready before their data is read (< 3.12). */
    static inline int pw_unicode_ready(PyObject* o) {
    #if PY_VERSION_HEX < 0x030C0000
        return PyUnicode_READY(o);
    #else
        (void)o;
        return 0;
    #endif
    }
    /* 16 big-endian bytes <-> a non-negative int below 2**128 (a UUID's .int). */
    static PyObject* pw_long_from_be128(const unsigned char* p) {
    #if PY_VERSION_HEX >= 0x030D0000
        return PyLong_FromUnsignedNativeBytes(p, 16, Py_ASNATIVEBYTES_BIG_ENDIAN);
    #else
        return _PyLong_FromByteArray(p, 16, 0, 0);
    #endif
    }
    /* 1 when v fits in 16 unsigned bytes (written to out), 0 otherwise (no error left set). */
    static int pw_long_to_be128(PyObject* v, unsigned char* out) {
    #if PY_VERSION_HEX >= 0x030D0000
        Py_ssize_t r = PyLong_AsNativeBytes(v, out, 16, Py_ASNATIVEBYTES_BIG_ENDIAN
            | Py_ASNATIVEBYTES_UNSIGNED_BUFFER | Py_ASNATIVEBYTES_REJECT_NEGATIVE);
        if (r < 0) { PyErr_Clear(); return 0; }
        return r <= 16;
    #else
        if (_PyLong_AsByteArray((PyLongObject*)v, out, 16, 0, 0) < 0) { PyErr_Clear(); return 0; }
        return 1;
    #endif
    }
    """
    object pw_alloc(object type, Py_ssize_t n)
    void pw_set_item(object t, Py_ssize_t i, object v)
    int pw_unicode_ready(object o) except -1
    object pw_long_from_be128(const unsigned char* p)
    int pw_long_to_be128(object v, unsigned char* out)

__all__ = [
    "encode", "encode_parts", "decode", "FrameDecoder", "pack_request_id", "unpack_request_id",
    "encode_utf", "decode_utf", "encode_event", "split_events", "VIEW_THRESHOLD",
    "IMPLEMENTATION",
]

IMPLEMENTATION = "compiled"

#: Byte fields of at least this many bytes are decoded as views of the input, not copies.
VIEW_THRESHOLD = _py.VIEW_THRESHOLD

cdef Py_ssize_t _VIEW_THRESHOLD = VIEW_THRESHOLD
cdef Py_ssize_t _MAX_FRAME = C.MAX_WIRECOMMAND_SIZE
cdef int32_t _PADDING_TYPE = C.Padding.TYPE

cdef object _UUID = _uuid_mod.UUID
cdef object _SAFE_UNKNOWN = _uuid_mod.SafeUUID.unknown
cdef object _Event = C.Event
cdef object _Padding = C.Padding
cdef object _EMPTY = b""

# The pure twin's helpers that define the canonical errors and the slow paths.
cdef object _py_encode = _py.encode
cdef object _py_encode_parts = _py.encode_parts
cdef object _py_encode_event = _py.encode_event
cdef object _py_encode_utf = _py.encode_utf
cdef object _py_decode = _py.decode
cdef object _py_decode_utf = _py.decode_utf
cdef object _py_decode_payload = _py.decode_payload
cdef object _py_check_header = _py._check_header
cdef object _py_as_bytes_view = _py._as_bytes_view
cdef object _py_pack_request_id = _py.pack_request_id
cdef object _py_unpack_request_id = _py.unpack_request_id

# --------------------------------------------------------------------------------------------
# Big-endian loads and stores


cdef inline uint16_t _ld_u16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline int32_t _ld_i32(const uint8_t* p) noexcept nogil:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3])


cdef inline uint64_t _ld_u64(const uint8_t* p) noexcept nogil:
    return (<uint64_t><uint32_t>_ld_i32(p) << 32) | <uint32_t>_ld_i32(p + 4)


cdef inline uint8_t* _st_u16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v
    return p + 2


cdef inline uint8_t* _st_i32(uint8_t* p, int32_t v) noexcept nogil:
    cdef uint32_t u = <uint32_t>v
    p[0] = <uint8_t>(u >> 24)
    p[1] = <uint8_t>(u >> 16)
    p[2] = <uint8_t>(u >> 8)
    p[3] = <uint8_t>u
    return p + 4


cdef inline uint8_t* _st_i64(uint8_t* p, int64_t v) noexcept nogil:
    _st_i32(p, <int32_t>(<uint64_t>v >> 32))
    return _st_i32(p + 4, <int32_t><uint32_t>(<uint64_t>v))


# --------------------------------------------------------------------------------------------
# Request ids


def pack_request_id(flow_id, sequence):
    """``(flow_id << 32) | sequence`` as a signed 64-bit requestId.

    ``flow_id`` is a signed 32-bit int, ``sequence`` an unsigned 32-bit one; all 32 sequence bits
    are kept (Java masks them to 28, a defect this project does not copy).
    """
    cdef int64_t flow, seq
    if _exact_int(flow_id, INT32_MIN, INT32_MAX, &flow) and \
            _exact_int(sequence, 0, 0xFFFFFFFF, &seq):
        return <int64_t>((<uint64_t><uint32_t><int32_t>flow << 32) | <uint64_t>seq)
    return _py_pack_request_id(flow_id, sequence)


def unpack_request_id(request_id):
    """``(flow_id, sequence)`` of a requestId: the arithmetic high 32 bits and the low 32 bits."""
    cdef int overflow = 0
    cdef long long rid
    if PyLong_CheckExact(request_id):
        rid = PyLong_AsLongLongAndOverflow(request_id, &overflow)
        if not overflow:
            return (<int32_t>(<uint64_t>rid >> 32), <uint32_t><uint64_t>rid)
    return _py_unpack_request_id(request_id)


cdef inline bint _exact_int(object value, int64_t lo, int64_t hi, int64_t* out) except -1:
    """True (and the value in ``out``) when ``value`` is an exact int within [lo, hi]."""
    cdef int overflow = 0
    cdef long long v
    if not PyLong_CheckExact(value):
        return False
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < lo or v > hi:
        return False
    out[0] = v
    return True


# --------------------------------------------------------------------------------------------
# Modified UTF-8 (java.io.DataOutput.writeUTF / DataInput.readUTF)


cdef inline bint _is_ascii(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t word, acc = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&word, p + i, 8)
        acc |= word
        i += 8
    while i < n:
        acc |= p[i]
        i += 1
    return (acc & <uint64_t>0x8080808080808080) == 0


cdef Py_ssize_t _mutf8_length(str text) except -1:
    """Encoded length of ``text``: 1 byte for U+0001..U+007F, 2 for NUL and up to U+07FF, 3 per
    UTF-16 unit above (so 6 for a character outside the BMP)."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t i, n = 0
    cdef uint32_t c
    for i in range(PyUnicode_GET_LENGTH(text)):
        c = PyUnicode_READ(kind, data, i)
        if 0 < c < 0x80:
            n += 1
        elif c < 0x800:
            n += 2
        elif c < 0x10000:
            n += 3
        else:
            n += 6
    return n


cdef inline uint8_t* _put_unit(uint8_t* w, uint32_t c) noexcept nogil:
    """One UTF-16 unit in modified UTF-8."""
    if 0 < c < 0x80:
        w[0] = <uint8_t>c
        return w + 1
    if c < 0x800:
        w[0] = <uint8_t>(0xC0 | (c >> 6))
        w[1] = <uint8_t>(0x80 | (c & 0x3F))
        return w + 2
    w[0] = <uint8_t>(0xE0 | (c >> 12))
    w[1] = <uint8_t>(0x80 | ((c >> 6) & 0x3F))
    w[2] = <uint8_t>(0x80 | (c & 0x3F))
    return w + 3


cdef uint8_t* _put_mutf8(uint8_t* w, str text) noexcept:
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t i
    cdef uint32_t c
    for i in range(PyUnicode_GET_LENGTH(text)):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x10000:
            w = _put_unit(w, c)
        else:  # a surrogate pair, each half on its own
            c -= 0x10000
            w = _put_unit(w, 0xD800 | (c >> 10))
            w = _put_unit(w, 0xDC00 | (c & 0x3FF))
    return w


cdef object _mutf8_decode(const uint8_t* p, Py_ssize_t n):
    """The str for ``n`` modified UTF-8 bytes, or None when they are malformed."""
    cdef object text
    cdef uint32_t* units
    cdef Py_ssize_t i = 0, m = 0, k
    cdef uint8_t c, c2, c3
    if _is_ascii(p, n):
        text = PyUnicode_New(n, 127)
        memcpy(PyUnicode_DATA(text), p, n)
        return text
    units = <uint32_t*>PyMem_Malloc(n * sizeof(uint32_t))
    if units == NULL:
        raise MemoryError()
    try:
        while i < n:  # UTF-16 units, as Java's readUTF makes them
            c = p[i]
            if c < 0x80:
                units[m] = c
                i += 1
            elif (c >> 5) == 6:
                if i + 2 > n:
                    return None
                c2 = p[i + 1]
                if (c2 & 0xC0) != 0x80:
                    return None
                units[m] = ((c & 0x1F) << 6) | (c2 & 0x3F)
                i += 2
            elif (c >> 4) == 14:
                if i + 3 > n:
                    return None
                c2 = p[i + 1]
                c3 = p[i + 2]
                if (c2 & 0xC0) != 0x80 or (c3 & 0xC0) != 0x80:
                    return None
                units[m] = ((c & 0x0F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)
                i += 3
            else:
                return None
            m += 1
        # Pair surrogates the way a Java String does; lone surrogates stay as they are.
        k = 0
        i = 0
        while i < m:
            if 0xD800 <= units[i] < 0xDC00 and i + 1 < m and 0xDC00 <= units[i + 1] < 0xE000:
                units[k] = 0x10000 + ((units[i] - 0xD800) << 10) + (units[i + 1] - 0xDC00)
                i += 2
            else:
                units[k] = units[i]
                i += 1
            k += 1
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, units, k)
    finally:
        PyMem_Free(units)


def encode_utf(text):
    """``text`` as Java's ``writeUTF`` writes it: u16 length + modified UTF-8.

    NUL becomes ``C0 80``; every UTF-16 code unit is encoded on its own, so a character outside
    the BMP takes 6 bytes. Raises :class:`InvalidMessageError` if the encoding exceeds 65 535
    bytes, or if ``text`` is not a str.
    """
    cdef _Slot slot
    cdef object out
    if _measure_str(&slot, text):
        out = PyBytes_FromStringAndSize(NULL, slot.size)
        _write_slot(<uint8_t*>PyBytes_AS_STRING(out), &slot)
        return out
    return _py_encode_utf(text)


def decode_utf(data):
    """Decode modified UTF-8 bytes (without the length prefix) as Java's ``readUTF`` does.

    Accepts 1-, 2- and 3-byte forms, a raw ``00`` byte and overlong forms; rejects other lead
    bytes (4-byte UTF-8 included), bad continuation bytes and truncated characters with
    :class:`InvalidMessageError` (``offset`` is the byte index inside the string).
    """
    raw = data if PyBytes_CheckExact(data) else bytes(data)
    text = _mutf8_decode(<const uint8_t*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
    if text is None:
        return _py_decode_utf(raw)
    return text


# --------------------------------------------------------------------------------------------
# Layouts: the pure twin's LAYOUTS table, compiled

cdef enum Kind:
    K_I8, K_I32, K_I64, K_BOOL, K_UUID, K_UTF, K_NULLABLE_UTF, K_BLOB, K_BLOB_LENIENT, K_REST,
    K_EVENT, K_AUTH_CODE, K_ERROR_CODE

cdef enum:
    MAX_FIELDS = 8
    AVAIL_ALWAYS = 0   # FieldSpec.avail: a mandatory field
    AVAIL_GT0 = -1     # read when any byte remains; k > 0: read when at least k bytes remain

cdef struct FieldSpec:
    int kind
    Py_ssize_t index   # position in the record (Java declaration order)
    int avail

# The pure twin's kinds that the C loop handles (TOKEN and NULLABLE_UTF both write None as "").
cdef dict _KINDS = {
    _py.I8: K_I8, _py.I32: K_I32, _py.I64: K_I64, _py.BOOL: K_BOOL, _py.UUID: K_UUID,
    _py.UTF: K_UTF, _py.TOKEN: K_NULLABLE_UTF, _py.NULLABLE_UTF: K_NULLABLE_UTF,
    _py.BLOB: K_BLOB, _py.BLOB_LENIENT: K_BLOB_LENIENT, _py.REST: K_REST, _py.EVENT: K_EVENT,
    _py.AUTH_CODE: K_AUTH_CODE, _py.ERROR_CODE: K_ERROR_CODE,
}


@cython.auto_pickle(False)
cdef class _Layout:
    """One command's wire layout: fields in wire order, with their record index, kind and
    availability test; ``defaults[i]`` is spec i's value when it is absent."""

    cdef object cls
    cdef int32_t type_code
    cdef Py_ssize_t arity
    cdef int count
    cdef FieldSpec specs[MAX_FIELDS]
    cdef tuple defaults

    def __init__(self, cls, specs):
        fields = cls._fields
        if sorted(s[0] for s in specs) != sorted(fields):
            raise ValueError(f"{cls.__name__}: layout does not cover its fields")
        self.cls = cls
        self.type_code = cls.TYPE
        self.arity = len(fields)
        self.count = len(specs)
        defaults = []
        for i, spec in enumerate(specs):
            self.specs[i].kind = _KINDS[spec[1]]
            self.specs[i].index = fields.index(spec[0])
            if len(spec) > 2:
                self.specs[i].avail = AVAIL_GT0 if spec[2] == _py.GT0 else spec[2]
                defaults.append(spec[3])
            else:
                self.specs[i].avail = AVAIL_ALWAYS
                defaults.append(None)
        self.defaults = tuple(defaults)


cdef dict _ENCODE_LAYOUTS = {}            # exact class -> _Layout
cdef PyObject* _DECODE_LAYOUTS[256]      # type code + 128 -> borrowed _Layout, or NULL
cdef bint _FRAME_TYPES[256]              # type code + 128 -> valid as a top-level frame


def _compile_layouts():
    for cls, layout in _py.LAYOUTS.items():
        if len(layout) <= MAX_FIELDS and all(spec[1] in _KINDS for spec in layout):
            compiled = _Layout(cls, layout)
            _ENCODE_LAYOUTS[cls] = compiled
            _DECODE_LAYOUTS[cls.TYPE + 128] = <PyObject*>compiled
    # PartialEvent is encoded (the server's AppendDecoder re-frames it) but never decoded at the
    # top level; its payload is its data, up to the end of the frame.
    _ENCODE_LAYOUTS[C.PartialEvent] = _Layout(C.PartialEvent, (("data", _py.REST),))
    for code in C.COMMAND_TYPES:
        _FRAME_TYPES[code + 128] = code != C.Event.TYPE and code != C.PartialEvent.TYPE


_compile_layouts()


cdef inline object _new_record(object cls, Py_ssize_t arity):
    """An instance of the tuple subclass ``cls`` with ``arity`` empty slots (pw_set_item fills
    them; tuple deallocation tolerates slots never filled)."""
    return pw_alloc(cls, arity)


# --------------------------------------------------------------------------------------------
# UUIDs


cdef enum:
    UUID_CACHE_SIZE = 64   # a power of two

cdef uint64_t _uuid_hi[UUID_CACHE_SIZE]
cdef uint64_t _uuid_lo[UUID_CACHE_SIZE]
cdef list _uuid_objects = [None] * UUID_CACHE_SIZE


cdef object _uuid_from(const uint8_t* p):
    """The uuid.UUID for 16 wire bytes, shared with earlier decodes of the same id."""
    cdef uint64_t hi = _ld_u64(p), lo = _ld_u64(p + 8)
    cdef Py_ssize_t slot = <Py_ssize_t>((hi ^ lo ^ (hi >> 29) ^ (lo >> 31)) & (UUID_CACHE_SIZE - 1))
    cdef object u = <object>PyList_GET_ITEM(_uuid_objects, slot)
    if u is not None and _uuid_hi[slot] == hi and _uuid_lo[slot] == lo:
        return u
    u = pw_alloc(_UUID, 0)  # object.__new__(UUID): UUID() itself parses and checks arguments
    PyObject_GenericSetAttr(u, "int", pw_long_from_be128(p))
    PyObject_GenericSetAttr(u, "is_safe", _SAFE_UNKNOWN)
    # It refers to an int and to SafeUUID.unknown, which lives as long as the uuid module: it
    # can never be part of a garbage cycle, so the collector need not visit it (see _untrack).
    PyObject_GC_UnTrack(u)
    _uuid_objects[slot] = u
    _uuid_hi[slot] = hi
    _uuid_lo[slot] = lo
    return u


# The UUID most recently encoded and its bytes: a writer's appends repeat one writer id object.
cdef object _encoded_uuid = None
cdef uint8_t _encoded_uuid_bytes[16]


cdef bint _uuid_into(object value, uint8_t* out) except -1:
    """True (and the 16 bytes in ``out``) for an exact uuid.UUID with a valid ``int``."""
    global _encoded_uuid
    if value is _encoded_uuid:
        memcpy(out, _encoded_uuid_bytes, 16)
        return True
    if type(value) is not _UUID:
        return False
    number = getattr(value, "int", None)
    if not (PyLong_CheckExact(number) and pw_long_to_be128(number, out)):
        return False
    _encoded_uuid = value
    memcpy(_encoded_uuid_bytes, out, 16)
    return True


# --------------------------------------------------------------------------------------------
# Encoding: measure every field (in wire order, so the first bad one is the pure twin's first
# bad one), allocate the frame once, write.

cdef enum Op:
    OP_I8, OP_I32, OP_I64, OP_UUID, OP_STR, OP_MUTF8, OP_BLOB, OP_RAW, OP_EVENT

cdef struct _Slot:
    int op
    int64_t v          # integer value, or byte count of the data
    const uint8_t* p   # OP_STR, OP_BLOB, OP_RAW, OP_EVENT: the bytes
    PyObject* obj      # OP_BLOB, OP_RAW, OP_EVENT: the object holding them (the command's)
    PyObject* text     # OP_MUTF8: the str (owned by the command being encoded)
    Py_ssize_t size    # bytes this field takes in the frame
    uint8_t uuid[16]
    bint held          # view holds a buffer to release
    Py_buffer view


cdef bint _measure_int(_Slot* s, int op, object value, int64_t lo, int64_t hi) except -1:
    if not _exact_int(value, lo, hi, &s.v):
        return False
    s.op = op
    s.size = 1 if op == OP_I8 else 4 if op == OP_I32 else 8
    return True


cdef bint _measure_str(_Slot* s, object text) except -1:
    """An exact str whose modified UTF-8 fits the u16 length."""
    cdef Py_ssize_t n
    if not PyUnicode_CheckExact(text):
        return False
    pw_unicode_ready(text)
    n = PyUnicode_GET_LENGTH(text)
    if PyUnicode_IS_ASCII(text) and memchr(PyUnicode_DATA(text), 0, n) == NULL:
        s.op = OP_STR
        s.p = <const uint8_t*>PyUnicode_DATA(text)
    else:
        s.op = OP_MUTF8
        s.text = <PyObject*>text
        n = _mutf8_length(text)
    if n > 0xFFFF:
        return False
    s.v = n
    s.size = 2 + n
    return True


cdef bint _measure_bytes(_Slot* s, int op, object data) except -1:
    """Exact bytes, or an exact bytearray or C-contiguous memoryview whose buffer is then held
    (so that it cannot be resized or released before the frame is written)."""
    cdef Py_ssize_t n
    if PyBytes_CheckExact(data):
        s.p = <const uint8_t*>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
    elif PyByteArray_CheckExact(data) or PyMemoryView_Check(data):
        if _try_get_buffer(data, &s.view, PyBUF_SIMPLE) < 0:
            PyErr_Clear()
            return False
        s.held = True
        s.p = <const uint8_t*>s.view.buf
        n = s.view.len
    else:
        return False
    if op != OP_RAW and n > 0x7FFFFFFF:
        return False
    s.obj = <PyObject*>data
    s.op = op
    s.v = n
    s.size = n + (4 if op == OP_BLOB else 8 if op == OP_EVENT else 0)
    return True


cdef bint _measure(_Slot* s, int kind, object value) except -1:
    """Fills ``s`` for one field; False when the value needs the pure twin (bad or unusual)."""
    s.held = False
    if kind == K_I64:
        return _measure_int(s, OP_I64, value, INT64_MIN, INT64_MAX)
    if kind == K_I32:
        return _measure_int(s, OP_I32, value, INT32_MIN, INT32_MAX)
    if kind == K_UUID:
        s.op = OP_UUID
        s.size = 16
        return _uuid_into(value, s.uuid)
    if kind == K_UTF:
        return _measure_str(s, value)
    if kind == K_NULLABLE_UTF:
        return _measure_str(s, "" if value is None else value)
    if kind == K_BOOL:
        s.op = OP_I8
        s.size = 1
        s.v = 1 if value is True else 0
        return value is True or value is False
    if kind == K_BLOB:
        return _measure_bytes(s, OP_BLOB, value)
    if kind == K_BLOB_LENIENT:
        return _measure_bytes(s, OP_BLOB, _EMPTY if value is None else value)
    if kind == K_REST:
        return _measure_bytes(s, OP_RAW, value)
    if kind == K_EVENT:
        return (type(value) is _Event and PyTuple_GET_SIZE(value) == 1
                and _measure_bytes(s, OP_EVENT, <object>PyTuple_GET_ITEM(value, 0)))
    if kind == K_I8:
        return _measure_int(s, OP_I8, value, -128, 127)
    if kind == K_AUTH_CODE:
        return _measure_int(s, OP_I32, value, -1, 1)
    if kind == K_ERROR_CODE:
        return _measure_int(s, OP_I32, value, -1, 0)
    return False


cdef inline uint8_t* _write_prefix(uint8_t* w, _Slot* s) noexcept:
    """What precedes a byte field's bytes: its i32 length (OP_BLOB), the Event record's header
    (OP_EVENT) or nothing (OP_RAW)."""
    if s.op == OP_BLOB:
        return _st_i32(w, <int32_t>s.v)
    if s.op == OP_EVENT:
        return _st_i32(_st_i32(w, 0), <int32_t>s.v)
    return w


cdef inline bint _passed_on(_Slot* s) noexcept:
    """A byte field that ``encode_parts`` returns as it is, rather than copying it."""
    return (s.op == OP_BLOB or s.op == OP_RAW or s.op == OP_EVENT) and s.v >= _VIEW_THRESHOLD


cdef uint8_t* _write_slot(uint8_t* w, _Slot* s) noexcept:
    if s.op == OP_I64:
        return _st_i64(w, s.v)
    if s.op == OP_I32:
        return _st_i32(w, <int32_t>s.v)
    if s.op == OP_I8:
        w[0] = <uint8_t>s.v
        return w + 1
    if s.op == OP_UUID:
        memcpy(w, s.uuid, 16)
        return w + 16
    if s.op == OP_STR or s.op == OP_MUTF8:
        w = _st_u16(w, <uint16_t>s.v)
        if s.op == OP_MUTF8:
            return _put_mutf8(w, <str>s.text)
    else:
        w = _write_prefix(w, s)
    if s.v:
        memcpy(w, s.p, s.v)
    return w + s.v


cdef object _encode_layout(_Layout layout, object cmd, bint parts):
    """The frame for ``cmd`` (as ``encode_parts``' list when ``parts``), or None when the pure
    twin must handle it."""
    cdef _Slot slots[MAX_FIELDS]
    cdef int i, used = 0
    cdef Py_ssize_t length = 0
    cdef bint passing = False
    cdef uint8_t* w
    try:
        for i in range(layout.count):
            used = i + 1
            if not _measure(&slots[i], layout.specs[i].kind,
                            <object>PyTuple_GET_ITEM(cmd, layout.specs[i].index)):
                return None
            length += slots[i].size
            passing = passing or (parts and _passed_on(&slots[i]))
        if length > _MAX_FRAME - 8:
            return None
        if passing:
            return _split_frame(layout.type_code, length, slots, layout.count)
        out = PyBytes_FromStringAndSize(NULL, 8 + length)
        w = _st_i32(_st_i32(<uint8_t*>PyBytes_AS_STRING(out), layout.type_code), <int32_t>length)
        for i in range(layout.count):
            w = _write_slot(w, &slots[i])
        return [out] if parts else out
    finally:
        for i in range(used):
            if slots[i].held:
                PyBuffer_Release(&slots[i].view)


cdef list _split_frame(int32_t type_code, Py_ssize_t length, _Slot* slots, int count):
    """``encode_parts``' list for measured fields: the large byte fields as they are, and one
    bytes object (never empty) for each run of bytes before, between and after them."""
    cdef list out = []
    cdef int i, j, first = 0
    cdef Py_ssize_t size = 8  # of the run being measured: the header starts the first one
    cdef uint8_t* w
    cdef bint last
    for i in range(count + 1):
        last = i == count
        if not last and not _passed_on(&slots[i]):
            size += slots[i].size
            continue
        if not last:
            size += slots[i].size - slots[i].v  # its prefix ends the run
        if size:
            run = PyBytes_FromStringAndSize(NULL, size)
            w = <uint8_t*>PyBytes_AS_STRING(run)
            if first == 0:
                w = _st_i32(_st_i32(w, type_code), <int32_t>length)
            for j in range(first, i):
                w = _write_slot(w, &slots[j])
            if not last:
                _write_prefix(w, &slots[i])
            out.append(run)
        if not last:
            out.append(<object>slots[i].obj)
        first = i + 1
        size = 0
    return out


cdef object _encode_padding(object cmd):
    cdef int64_t length
    if PyTuple_GET_SIZE(cmd) != 1 or not _exact_int(<object>PyTuple_GET_ITEM(cmd, 0), 0,
                                                    _MAX_FRAME - 8, &length):
        return None
    out = PyBytes_FromStringAndSize(NULL, 8 + length)
    w = _st_i32(_st_i32(<uint8_t*>PyBytes_AS_STRING(out), _PADDING_TYPE), <int32_t>length)
    memset(w, 0, length)
    return out


cdef object _encode_event(object data, bint parts):
    """The Event record for ``data`` (as ``encode_parts``' list when ``parts``), or None when
    the pure twin must handle it."""
    cdef _Slot slot
    slot.held = False
    try:
        if not _measure_bytes(&slot, OP_EVENT, data) or slot.v > _MAX_FRAME - 8:
            return None
        if parts and _passed_on(&slot):
            out = PyBytes_FromStringAndSize(NULL, 8)
            _write_prefix(<uint8_t*>PyBytes_AS_STRING(out), &slot)
            return [out, data]
        out = PyBytes_FromStringAndSize(NULL, slot.size)
        _write_slot(<uint8_t*>PyBytes_AS_STRING(out), &slot)
        return [out] if parts else out
    finally:
        if slot.held:
            PyBuffer_Release(&slot.view)


def encode(cmd):
    """One whole frame for ``cmd``: the 8-byte header (type, length) and the payload.

    ``encode(Event(data))`` gives the 8-byte-header Event record that appends carry (an Event is
    never a frame of its own). Raises :class:`InvalidMessageError` before producing anything if a
    field does not fit (a string over 65 535 encoded bytes, an int out of range, a frame over
    16 777 215 bytes including its header).
    """
    out = _encode(cmd, False)
    if out is None:
        return _py_encode(cmd)
    return out


def encode_parts(cmd):
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
    out = _encode(cmd, True)
    if out is None:
        return _py_encode_parts(cmd)
    return out


# The layout :func:`_encode` used last (borrowed: ``_ENCODE_LAYOUTS`` keeps every layout alive;
# one pointer, so a thread switch cannot pair it with another class). Commands come in runs of
# one type; this spares the dict lookup keyed by class.
cdef PyObject* _last_layout = NULL


cdef object _encode(object cmd, bint parts):
    """``encode(cmd)``, or ``encode_parts(cmd)`` when ``parts``; None when the pure twin must
    handle ``cmd`` (a command with lists or tables, an unusual or a bad value)."""
    global _last_layout
    cdef object cls = type(cmd)
    cdef object out = None
    cdef _Layout layout
    if _last_layout != NULL and (<_Layout>_last_layout).cls is cls:
        layout = <_Layout>_last_layout
    else:
        layout = _ENCODE_LAYOUTS.get(cls)
        if layout is not None:
            _last_layout = <PyObject*>layout
    if layout is not None:
        if PyTuple_GET_SIZE(cmd) == layout.arity:
            out = _encode_layout(layout, cmd, parts)
    elif cls is _Event:
        if PyTuple_GET_SIZE(cmd) == 1:
            out = _encode_event(<object>PyTuple_GET_ITEM(cmd, 0), parts)
    elif cls is _Padding:
        out = _encode_padding(cmd)
        if out is not None and parts:
            out = [out]
    return out


def encode_event(data):
    """The Event record for one event: ``i32 0``, ``i32 len``, the bytes."""
    out = _encode_event(data, False)
    if out is None:
        return _py_encode_event(data)
    return out


def split_events(data, Py_ssize_t limit):
    """``(payloads, consumed)``: the payloads of the complete Event records at the start of
    ``data`` (at most ``limit``): copies below VIEW_THRESHOLD, slices of ``data`` from it on;
    stops before a record that is incomplete or not an Event record (see the pure twin)."""
    cdef Py_buffer view
    cdef const uint8_t* buf
    cdef Py_ssize_t size, pos = 0, start, length
    cdef list out = []
    _get_buffer(data, &view, PyBUF_SIMPLE)
    try:
        buf = <const uint8_t*>view.buf
        size = view.len
        while limit > 0 and size - pos >= 8:
            if _ld_i32(buf + pos) != 0:
                break
            length = _ld_i32(buf + pos + 4)
            start = pos + 8
            if length < 0 or length > size - start:
                break
            if length < _VIEW_THRESHOLD:  # a copy: cheaper than a view (and its GC tracking)
                out.append(PyBytes_FromStringAndSize(<const char*>buf + start, length))
            else:
                out.append(data[start:start + length])
            pos = start + length
            limit -= 1
    finally:
        PyBuffer_Release(&view)
    return out, pos


# --------------------------------------------------------------------------------------------
# Decoding: a reader over a raw pointer. A shortfall or malformed field only sets ``bad``; the
# caller then hands the frame to the pure twin, which raises the canonical error.

cdef struct Reader:
    const uint8_t* buf
    Py_ssize_t start    # the payload's first byte
    Py_ssize_t pos
    Py_ssize_t end
    PyObject* views     # a memoryview over buf's owner for large byte fields, or NULL: copies
    bint viewed         # a field is a view (the record may then reach arbitrary objects)
    bint bad


cdef inline bint _need(Reader* r, Py_ssize_t n) noexcept:
    if r.end - r.pos < n:
        r.bad = True
        return False
    return True


cdef inline int64_t _read_i64(Reader* r) noexcept:
    if not _need(r, 8):
        return 0
    r.pos += 8
    return <int64_t>_ld_u64(r.buf + r.pos - 8)


cdef inline int32_t _read_i32(Reader* r) noexcept:
    if not _need(r, 4):
        return 0
    r.pos += 4
    return _ld_i32(r.buf + r.pos - 4)


cdef inline int _read_u8(Reader* r) noexcept:
    if not _need(r, 1):
        return 0
    r.pos += 1
    return r.buf[r.pos - 1]


cdef object _read_uuid(Reader* r):
    if not _need(r, 16):
        return None
    r.pos += 16
    return _uuid_from(r.buf + r.pos - 16)


cdef object _read_utf(Reader* r):
    cdef Py_ssize_t n
    if not _need(r, 2):
        return None
    n = _ld_u16(r.buf + r.pos)
    if not _need(r, 2 + n):
        return None
    text = _mutf8_decode(r.buf + r.pos + 2, n)
    if text is None:
        r.bad = True
    r.pos += 2 + n
    return text


cdef object _read_bytes(Reader* r, Py_ssize_t n):
    """``n`` bytes: a view for large ones when views are on, else a copy."""
    cdef Py_ssize_t at = r.pos
    if n < 0 or not _need(r, n):
        r.bad = True
        return None
    r.pos += n
    if n >= _VIEW_THRESHOLD and r.views != NULL:
        r.viewed = True
        return (<object>r.views)[at:at + n]
    return PyBytes_FromStringAndSize(<const char*>r.buf + at, n)


cdef inline void _untrack(object record, Reader* r) noexcept:
    """Take a decoded record off the cyclic collector's lists unless one of its fields is a view.

    Its other fields are ints, strs, bytes, bools and untracked UUIDs or Events: nothing through
    which a cycle could come back to the record. CPython does the same for exact tuples (lazily,
    during collections), not for tuple subclasses; without it, a feed of a thousand replies
    spends a fifth of its time in collections that walk the replies just decoded.
    """
    if not r.viewed:
        PyObject_GC_UnTrack(record)


cdef object _read_event(Reader* r):
    cdef int32_t code = _read_i32(r)
    cdef int32_t n = _read_i32(r)
    if r.bad or code != 0 or n > (r.end - r.start) - 8:
        r.bad = True
        return None
    data = _read_bytes(r, n)
    if r.bad:
        return None
    event = _new_record(_Event, 1)
    pw_set_item(event, 0, data)
    _untrack(event, r)
    return event


cdef object _read_field(Reader* r, int kind):
    cdef int32_t n
    if kind == K_I64:
        return _read_i64(r)
    if kind == K_UTF or kind == K_NULLABLE_UTF:
        return _read_utf(r)
    if kind == K_UUID:
        return _read_uuid(r)
    if kind == K_I32:
        return _read_i32(r)
    if kind == K_BOOL:
        return _read_u8(r) != 0
    if kind == K_BLOB:
        return _read_bytes(r, _read_i32(r))
    if kind == K_BLOB_LENIENT:
        n = _read_i32(r)
        return _EMPTY if n <= 0 else _read_bytes(r, n)
    if kind == K_REST:
        return _read_bytes(r, r.end - r.pos)
    if kind == K_EVENT:
        return _read_event(r)
    if kind == K_I8:
        return <int8_t>_read_u8(r)
    n = _read_i32(r)
    if kind == K_AUTH_CODE:
        return n if -1 <= n <= 1 else 0
    return n if -1 <= n <= 0 else -1  # K_ERROR_CODE


cdef inline bint _available(Reader* r, int avail) noexcept:
    if avail == AVAIL_GT0:
        return r.end - r.pos > 0
    return r.end - r.pos >= avail


cdef object _decode_layout(_Layout layout, Reader* r):
    cdef int i
    cdef FieldSpec* spec
    record = _new_record(layout.cls, layout.arity)
    for i in range(layout.count):
        spec = &layout.specs[i]
        if spec.avail != AVAIL_ALWAYS and not _available(r, spec.avail):
            value = layout.defaults[i]
        else:
            value = _read_field(r, spec.kind)
            if r.bad:
                return None
        pw_set_item(record, spec.index, value)
    _untrack(record, r)
    return record


cdef inline bint _header_ok(int32_t type_code, int32_t length, Py_ssize_t max_payload) noexcept:
    return 0 <= length <= max_payload and -128 <= type_code <= 127 and \
        _FRAME_TYPES[type_code + 128]


cdef inline int _check_header(int32_t type_code, int32_t length, int64_t base,
                              Py_ssize_t max_payload) except -1:
    """Raises the pure twin's error for a header that is not valid at ``base``."""
    if not _header_ok(type_code, length, max_payload):
        _py_check_header(type_code, length, base, max_payload)
    return 0


cdef object _decode_frame(int32_t type_code, const uint8_t* buf, Py_ssize_t start,
                          Py_ssize_t end, int64_t base, object owner, bint views):
    """The command in ``buf[start:end]`` (``buf`` being ``owner``'s bytes), a frame that starts
    at ``base`` in the caller's stream; its header has been checked."""
    cdef Reader r
    cdef object view_source = None
    cdef object cmd = None
    cdef PyObject* layout = _DECODE_LAYOUTS[type_code + 128] if -128 <= type_code <= 127 else NULL
    if layout != NULL:
        if views and end - start >= _VIEW_THRESHOLD:
            view_source = PyMemoryView_FromObject(owner)
        r.buf = buf
        r.start = start
        r.pos = start
        r.end = end
        r.views = <PyObject*>view_source if view_source is not None else NULL
        r.viewed = False
        r.bad = False
        cmd = _decode_layout(<_Layout>layout, &r)
    elif type_code == _PADDING_TYPE:
        cmd = _new_record(_Padding, 1)
        pw_set_item(cmd, 0, end - start)
        PyObject_GC_UnTrack(cmd)
    if cmd is None:  # a command kept in Python, or a malformed one (the pure twin raises)
        return _py_decode_payload(type_code, owner, start, end, base, views)
    return cmd


def decode(frame):
    """Decode one whole frame (header included) into a command.

    Raises :class:`InvalidMessageError` for anything Java's decoder rejects, and also for a
    frame shorter or longer than its header says. Large byte fields are views of ``frame``.
    """
    cdef Py_buffer view
    cdef object owner = frame
    cdef const uint8_t* p
    cdef Py_ssize_t n
    cdef int32_t type_code, length
    cdef bint held = False
    if PyBytes_Check(frame):
        p = <const uint8_t*>PyBytes_AS_STRING(frame)
        n = PyBytes_GET_SIZE(frame)
    else:
        owner = _py_as_bytes_view(frame)
        if _try_get_buffer(owner, &view, PyBUF_SIMPLE) < 0:
            PyErr_Clear()
            return _py_decode(frame)
        held = True
        p = <const uint8_t*>view.buf
        n = view.len
    try:
        if n >= 8:
            type_code = _ld_i32(p)
            length = _ld_i32(p + 4)
            if _header_ok(type_code, length, _MAX_FRAME) and n - 8 == length:
                return _decode_frame(type_code, p, 8, n, 0, owner, True)
        return _py_decode(frame)
    finally:
        if held:
            PyBuffer_Release(&view)


# --------------------------------------------------------------------------------------------
# Streaming


cdef inline int _append(bytearray target, const uint8_t* p, Py_ssize_t n) except -1:
    cdef Py_ssize_t have = PyByteArray_GET_SIZE(target)
    PyByteArray_Resize(target, have + n)
    memcpy(PyByteArray_AS_STRING(target) + have, p, n)
    return 0


cdef object _decode_copy(const uint8_t* p, Py_ssize_t size, int64_t base):
    """The whole frame ``p[:size]`` copied into a bytes object of its own, which its large
    fields then view."""
    frame = PyBytes_FromStringAndSize(<const char*>p, size)
    return _decode_frame(_ld_i32(p), <const uint8_t*>PyBytes_AS_STRING(frame), 8, size, base,
                         frame, True)


cdef class FrameDecoder:
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

    cdef readonly bint server
    cdef readonly Py_ssize_t max_payload
    cdef bytearray _partial   # the start of an incomplete small frame
    cdef bytearray _big       # the 8 + L bytes of an incomplete large frame, being filled
    cdef Py_ssize_t _big_fill
    cdef int64_t _consumed    # bytes of the stream before the current chunk
    cdef object _error

    def __init__(self, *, bint server=False):
        self.server = server
        self.max_payload = _MAX_FRAME - 8 if server else _MAX_FRAME
        self._partial = bytearray()
        self._big = None
        self._big_fill = 0
        self._consumed = 0
        self._error = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return self._big_fill if self._big is not None else PyByteArray_GET_SIZE(self._partial)

    def feed(self, data) -> list:
        """The commands completed by ``data`` (any bytes-like object), in stream order."""
        cdef list out = []
        if self._error is not None:
            raise InvalidMessageError(f"decoder failed earlier: {self._error}")
        try:
            self._feed(data, out)
        except InvalidMessageError as e:
            self._error = e.args[0]
            self._partial = bytearray()
            self._big = None
            e.decoded = out
            raise
        return out

    cdef int _feed(self, object data, list out) except -1:
        cdef Py_buffer view
        if PyBytes_Check(data):
            self._consume(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), data,
                          True, out)
            return 0
        chunk = _py_as_bytes_view(data)
        _get_buffer(chunk, &view, PyBUF_SIMPLE)
        try:
            self._consume(<const uint8_t*>view.buf, view.len, chunk, False, out)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef int _consume(self, const uint8_t* p, Py_ssize_t n, object chunk, bint views,
                      list out) except -1:
        """Decode the chunk ``p[:n]`` (``chunk``'s bytes; large fields may be views of it when
        ``views``, i.e. it is immutable)."""
        cdef Py_ssize_t pos = 0, have, take
        cdef int32_t type_code, length
        cdef int64_t base
        cdef const uint8_t* head
        if self._big is not None:
            pos = self._fill_big(p, pos, n, out)
            if self._big is not None:
                self._consumed += n
                return 0
        have = PyByteArray_GET_SIZE(self._partial)
        if have:
            if have < 8:
                take = min(8 - have, n - pos)
                _append(self._partial, p + pos, take)
                pos += take
                have += take
                if have < 8:
                    self._consumed += n
                    return 0
            head = <const uint8_t*>PyByteArray_AS_STRING(self._partial)
            type_code = _ld_i32(head)
            length = _ld_i32(head + 4)
            base = self._consumed + pos - have
            _check_header(type_code, length, base, self.max_payload)
            if length >= _VIEW_THRESHOLD:
                self._start_big(head, have, length)
                self._partial = bytearray()
                pos = self._fill_big(p, pos, n, out)
                if self._big is not None:
                    self._consumed += n
                    return 0
            else:
                take = min(8 + length - have, n - pos)
                _append(self._partial, p + pos, take)
                pos += take
                if have + take < 8 + length:
                    self._consumed += n
                    return 0
                head = <const uint8_t*>PyByteArray_AS_STRING(self._partial)  # moved by _append
                out.append(_decode_copy(head, 8 + length, base))
                self._partial = bytearray()
        while n - pos >= 8:
            type_code = _ld_i32(p + pos)
            length = _ld_i32(p + pos + 4)
            base = self._consumed + pos
            _check_header(type_code, length, base, self.max_payload)
            if n - pos - 8 < length:
                break
            if views or length < _VIEW_THRESHOLD:
                out.append(_decode_frame(type_code, p, pos + 8, pos + 8 + length, base, chunk,
                                         views))
            else:  # a large frame of a mutable chunk: views of a copy of that frame
                out.append(_decode_copy(p + pos, 8 + length, base))
            pos += 8 + length
        if pos < n:
            if n - pos >= 8 and _ld_i32(p + pos + 4) >= _VIEW_THRESHOLD:
                self._start_big(p + pos, n - pos, _ld_i32(p + pos + 4))
            else:
                _append(self._partial, p + pos, n - pos)
        self._consumed += n
        return 0

    cdef int _start_big(self, const uint8_t* head, Py_ssize_t have, int32_t length) except -1:
        """Begin a large frame's own buffer with its first ``have`` bytes."""
        self._big = PyByteArray_FromStringAndSize(NULL, 8 + <Py_ssize_t>length)
        memcpy(PyByteArray_AS_STRING(self._big), head, have)
        self._big_fill = have
        return 0

    cdef Py_ssize_t _fill_big(self, const uint8_t* p, Py_ssize_t pos, Py_ssize_t n,
                              list out) except -1:
        cdef bytearray big = self._big
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(big)
        cdef Py_ssize_t take = min(size - self._big_fill, n - pos)
        cdef const uint8_t* frame
        memcpy(PyByteArray_AS_STRING(big) + self._big_fill, p + pos, take)
        self._big_fill += take
        pos += take
        if self._big_fill == size:
            self._big = None
            self._big_fill = 0
            frame = <const uint8_t*>PyByteArray_AS_STRING(big)
            out.append(_decode_frame(_ld_i32(frame), frame, 8, size,
                                     self._consumed + pos - size, big, True))
        return pos
