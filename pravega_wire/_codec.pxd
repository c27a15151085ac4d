# The compiled codec's C-level entry for the other compiled modules (the append path's encoder
# calls it without a Python call): ``encode(cmd)`` as a bytes object, ``encode_parts(cmd)``
# when ``parts``, or None when the pure twin must handle ``cmd`` (also for an object that is not
# a command, or a subclass of one).
cdef object _encode(object cmd, bint parts)
