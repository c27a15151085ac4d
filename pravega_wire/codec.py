"""Picks the codec implementation once, at import.

The compiled twin (``pravega_wire._codec``, built with Cython) is used when it is installed,
unless the environment variable ``PRAVEGA_WIRE_NO_EXTENSIONS`` is set to a non-empty value
other than ``0``; then, or when the extension is missing, the pure-Python twin
(``pravega_wire._codec_py``) is used. ``IMPLEMENTATION`` says which one loaded. Both twins
expose the same names and give the same results.
"""

from __future__ import annotations

from ._mode import pure_requested

__all__ = ["IMPLEMENTATION", "encode", "encode_parts", "decode", "FrameDecoder",
           "pack_request_id", "unpack_request_id", "encode_utf", "decode_utf", "encode_event",
           "split_events", "VIEW_THRESHOLD", "pure_requested", "impl"]


if pure_requested():
    from . import _codec_py as impl
else:
    try:
        from . import _codec as impl  # type: ignore[no-redef]
    except ImportError:  # no compiler at install time: the pure twin stands in
        from . import _codec_py as impl  # type: ignore[no-redef]

IMPLEMENTATION: str = impl.IMPLEMENTATION
encode = impl.encode
encode_parts = impl.encode_parts
decode = impl.decode
FrameDecoder = impl.FrameDecoder
pack_request_id = impl.pack_request_id
unpack_request_id = impl.unpack_request_id
encode_utf = impl.encode_utf
decode_utf = impl.decode_utf
encode_event = impl.encode_event
split_events = impl.split_events
VIEW_THRESHOLD = impl.VIEW_THRESHOLD
