"""pravega-wire: Pravega's segment-store wire protocol (WireCommands v17) and the PDP-36
connection pool, in Python.

The public API: the codec (``encode``, ``decode``, ``FrameDecoder``), the sans-I/O append path
(``CommandEncoder``, ``Append``, ``AppendDecoder``), request ids (``Flow``, ``pack_request_id``,
``unpack_request_id``), the error hierarchy, and ``IMPLEMENTATION`` ("compiled" or "pure").
Commands live in :mod:`pravega_wire.commands`; the pool in :mod:`pravega_wire.pool`; clients in
:mod:`pravega_wire.client`; the embedded server in :mod:`pravega_wire.server`.
"""

import logging

from . import commands
from .appends import Append, AppendDecoder, CommandEncoder
from .codec import (IMPLEMENTATION, FrameDecoder, decode, encode, encode_parts,
                    pack_request_id, unpack_request_id)
from .errors import (AuthenticationError, ConnectionClosedError, ConnectionFailedError,
                     IncompatibleVersionError, InvalidMessageError, NoSuchSegmentError,
                     PravegaWireError, RetriesExhaustedError, SegmentSealedError,
                     SegmentTruncatedError, ServerError, TimeoutError, TokenExpiredError, WrongHostError)
from .flow import Flow

__version__ = "0.1.0"  # the one source: pyproject.toml reads it (tool.setuptools.dynamic)

# A library logs, the application decides where it goes: without this, Python's last-resort
# handler would print the package's warnings to stderr of any program that never set up logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "IMPLEMENTATION", "commands", "encode", "encode_parts", "decode", "FrameDecoder", "Flow", "pack_request_id",
    "CommandEncoder", "Append", "AppendDecoder",
    "unpack_request_id", "PravegaWireError", "InvalidMessageError", "ConnectionFailedError",
    "ConnectionClosedError", "IncompatibleVersionError", "WrongHostError", "SegmentSealedError",
    "NoSuchSegmentError", "SegmentTruncatedError", "AuthenticationError", "TokenExpiredError",
    "RetriesExhaustedError", "TimeoutError", "ServerError",
]
