# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The routing-key hash, compiled twin of :mod:`pravega_wire._hash_py` (read its docstring):
MurmurHash3 x64 128 in C, fed with a key's UTF-16 code units read straight from the ``str``
(no encoded copy for keys of up to ``_STACK_UNITS // 2`` characters)."""

from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from ._hash_py import ROUTING_KEY_SEED

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void *PyUnicode_DATA(object)
    Py_UCS4 PyUnicode_READ(int kind, void *data, Py_ssize_t index)

__all__ = ["IMPLEMENTATION", "ROUTING_KEY_SEED", "murmur3_x64_128", "hash_routing_key",
           "hash_bytes_to_range"]

IMPLEMENTATION = "compiled"

DEF _STACK_UNITS = 256

cdef uint64_t _C1 = 0x87C37B91114253D5ULL
cdef uint64_t _C2 = 0x4CF5AD432745937FULL
cdef uint32_t _SEED = ROUTING_KEY_SEED
cdef double _TWO_52 = 4503599627370496.0


cdef inline uint64_t _rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xFF51AFD7ED558CCDULL
    k ^= k >> 33
    k *= 0xC4CEB9FE1A85EC53ULL
    return k ^ (k >> 33)


cdef inline uint64_t _load64(const uint8_t *p) noexcept nogil:
    """Little-endian, whatever the machine's byte order."""
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint64_t _mix_k1(uint64_t k1) noexcept nogil:
    return _rotl64(k1 * _C1, 31) * _C2


cdef inline uint64_t _mix_k2(uint64_t k2) noexcept nogil:
    return _rotl64(k2 * _C2, 33) * _C1


cdef uint64_t _murmur3(const uint8_t *data, Py_ssize_t length, uint64_t seed,
                       uint64_t *second) noexcept nogil:
    """h1 of MurmurHash3 x64 128 (h2 into ``second`` when it is not NULL); both halves of the
    state start at ``seed`` (the reference's 32-bit seed, or Guava's sign-extended one)."""
    cdef uint64_t h1 = seed, h2 = seed, k1 = 0, k2 = 0
    cdef Py_ssize_t body = length - length % 16, i
    cdef const uint8_t *tail = data + body
    cdef Py_ssize_t rest = length - body
    for i in range(0, body, 16):
        h1 ^= _mix_k1(_load64(data + i))
        h1 = (_rotl64(h1, 27) + h2) * 5 + 0x52DCE729
        h2 ^= _mix_k2(_load64(data + i + 8))
        h2 = (_rotl64(h2, 31) + h1) * 5 + 0x38495AB5
    if rest > 8:
        for i in range(rest - 1, 7, -1):
            k2 = (k2 << 8) | tail[i]
        h2 ^= _mix_k2(k2)
    if rest > 0:
        for i in range(min(rest, 8) - 1, -1, -1):
            k1 = (k1 << 8) | tail[i]
        h1 ^= _mix_k1(k1)
    h1 ^= <uint64_t>length
    h2 ^= <uint64_t>length
    h1 += h2
    h2 += h1
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    h1 += h2
    if second != NULL:
        second[0] = h2 + h1
    return h1


def murmur3_x64_128(data, seed=0):
    """``(h1, h2)``, MurmurHash3 x64 128 of ``data``: see the pure twin."""
    cdef const uint8_t[::1] view = memoryview(data).cast("B")
    cdef uint32_t low = <uint32_t>(seed & 0xFFFFFFFF)
    cdef uint64_t h1, h2 = 0
    cdef const uint8_t *start = NULL
    if view.shape[0]:
        start = &view[0]
    h1 = _murmur3(start, view.shape[0], low, &h2)
    return h1, h2


cdef inline Py_ssize_t _utf8_width(uint32_t c) noexcept nogil:
    if c < 0x80:
        return 1
    if c < 0x800:
        return 2
    if c < 0x10000:
        return 3
    return 4


def hash_routing_key(routing_key, *, bint rust_compatible=False):
    """The position in ``[0, 1)`` of a routing key, as Java (or, with ``rust_compatible``,
    Rust) places it: see the pure twin."""
    if not isinstance(routing_key, str):
        raise TypeError(f"routing_key must be a str, not {type(routing_key).__name__}")
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(routing_key), i, units = 0, size, utf8 = 0
    cdef int kind = PyUnicode_KIND(routing_key)
    cdef void *chars = PyUnicode_DATA(routing_key)
    cdef uint32_t c
    cdef uint8_t stack[2 * _STACK_UNITS]
    cdef uint8_t *buf = stack
    stack[0] = 0  # (an empty key reads nothing; this quiets the compiler)
    cdef uint64_t h
    if rust_compatible:
        for i in range(n):
            utf8 += _utf8_width(<uint32_t>PyUnicode_READ(kind, chars, i))
        size = 2 * utf8  # at least as many units as UTF-16 has: the rest are zeros
    else:
        size = 4 * n if kind == 4 else 2 * n  # an upper bound; the exact size is counted
    if size > 2 * _STACK_UNITS:
        buf = <uint8_t *>malloc(size)
        if buf == NULL:
            raise MemoryError()
    try:
        for i in range(n):
            c = <uint32_t>PyUnicode_READ(kind, chars, i)
            if c >= 0x10000:  # a surrogate pair
                c -= 0x10000
                buf[units] = (0xD800 + (c >> 10)) & 0xFF
                buf[units + 1] = (0xD800 + (c >> 10)) >> 8
                buf[units + 2] = (0xDC00 + (c & 0x3FF)) & 0xFF
                buf[units + 3] = (0xDC00 + (c & 0x3FF)) >> 8
                units += 4
            else:
                buf[units] = c & 0xFF
                buf[units + 1] = c >> 8
                units += 2
        if rust_compatible:
            while units < size:
                buf[units] = 0
                units += 1
        h = _murmur3(buf, units, _SEED, NULL)
    finally:
        if buf != stack:
            free(buf)
    return <double>(h >> 12) / _TWO_52


def hash_bytes_to_range(data, seed):
    """The position in ``[0, 1)`` of ``data`` as Java's ``HashHelper.hashToRange(ByteBuffer)``
    computes it (Guava's sign-extended seed): see the pure twin."""
    if not -(1 << 31) <= seed < (1 << 31):
        raise ValueError(f"seed must be a Java int, not {seed!r}")
    cdef long long java_int = seed
    cdef const uint8_t[::1] view = memoryview(data).cast("B")
    cdef const uint8_t *start = NULL
    if view.shape[0]:
        start = &view[0]
    cdef uint64_t h1 = _murmur3(start, view.shape[0], <uint64_t>java_int, NULL)
    return <double>(h1 >> 12) / _TWO_52
