"""Whether the pure-Python twins were asked for: one definition, read by the modules that pick
an implementation at import (``commands``, ``codec``, ``appends``)."""

from __future__ import annotations

import os

__all__ = ["pure_requested"]


def pure_requested() -> bool:
    """True when ``PRAVEGA_WIRE_NO_EXTENSIONS`` is set to a non-empty value other than ``0``."""
    return os.environ.get("PRAVEGA_WIRE_NO_EXTENSIONS", "") not in ("", "0")
