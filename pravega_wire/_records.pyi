"""Type stubs of the compiled record constructors (``_records.pyx``)."""

import inspect
from typing import Any

IMPLEMENTATION: str
MAX_FIELDS: int

class RecordNew:
    """The ``__new__`` of one record class: ``(_cls, *fields)`` with the class's defaults."""

    record: type
    fields: tuple[str, ...]
    __signature__: inspect.Signature
    def __init__(self, record: type, fields: tuple[str, ...], defaults: dict[str, Any],
                 missing: object, empty_list: list[Any]) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

def install_new(record: type, fields: tuple[str, ...], defaults: dict[str, Any],
                missing: object, empty_list: list[Any]) -> RecordNew: ...
