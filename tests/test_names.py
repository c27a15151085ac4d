"""One name, one thing: no two modules of the package define different classes under the same
name (as ``pravega_wire.errors.SegmentSealedError`` and the store's storage error once did), so
that an import, a traceback or a search can never mean the wrong one."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pravega_wire


#: Modules whose classes share names with others on purpose: the blocking facade is named after
#: the asyncio classes it wraps; a pure twin ``x_py`` after its compiled twin ``x``.
FACADES = ("pravega_wire.sync",)

#: Known clashes left to the modules' owners (each one a gap, listed so that it stays visible):
#: the controller client's ``Transaction`` record is the writer's ``TransactionInfo``. And on
#: purpose: ``TableKey`` is both the wire record (``commands``) and a key-value table's key
#: (``client.kvt``), as Java has ``WireCommands.TableKey`` and ``io.pravega.client.tables.TableKey``.
KNOWN = {"Transaction", "TableKey"}


def _modules():
    for info in pkgutil.walk_packages(pravega_wire.__path__, "pravega_wire."):
        name = info.name
        if name.endswith("__main__") or name.startswith("pravega_wire._proto"):
            continue  # runs a server when imported; generated code
        yield importlib.import_module(name)


def test_no_two_classes_of_the_package_share_a_name():
    defined: dict[str, set[str]] = {}
    for module in _modules():
        if module.__name__ in FACADES:
            continue
        home = module.__name__.removesuffix("_py")  # a twin pair is one home
        for attribute, value in vars(module).items():
            if (inspect.isclass(value) and value.__module__ == module.__name__
                    and attribute == value.__name__ and not attribute.startswith("_")):
                defined.setdefault(attribute, set()).add(home)
    clashes = {name: sorted(homes) for name, homes in defined.items() if len(homes) > 1}
    assert set(clashes) <= KNOWN, f"classes sharing a name: {clashes}"
    assert {"FlowListener", "FlowRelay", "SealedSegmentError", "SegmentSealedError"} <= \
        set(defined)  # the walk saw the modules the renames touched


def test_renamed_names_stay_importable_as_deprecated_aliases():
    from pravega_wire.client import _common
    from pravega_wire.server import storage

    assert _common.FlowListener is _common.FlowRelay
    assert storage.SegmentSealedError is storage.SealedSegmentError
    assert storage.BadOffsetError is storage.UnexpectedOffsetError
    assert storage.WrongSegmentTypeError is storage.SegmentTypeMismatchError
