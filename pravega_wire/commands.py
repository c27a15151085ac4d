"""Every WireCommand of Pravega's wire protocol, version 17, and the structures nested in them.

One class per type code, named as Pravega's Java ``WireCommands`` names it. Fields are the
snake_case of the Java field names, in Java's declaration order (which is not always the wire
order: the codec knows the wire layout). Instances are immutable tuples, equal by value and type::

    >>> cmd = SetupAppend(request_id=1, writer_id=uuid.UUID(int=2), segment="scope/stream/0")
    >>> cmd.delegation_token
    ''

Values are ``int``, ``bool``, ``str``, ``uuid.UUID``, bytes-like objects for byte fields (a
decoded large payload may be a ``memoryview``) and lists for lists. Fields that newer protocol
versions appended, and delegation tokens, have defaults equal to what the decoder produces when
the field is absent.

This module holds names, codes and fields only; encoding lives in the codec.
"""

from __future__ import annotations

import uuid as _uuid

from ._mode import pure_requested as _pure_requested

__all__ = [
    "WIRE_VERSION", "OLDEST_COMPATIBLE_VERSION", "MAX_WIRECOMMAND_SIZE", "TYPE_PLUS_LENGTH_SIZE",
    "NULL_ATTRIBUTE_VALUE", "NULL_TABLE_SEGMENT_OFFSET", "Command", "Struct",
    "COMMAND_TYPES", "command_class", "hello_mismatch",
]

WIRE_VERSION = 17
OLDEST_COMPATIBLE_VERSION = 5
MAX_WIRECOMMAND_SIZE = 0x00FFFFFF  # 16 777 215
TYPE_PLUS_LENGTH_SIZE = 8
#: ``Long.MIN_VALUE``: attribute not set, writer never seen, TableKey.NO_VERSION.
NULL_ATTRIBUTE_VALUE = -(2 ** 63)
NULL_TABLE_SEGMENT_OFFSET = -1

_MISSING = object()

# The compiled constructors of ``_records`` unless pure mode is asked for.
_records = None
if not _pure_requested():
    try:
        from . import _records
    except ImportError:  # not built: the generated Python constructors stand in
        _records = None
#: Which record constructors are in use: ``"compiled"`` (``pravega_wire._records``) or
#: ``"pure"`` (generated Python ``__new__`` functions). Both accept the same arguments, give
#: equal instances and raise the same errors.
CONSTRUCTION = "pure" if _records is None else "compiled"


class _Record(tuple):
    """An immutable record: a tuple whose class names its fields.

    Subclasses list ``_fields`` (and optional ``_defaults``); ``__init_subclass__`` installs a
    constructor taking the fields positionally or by keyword (compiled by ``_records``, or a
    generated Python ``__new__``: see ``CONSTRUCTION``), and one read-only accessor per field.
    """

    __slots__ = ()
    _fields: tuple = ()
    _defaults: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_fields" not in cls.__dict__:
            return
        fields = cls._fields
        defaults = cls.__dict__.get("_defaults", {})
        for index, name in enumerate(fields):
            setattr(cls, name, _accessor(index, f"Field {index}: {name}"))
        if _records is not None:
            _records.install_new(cls, fields, defaults, _MISSING, _EMPTY_LIST)
        else:
            cls.__new__ = _python_new(cls, fields, defaults)

    def __eq__(self, other):
        return type(self) is type(other) and tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((type(self).__name__, tuple(self)))

    def __repr__(self):
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self))
        return f"{type(self).__name__}({inner})"

    def __getnewargs__(self):
        return tuple(self)

    def _asdict(self) -> dict:
        """The fields as a dict, in declaration order."""
        return dict(zip(self._fields, self))

    def _replace(self, **changes):
        """A copy with some fields replaced."""
        values = self._asdict()
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        values.update(changes)
        return type(self)(**values)


def _python_new(cls, fields: tuple, defaults: dict):
    """The generated Python ``__new__`` of a record class (the pure constructors)."""
    params, checks = [], []
    seen_default = False
    for name in fields:
        if name in defaults:
            seen_default = True
            params.append(f"{name}=_d_{name}")
        elif seen_default:
            params.append(f"{name}=_MISSING")
            message = f"{cls.__name__}() missing required argument: {name!r}"
            checks.append(f"    if {name} is _MISSING: raise TypeError({message!r})\n")
        else:
            params.append(name)
    namespace = {"_MISSING": _MISSING, "_tuple_new": tuple.__new__, "_EMPTY_LIST": _EMPTY_LIST}
    for name, value in defaults.items():
        namespace[f"_d_{name}"] = value
    fixups = ""
    for name, value in defaults.items():
        if value is _EMPTY_LIST:  # a fresh list per instance, never a shared one
            fixups += f"    if {name} is _EMPTY_LIST: {name} = []\n"
    body = ", ".join(fields) + ("," if len(fields) == 1 else "")
    src = (f"def __new__(_cls, {', '.join(params)}):\n" + "".join(checks) + fixups
           + f"    return _tuple_new(_cls, ({body}))\n")
    if not fields:
        src = "def __new__(_cls):\n    return _tuple_new(_cls, ())\n"
    exec(src, namespace)
    new = namespace["__new__"]
    new.__qualname__ = f"{cls.__name__}.__new__"
    return new


class _EmptyList(list):
    """Marker default meaning "a new empty list"."""


_EMPTY_LIST = _EmptyList()


try:  # CPython's C accessor for namedtuple fields; a plain itemgetter property elsewhere
    from collections import _tuplegetter as _tg

    def _accessor(index, doc):
        return _tg(index, doc)
except ImportError:  # pragma: no cover
    from operator import itemgetter as _ig

    def _accessor(index, doc):
        return property(_ig(index), doc=doc)


class Struct(_Record):
    """A structure nested inside commands (TableKey, ChunkInfo, ...)."""

    __slots__ = ()


class Command(_Record):
    """A WireCommand. ``TYPE`` is its type code."""

    __slots__ = ()
    TYPE: int = None  # type: ignore[assignment]
    #: Commands without a requestId field report -1 (Hello reports 0), as Java's getRequestId does.
    request_id = -1
    #: True for the error replies (Java's ``isFailure()``).
    is_failure = False


# --------------------------------------------------------------------------------------------
# Nested structures


class TableKey(Struct):
    """A table key. ``key_version`` is ``NO_VERSION`` (Long.MIN_VALUE) for an unconditional key."""

    NO_VERSION = NULL_ATTRIBUTE_VALUE
    NOT_EXISTS = -1
    _fields = ("data", "key_version")
    _defaults = {"key_version": NULL_ATTRIBUTE_VALUE}
    __slots__ = ()


class TableValue(Struct):
    _fields = ("data",)
    __slots__ = ()


class TableEntries(Struct):
    """``entries`` is a list of ``(TableKey, TableValue)`` pairs."""

    _fields = ("entries",)
    _defaults = {"entries": _EMPTY_LIST}
    __slots__ = ()


class TableIteratorArgs(Struct):
    """Iterator arguments of ReadTableKeys / ReadTableEntries. ``prefix_filter`` is deprecated:
    Java never writes it (always length 0), so it always decodes empty."""

    _fields = ("continuation_token", "prefix_filter", "from_key", "to_key")
    _defaults = {"continuation_token": b"", "prefix_filter": b"", "from_key": b"", "to_key": b""}
    __slots__ = ()


class ChunkInfo(Struct):
    _fields = ("length_in_metadata", "length_in_storage", "start_offset", "chunk_name",
               "exists_in_storage")
    __slots__ = ()


class ConditionalAttributeUpdate(Struct):
    """``attribute_update_type``: ``REPLACE`` (1) or ``REPLACE_IF_EQUALS`` (4)."""

    REPLACE = 1
    REPLACE_IF_EQUALS = 4
    _fields = ("attribute_id", "attribute_update_type", "new_value", "old_value")
    __slots__ = ()


class Hello(Command):
    TYPE = -127  # HELLO
    _fields = ("high_version", "low_version")
    __slots__ = ()


class Padding(Command):
    TYPE = -1  # PADDING
    _fields = ("length",)
    __slots__ = ()


class PartialEvent(Command):
    TYPE = -2  # PARTIAL_EVENT
    _fields = ("data",)
    __slots__ = ()


class FlushToStorage(Command):
    TYPE = -3  # FLUSH_TO_STORAGE
    _fields = ("container_id", "delegation_token", "request_id")
    __slots__ = ()


class StorageFlushed(Command):
    TYPE = -4  # FLUSHED_TO_STORAGE
    _fields = ("request_id",)
    __slots__ = ()


class ListStorageChunks(Command):
    TYPE = -5  # LIST_STORAGE_CHUNKS
    _fields = ("segment", "delegation_token", "request_id")
    __slots__ = ()


class StorageChunksListed(Command):
    TYPE = -6  # STORAGE_CHUNKS_LISTED
    _fields = ("request_id", "chunks")
    __slots__ = ()


class Event(Command):
    TYPE = 0  # EVENT
    _fields = ("data",)
    __slots__ = ()


class SetupAppend(Command):
    TYPE = 1  # SETUP_APPEND
    _fields = ("request_id", "writer_id", "segment", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class AppendSetup(Command):
    TYPE = 2  # APPEND_SETUP
    _fields = ("request_id", "segment", "writer_id", "last_event_number")
    __slots__ = ()


class AppendBlock(Command):
    TYPE = 3  # APPEND_BLOCK
    _fields = ("writer_id", "data")
    __slots__ = ()


class AppendBlockEnd(Command):
    TYPE = 4  # APPEND_BLOCK_END
    _fields = ("writer_id", "size_of_whole_events", "data", "num_events", "last_event_number", "request_id")
    _defaults = {"request_id": -1}
    __slots__ = ()


class ConditionalAppend(Command):
    TYPE = 5  # CONDITIONAL_APPEND
    _fields = ("writer_id", "event_number", "expected_offset", "event", "request_id")
    _defaults = {"request_id": -1}
    __slots__ = ()


class ConditionalBlockEnd(Command):
    TYPE = 89  # CONDITIONAL_BLOCK_END
    _fields = ("writer_id", "event_number", "expected_offset", "data", "request_id")
    __slots__ = ()


class DataAppended(Command):
    TYPE = 7  # DATA_APPENDED
    _fields = ("request_id", "writer_id", "event_number", "previous_event_number", "current_segment_write_offset")
    _defaults = {"previous_event_number": -1, "current_segment_write_offset": -1}
    __slots__ = ()


class ConditionalCheckFailed(Command):
    TYPE = 8  # CONDITIONAL_CHECK_FAILED
    _fields = ("writer_id", "event_number", "request_id")
    _defaults = {"request_id": -1}
    __slots__ = ()


class ReadSegment(Command):
    TYPE = 9  # READ_SEGMENT
    _fields = ("segment", "offset", "suggested_length", "delegation_token", "request_id")
    _defaults = {"delegation_token": "", "request_id": -1}
    __slots__ = ()


class SegmentRead(Command):
    TYPE = 10  # SEGMENT_READ
    _fields = ("segment", "offset", "at_tail", "end_of_segment", "data", "request_id")
    _defaults = {"data": b"", "request_id": -1}
    __slots__ = ()


class GetStreamSegmentInfo(Command):
    TYPE = 11  # GET_STREAM_SEGMENT_INFO
    _fields = ("request_id", "segment_name", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class StreamSegmentInfo(Command):
    TYPE = 12  # STREAM_SEGMENT_INFO
    _fields = ("request_id", "segment_name", "exists", "is_sealed", "is_deleted", "last_modified", "write_offset", "start_offset")
    _defaults = {"start_offset": 0}
    __slots__ = ()


class CreateSegment(Command):
    TYPE = 20  # CREATE_SEGMENT
    _fields = ("request_id", "segment", "scale_type", "target_rate", "delegation_token", "rollover_size_bytes")
    _defaults = {"delegation_token": "", "rollover_size_bytes": 0}
    __slots__ = ()


class SegmentCreated(Command):
    TYPE = 21  # SEGMENT_CREATED
    _fields = ("request_id", "segment")
    __slots__ = ()


class SealSegment(Command):
    TYPE = 28  # SEAL_SEGMENT
    _fields = ("request_id", "segment", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentSealed(Command):
    TYPE = 29  # SEGMENT_SEALED
    _fields = ("request_id", "segment")
    __slots__ = ()


class DeleteSegment(Command):
    TYPE = 30  # DELETE_SEGMENT
    _fields = ("request_id", "segment", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentDeleted(Command):
    TYPE = 31  # SEGMENT_DELETED
    _fields = ("request_id", "segment")
    __slots__ = ()


class UpdateSegmentPolicy(Command):
    TYPE = 32  # UPDATE_SEGMENT_POLICY
    _fields = ("request_id", "segment", "scale_type", "target_rate", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentPolicyUpdated(Command):
    TYPE = 33  # SEGMENT_POLICY_UPDATED
    _fields = ("request_id", "segment")
    __slots__ = ()


class GetSegmentAttribute(Command):
    TYPE = 34  # GET_SEGMENT_ATTRIBUTE
    _fields = ("request_id", "segment_name", "attribute_id", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentAttribute(Command):
    TYPE = 35  # SEGMENT_ATTRIBUTE
    _fields = ("request_id", "value")
    __slots__ = ()


class UpdateSegmentAttribute(Command):
    TYPE = 36  # UPDATE_SEGMENT_ATTRIBUTE
    _fields = ("request_id", "segment_name", "attribute_id", "new_value", "expected_value", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentAttributeUpdated(Command):
    TYPE = 37  # SEGMENT_ATTRIBUTE_UPDATED
    _fields = ("request_id", "success")
    __slots__ = ()


class TruncateSegment(Command):
    TYPE = 38  # TRUNCATE_SEGMENT
    _fields = ("request_id", "segment", "truncation_offset", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentTruncated(Command):
    TYPE = 39  # SEGMENT_TRUNCATED
    _fields = ("request_id", "segment")
    __slots__ = ()


class CreateTransientSegment(Command):
    TYPE = 40  # CREATE_TRANSIENT_SEGMENT
    _fields = ("request_id", "writer_id", "parent_segment", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class LocateOffset(Command):
    TYPE = 41  # LOCATE_OFFSET
    _fields = ("request_id", "segment", "target_offset", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class OffsetLocated(Command):
    TYPE = 42  # OFFSET_LOCATED
    _fields = ("request_id", "segment", "offset")
    __slots__ = ()


class WrongHost(Command):
    TYPE = 50  # WRONG_HOST
    _fields = ("request_id", "segment", "correct_host", "server_stack_trace")
    _defaults = {"correct_host": "", "server_stack_trace": ""}
    __slots__ = ()


class SegmentIsSealed(Command):
    TYPE = 51  # SEGMENT_IS_SEALED
    _fields = ("request_id", "segment", "server_stack_trace", "offset")
    _defaults = {"server_stack_trace": "", "offset": -1}
    __slots__ = ()


class SegmentAlreadyExists(Command):
    TYPE = 52  # SEGMENT_ALREADY_EXISTS
    _fields = ("request_id", "segment", "server_stack_trace")
    _defaults = {"server_stack_trace": ""}
    __slots__ = ()


class NoSuchSegment(Command):
    TYPE = 53  # NO_SUCH_SEGMENT
    _fields = ("request_id", "segment", "server_stack_trace", "offset")
    _defaults = {"server_stack_trace": "", "offset": -1}
    __slots__ = ()


class InvalidEventNumber(Command):
    TYPE = 55  # INVALID_EVENT_NUMBER
    _fields = ("writer_id", "request_id", "server_stack_trace", "event_number")
    _defaults = {"server_stack_trace": "", "event_number": -1}
    __slots__ = ()


class SegmentIsTruncated(Command):
    TYPE = 56  # SEGMENT_IS_TRUNCATED
    _fields = ("request_id", "segment", "start_offset", "server_stack_trace", "offset")
    _defaults = {"server_stack_trace": "", "offset": -1}
    __slots__ = ()


class OperationUnsupported(Command):
    TYPE = 57  # OPERATION_UNSUPPORTED
    _fields = ("request_id", "operation_name", "server_stack_trace")
    _defaults = {"server_stack_trace": ""}
    __slots__ = ()


class MergeSegments(Command):
    TYPE = 58  # MERGE_SEGMENTS
    _fields = ("request_id", "target", "source", "delegation_token", "attribute_updates")
    _defaults = {"delegation_token": "", "attribute_updates": _EMPTY_LIST}
    __slots__ = ()


class SegmentsMerged(Command):
    TYPE = 59  # SEGMENTS_MERGED
    _fields = ("request_id", "target", "source", "new_target_write_offset")
    _defaults = {"new_target_write_offset": -1}
    __slots__ = ()


class AuthTokenCheckFailed(Command):
    TYPE = 60  # AUTH_TOKEN_CHECK_FAILED
    _fields = ("request_id", "server_stack_trace", "error_code")
    _defaults = {"server_stack_trace": "", "error_code": -1}
    __slots__ = ()


class ErrorMessage(Command):
    TYPE = 61  # ERROR_MESSAGE
    _fields = ("request_id", "segment", "message", "error_code")
    _defaults = {"error_code": -1}
    __slots__ = ()


class GetTableSegmentInfo(Command):
    TYPE = 68  # GET_TABLE_SEGMENT_INFO
    _fields = ("request_id", "segment_name", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class TableSegmentInfo(Command):
    TYPE = 69  # TABLE_SEGMENT_INFO
    _fields = ("request_id", "segment_name", "start_offset", "length", "entry_count", "key_length")
    __slots__ = ()


class CreateTableSegment(Command):
    TYPE = 70  # CREATE_TABLE_SEGMENT
    _fields = ("request_id", "segment", "sorted_deprecated", "key_length", "delegation_token", "rollover_size_bytes")
    _defaults = {"sorted_deprecated": False, "key_length": 0, "delegation_token": "", "rollover_size_bytes": 0}
    __slots__ = ()


class DeleteTableSegment(Command):
    TYPE = 71  # DELETE_TABLE_SEGMENT
    _fields = ("request_id", "segment", "must_be_empty", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class UpdateTableEntries(Command):
    TYPE = 74  # UPDATE_TABLE_ENTRIES
    _fields = ("request_id", "segment", "delegation_token", "table_entries", "table_segment_offset")
    _defaults = {"table_segment_offset": -1}
    __slots__ = ()


class TableEntriesUpdated(Command):
    TYPE = 75  # TABLE_ENTRIES_UPDATED
    _fields = ("request_id", "updated_versions")
    __slots__ = ()


class RemoveTableKeys(Command):
    TYPE = 76  # REMOVE_TABLE_KEYS
    _fields = ("request_id", "segment", "delegation_token", "keys", "table_segment_offset")
    _defaults = {"table_segment_offset": -1}
    __slots__ = ()


class TableKeysRemoved(Command):
    TYPE = 77  # TABLE_KEYS_REMOVED
    _fields = ("request_id", "segment")
    __slots__ = ()


class ReadTable(Command):
    TYPE = 78  # READ_TABLE
    _fields = ("request_id", "segment", "delegation_token", "keys")
    __slots__ = ()


class TableRead(Command):
    TYPE = 79  # TABLE_READ
    _fields = ("request_id", "segment", "entries")
    __slots__ = ()


class TableSegmentNotEmpty(Command):
    TYPE = 80  # TABLE_SEGMENT_NOT_EMPTY
    _fields = ("request_id", "segment", "server_stack_trace")
    _defaults = {"server_stack_trace": ""}
    __slots__ = ()


class TableKeyDoesNotExist(Command):
    TYPE = 81  # TABLE_KEY_DOES_NOT_EXIST
    _fields = ("request_id", "segment", "server_stack_trace")
    _defaults = {"server_stack_trace": ""}
    __slots__ = ()


class TableKeyBadVersion(Command):
    TYPE = 82  # TABLE_KEY_BAD_VERSION
    _fields = ("request_id", "segment", "server_stack_trace")
    _defaults = {"server_stack_trace": ""}
    __slots__ = ()


class ReadTableKeys(Command):
    TYPE = 83  # READ_TABLE_KEYS
    _fields = ("request_id", "segment", "delegation_token", "suggested_key_count", "args")
    __slots__ = ()


class TableKeysRead(Command):
    TYPE = 84  # TABLE_KEYS_READ
    _fields = ("request_id", "segment", "keys", "continuation_token")
    __slots__ = ()


class ReadTableEntries(Command):
    TYPE = 85  # READ_TABLE_ENTRIES
    _fields = ("request_id", "segment", "delegation_token", "suggested_entry_count", "args")
    __slots__ = ()


class TableEntriesRead(Command):
    TYPE = 86  # TABLE_ENTRIES_READ
    _fields = ("request_id", "segment", "entries", "continuation_token")
    __slots__ = ()


class TableEntriesDeltaRead(Command):
    TYPE = 87  # TABLE_ENTRIES_DELTA_READ
    _fields = ("request_id", "segment", "entries", "should_clear", "reached_end", "last_position")
    __slots__ = ()


class ReadTableEntriesDelta(Command):
    TYPE = 88  # READ_TABLE_ENTRIES_DELTA
    _fields = ("request_id", "segment", "delegation_token", "from_position", "suggested_entry_count")
    __slots__ = ()


class MergeSegmentsBatch(Command):
    TYPE = 90  # MERGE_SEGMENTS_BATCH
    _fields = ("request_id", "target_segment_id", "source_segment_ids", "delegation_token")
    _defaults = {"delegation_token": ""}
    __slots__ = ()


class SegmentsBatchMerged(Command):
    TYPE = 91  # SEGMENTS_BATCH_MERGED
    _fields = ("request_id", "target", "sources", "new_target_write_offset")
    __slots__ = ()


class KeepAlive(Command):
    TYPE = 100  # KEEP_ALIVE
    _fields = ()
    __slots__ = ()
    # 



# --------------------------------------------------------------------------------------------
# Constants carried as integers, and registries

AuthTokenCheckFailed.UNSPECIFIED = -1
AuthTokenCheckFailed.TOKEN_CHECK_FAILED = 0
AuthTokenCheckFailed.TOKEN_EXPIRED = 1
AuthTokenCheckFailed.is_token_expired = property(lambda self: self.error_code == 1)
ErrorMessage.UNSPECIFIED = -1
ErrorMessage.ILLEGAL_ARGUMENT_EXCEPTION = 0
#: Scale types of CreateSegment / UpdateSegmentPolicy.
NO_SCALE, IN_KBYTES_PER_SEC, IN_EVENTS_PER_SEC = 0, 1, 2
Hello.request_id = 0

for _cls in (WrongHost, SegmentIsSealed, SegmentAlreadyExists, NoSuchSegment, InvalidEventNumber,
             SegmentIsTruncated, OperationUnsupported, AuthTokenCheckFailed, ErrorMessage,
             TableSegmentNotEmpty, TableKeyDoesNotExist, TableKeyBadVersion):
    _cls.is_failure = True
del _cls

#: type code -> command class, for all 70 codes (EVENT, code 0, is never a frame of its own).
COMMAND_TYPES = {cls.TYPE: cls for cls in Command.__subclasses__()}
assert len(COMMAND_TYPES) == 70, len(COMMAND_TYPES)


def command_class(type_code: int):
    """The class for a type code, or None if the code is not assigned."""
    return COMMAND_TYPES.get(type_code)


def hello_mismatch(hello: Hello) -> str | None:
    """Why a peer that sent ``hello`` cannot talk to this side, or None if it can.

    The one compatibility test of a Hello, for the client's connections and request clients and
    for the embedded server alike (docs/protocol.md §1.3, Java's ``FlowHandler.hello``): a peer is
    incompatible when its lowest version is above our :data:`WIRE_VERSION` or its highest is
    below our :data:`OLDEST_COMPATIBLE_VERSION`. The reason reads after the peer's name:
    ``f"{peer} {reason}"``.
    """
    if hello.low_version > WIRE_VERSION or hello.high_version < OLDEST_COMPATIBLE_VERSION:
        return (f"speaks wire versions {hello.low_version}..{hello.high_version}; this side "
                f"speaks {OLDEST_COMPATIBLE_VERSION}..{WIRE_VERSION}")
    return None


__all__ += sorted(cls.__name__ for cls in COMMAND_TYPES.values())
__all__ += ["TableKey", "TableValue", "TableEntries", "TableIteratorArgs", "ChunkInfo",
            "ConditionalAttributeUpdate", "NO_SCALE", "IN_KBYTES_PER_SEC", "IN_EVENTS_PER_SEC"]
