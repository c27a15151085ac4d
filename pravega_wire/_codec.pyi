"""Types of the compiled codec twin (``_codec.pyx``): the same API as ``_codec_py``."""

from typing import Final, List, Tuple, Union

from .commands import Command

_BytesLike = Union[bytes, bytearray, memoryview]

__all__: List[str]

IMPLEMENTATION: Final[str]
#: Byte fields of at least this many bytes are decoded as views of the input, not copies.
VIEW_THRESHOLD: Final[int]

def encode(cmd: Command) -> bytes:
    """One whole frame for ``cmd`` (header included); ``InvalidMessageError`` if a field does
    not fit."""

def encode_parts(cmd: Command) -> List[_BytesLike]:
    """``encode(cmd)`` as buffers to write in order: every byte field of at least
    ``VIEW_THRESHOLD`` bytes is the caller's object itself, the bytes around such fields are one
    ``bytes`` each; ``[encode(cmd)]`` when there is none. Raises what ``encode`` raises."""

def decode(frame: _BytesLike) -> Command:
    """One whole frame (header included) into a command; ``InvalidMessageError`` if malformed."""

def encode_event(data: _BytesLike) -> bytes:
    """The Event record for one event: ``i32 0``, ``i32 len``, the bytes."""

def encode_utf(text: str) -> bytes:
    """``text`` as Java's ``writeUTF`` writes it: u16 length + modified UTF-8."""

def decode_utf(data: _BytesLike) -> str:
    """Modified UTF-8 bytes (without the length prefix) as Java's ``readUTF`` reads them."""

def pack_request_id(flow_id: int, sequence: int) -> int:
    """``(flow_id << 32) | sequence`` as a signed 64-bit requestId."""

def unpack_request_id(request_id: int) -> Tuple[int, int]:
    """``(flow_id, sequence)`` of a requestId."""

class FrameDecoder:
    """Streaming frame decoder: ``feed(data)`` returns the commands completed so far."""

    @property
    def server(self) -> bool: ...
    @property
    def max_payload(self) -> int: ...
    def __init__(self, *, server: bool = False) -> None: ...
    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
    def feed(self, data: _BytesLike) -> List[Command]:
        """The commands completed by ``data``, in stream order; ``InvalidMessageError`` (with
        ``offset`` and ``decoded``) on malformed input, after which the decoder is unusable."""
