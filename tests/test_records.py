"""The record constructors: the compiled ``_records.RecordNew`` (and the classes' fast call)
against the generated Python ``__new__`` of ``commands``, on the same calls, for every record
class: identical instances, identical errors.

Outside pure mode the compiled module must load and be in use (the cases fail otherwise);
with ``PRAVEGA_WIRE_NO_EXTENSIONS=1`` the compiled cases are skipped.
"""

from __future__ import annotations

import inspect
import pickle
import re
import sys
import uuid

import pytest
from conftest import load_twin
from hypothesis import given, settings
from hypothesis import strategies as st

from pravega_wire import commands as C
from pravega_wire.codec import pure_requested



class Gap(C.Struct):
    """No protocol record has a required field after a defaulted one; this one does."""

    _fields = ("a", "b", "c", "d")
    _defaults = {"b": C._EMPTY_LIST}
    __slots__ = ()


RECORDS = sorted([*C.COMMAND_TYPES.values(), C.TableKey, C.TableValue, C.TableEntries,
                  C.TableIteratorArgs, C.ChunkInfo, C.ConditionalAttributeUpdate, Gap],
                 key=lambda cls: cls.__name__)


@pytest.fixture
def records():
    return load_twin("_records", "compiled")


def _defaults(cls) -> dict:
    return cls.__dict__.get("_defaults", {})


def pure_new(cls):
    return C._python_new(cls, cls._fields, _defaults(cls))


def compiled_new(records, cls):
    return records.RecordNew(cls, cls._fields, _defaults(cls), C._MISSING, C._EMPTY_LIST)


MARKER = "<the _EMPTY_LIST marker itself>"


def outcome(fn, *args, **kwargs):
    """What a call gives: the instance's type and items, or the error's type and message."""
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the error itself is the outcome
        # Python 3.13 appends a spelling hint to a Python function's "unexpected keyword
        # argument" error ("... 'request'. Did you mean 'request_id'?"); the compiled
        # constructor names the same argument without the interpreter's guess.
        return ("raised", type(e), re.sub(r"\. Did you mean '\w+'\?$", "", str(e)))
    # the "new empty list" marker is kept only where it is not a field's default
    return ("made", type(result),
            tuple(MARKER if value is C._EMPTY_LIST else value for value in result))


def same_everywhere(records, cls, args, kwargs, target=None):
    """The pure function, the RecordNew and (for the class's own call) the class agree."""
    target = cls if target is None else target
    expected = outcome(pure_new(cls), target, *args, **kwargs)
    assert outcome(compiled_new(records, cls), target, *args, **kwargs) == expected
    if target is cls:
        assert outcome(cls, *args, **kwargs) == expected
    return expected


def test_compiled_construction_is_in_use(records):
    assert C.CONSTRUCTION == "compiled"
    assert records.IMPLEMENTATION == "compiled"
    for cls in RECORDS:
        new = cls.__dict__["__new__"]
        assert isinstance(new, records.RecordNew) and new.record is cls
        assert new.__qualname__ == f"{cls.__name__}.__new__" and new.__name__ == "__new__"


def test_pure_mode_keeps_the_python_constructors():
    if not pure_requested():
        pytest.skip("only in pure mode (PRAVEGA_WIRE_NO_EXTENSIONS=1)")
    assert C.CONSTRUCTION == "pure"
    assert all(inspect.isfunction(cls.__dict__["__new__"]) for cls in RECORDS)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_every_record_all_positional_and_all_by_keyword(records, cls):
    values = [f"v{i}" for i in range(len(cls._fields))]
    made = same_everywhere(records, cls, values, {})
    assert made == ("made", cls, tuple(values))
    assert same_everywhere(records, cls, [], dict(zip(cls._fields, values))) == made
    assert cls(*values) == pure_new(cls)(cls, *values)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_every_record_with_only_what_is_required(records, cls):
    defaults = _defaults(cls)
    required = [name for name in cls._fields if name not in defaults]
    made = same_everywhere(records, cls, [], {name: 7 for name in required})
    assert made[0] == "made"
    for name, value in zip(cls._fields, made[2]):
        assert value == (7 if name in required else defaults[name])


ERROR_CALLS = [
    (C.GetSegmentAttribute, (1, "s", 2, "", 5), {},
     "GetSegmentAttribute.__new__() takes from 4 to 5 positional arguments but 6 were given"),
    (C.GetSegmentAttribute, (1, "s", 2, "", 5), {"request_id": 1},
     "GetSegmentAttribute.__new__() got multiple values for argument 'request_id'"),
    (C.GetSegmentAttribute, (1,), {"_cls": 3},
     "GetSegmentAttribute.__new__() got multiple values for argument '_cls'"),
    (C.GetSegmentAttribute, (), {},
     "GetSegmentAttribute.__new__() missing 3 required positional arguments: 'request_id', "
     "'segment_name', and 'attribute_id'"),
    (C.GetSegmentAttribute, (1,), {"attribute_id": 2},
     "GetSegmentAttribute.__new__() missing 1 required positional argument: 'segment_name'"),
    (C.SegmentCreated, (), {},
     "SegmentCreated.__new__() missing 2 required positional arguments: 'request_id' and "
     "'segment'"),
    (C.Padding, (1, 2), {}, "Padding.__new__() takes 2 positional arguments but 3 were given"),
    (C.Padding, (), {"x": 2}, "Padding.__new__() got an unexpected keyword argument 'x'"),
    (C.KeepAlive, (1,), {}, "KeepAlive.__new__() takes 1 positional argument but 2 were given"),
    (C.KeepAlive, (), {"length": 1},
     "KeepAlive.__new__() got an unexpected keyword argument 'length'"),
    # a required field after defaulted ones (Java's field order)
    (Gap, (1,), {"d": 4}, "Gap() missing required argument: 'c'"),
    (Gap, (1, 2, C._MISSING, 4), {}, "Gap() missing required argument: 'c'"),
    (Gap, (1, 2, 3), {}, "Gap() missing required argument: 'd'"),
    (Gap, (), {"b": 2, "c": 3, "d": 4},
     "Gap.__new__() missing 1 required positional argument: 'a'"),
    (Gap, (1, 2, 3, 4, 5), {}, "Gap.__new__() takes from 2 to 5 positional arguments but 6 were "
     "given"),
]


@pytest.mark.parametrize("cls, args, kwargs, message", ERROR_CALLS)
def test_errors_are_the_interpreters(records, cls, args, kwargs, message):
    assert same_everywhere(records, cls, args, kwargs) == ("raised", TypeError, message)


def test_calling_new_itself(records):
    cls = C.GetSegmentAttribute
    assert same_everywhere(records, cls, (), {}, target=None)[0] == "raised"
    for fn in (pure_new(cls), compiled_new(records, cls), cls.__new__):
        assert outcome(fn) == outcome(pure_new(cls))
        assert outcome(fn)[2] == (
            "GetSegmentAttribute.__new__() missing 4 required positional arguments: '_cls', "
            "'request_id', 'segment_name', and 'attribute_id'")
        assert outcome(fn, _cls=cls, request_id=1, segment_name="s", attribute_id=2) == (
            "made", cls, (1, "s", 2, ""))


@pytest.mark.parametrize("target", [int, 5, tuple, C.SegmentCreated],
                         ids=["not-a-tuple", "not-a-type", "tuple", "another-record"])
def test_a_class_that_is_not_the_records_gets_what_tuple_new_gives(records, target):
    expected = same_everywhere(records, C.GetSegmentAttribute, (1, "s", 2), {}, target=target)
    if target in (int, 5):
        assert expected[:2] == ("raised", TypeError)
    else:
        assert expected[:2] == ("made", target)


def test_empty_list_defaults_are_fresh(records):
    for new in (pure_new(C.MergeSegments), compiled_new(records, C.MergeSegments),
                C.MergeSegments.__new__):
        a = new(C.MergeSegments, 1, "t", "s")
        b = new(C.MergeSegments, 1, "t", "s", attribute_updates=C._EMPTY_LIST)
        assert a.attribute_updates == b.attribute_updates == []
        assert a.attribute_updates is not b.attribute_updates
        assert type(a.attribute_updates) is list
    a, b = C.TableEntries(), C.TableEntries()
    a.entries.append(1)
    assert b.entries == [] and C._EMPTY_LIST == []
    given = [1]
    assert C.TableEntries(given).entries is given


def test_subclasses(records):
    class Traced(C.SetupAppend):
        pass

    class Extended(C.Struct):
        _fields = ("a", "b", "c")
        _defaults = {"b": 2}

    writer = uuid.UUID(int=3)
    made = Traced(1, writer, "s")
    assert type(made) is Traced and made.segment == "s" and made.delegation_token == ""
    assert outcome(Traced, 1) == outcome(pure_new(C.SetupAppend), Traced, 1)
    assert isinstance(Extended.__dict__["__new__"], records.RecordNew)
    assert same_everywhere(records, Extended, (1,), {"c": 3}) == ("made", Extended, (1, 2, 3))
    assert same_everywhere(records, Extended, (1,), {})[2] == (
        "Extended() missing required argument: 'c'")

    class WithDict(C.SegmentCreated):  # no __slots__: instances get a __dict__
        pass

    made = WithDict(1, "s")
    made.note = "x"
    assert made == WithDict(1, "s") and made.note == "x" and tuple(made) == (1, "s")


def test_a_class_changed_after_creation_is_called_the_ordinary_way(records):
    class Later(C.Struct):
        _fields = ("a",)

    seen = []

    def init(self, *args, **kwargs):
        seen.append((tuple(self), args, kwargs))

    Later.__init__ = init
    assert Later(1) == Later(a=1) and seen == [((1,), (1,), {}), ((1,), (), {"a": 1})]

    def other_new(cls, *args, **kwargs):
        return tuple.__new__(cls, ("other",))

    Later.__new__ = other_new
    assert tuple(Later(1, 2, x=3)) == ("other",)


def test_pickle_signature_and_repr(records):
    made = C.UpdateTableEntries(1, "s", "", C.TableEntries([]), 5)
    assert pickle.loads(pickle.dumps(made)) == made
    new = C.UpdateTableEntries.__new__
    assert pickle.loads(pickle.dumps(new)) is new
    for cls in RECORDS:
        function = inspect.signature(pure_new(cls))  # (_cls, fields...)
        assert inspect.signature(cls.__dict__["__new__"]) == function
        assert inspect.signature(cls) == function.replace(
            parameters=list(function.parameters.values())[1:])
    assert "UpdateTableEntries.__new__" in repr(new)


def test_no_reference_is_leaked_or_lost(records):
    # The key is made at run time: a constant like "s" * 40 is interned, and interned strings
    # are immortal from Python 3.12 on (their reference count never moves).
    value, key = object(), "".join(["s"] * 40)
    before = sys.getrefcount(value), sys.getrefcount(key)
    for _ in range(1000):
        C.GetSegmentAttribute(1, key, value)
        C.GetSegmentAttribute(request_id=1, segment_name=key, attribute_id=value,
                              delegation_token=key)
        C.GetSegmentAttribute.__new__(C.GetSegmentAttribute, 1, key, value)
        with pytest.raises(TypeError):
            C.GetSegmentAttribute(1, key, value, key, value)
        with pytest.raises(TypeError):
            C.GetSegmentAttribute(1, key, request_id=value)
        made = C.MergeSegments(1, key, value)
    assert (sys.getrefcount(value), sys.getrefcount(key)) == (before[0] + 1, before[1] + 1)
    del made
    assert (sys.getrefcount(value), sys.getrefcount(key)) == before


def test_install_new_rejects_what_it_cannot_build(records):
    with pytest.raises(ValueError, match="at most"):
        records.RecordNew(C.Struct, tuple(f"f{i}" for i in range(records.MAX_FIELDS + 1)), {},
                          C._MISSING, C._EMPTY_LIST)
    with pytest.raises(TypeError, match="not a tuple subclass"):
        records.RecordNew(int, ("a",), {}, C._MISSING, C._EMPTY_LIST)
    with pytest.raises(TypeError, match="field names must be str"):
        records.RecordNew(C.Struct, (1,), {}, C._MISSING, C._EMPTY_LIST)
    with pytest.raises(ValueError, match="unknown fields"):
        records.RecordNew(C.Struct, ("a",), {"b": 1}, C._MISSING, C._EMPTY_LIST)


VALUES = st.sampled_from([0, -1, "", "x", b"y", None, C._MISSING, C._EMPTY_LIST, [1]])


@st.composite
def calls(draw):
    """A record class and an argument pattern: some positional values, some keywords (field
    names, ``_cls``, unknown names), right or wrong."""
    cls = draw(st.sampled_from(RECORDS))
    n = len(cls._fields)
    args = draw(st.lists(VALUES, max_size=n + 2))
    names = draw(st.lists(st.sampled_from([*cls._fields, "_cls", "bogus", "request"]),
                          unique=True, max_size=n + 1))
    return cls, args, {name: draw(VALUES) for name in names}


@settings(max_examples=400, deadline=None)
@given(call=calls())
def test_any_argument_pattern_gives_the_same_outcome(call):
    records = load_twin("_records", "compiled")
    cls, args, kwargs = call
    same_everywhere(records, cls, args, kwargs)
