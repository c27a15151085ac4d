"""Shared fixtures: every codec test runs against both twins in the same pytest run.

The compiled twin must load unless pure mode was asked for (``PRAVEGA_WIRE_NO_EXTENSIONS=1``):
if it does not, the ``compiled`` cases fail instead of being skipped, so a broken build cannot
pass CI silently.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' own helper modules

from pravega_wire.codec import pure_requested  # noqa: E402

TWINS = ("pure", "compiled")


def load_twin(package_module: str, which: str):
    """The pure module ``<name>_py`` or the compiled ``<name>`` of ``pravega_wire``.

    In pure mode the compiled cases are skipped (with the reason); otherwise a compiled module
    that does not import fails the test.
    """
    if which == "pure":
        return importlib.import_module(f"pravega_wire.{package_module}_py")
    if pure_requested():
        pytest.skip("PRAVEGA_WIRE_NO_EXTENSIONS is set: the compiled twin is not in use")
    try:
        return importlib.import_module(f"pravega_wire.{package_module}")
    except ImportError as e:  # pragma: no cover - a broken build
        pytest.fail(f"the compiled twin pravega_wire.{package_module} did not load: {e}")


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
                     what: str = "condition") -> None:
    """Poll ``predicate`` on the loop until it holds; fail the test after ``timeout`` s (a
    bound against hanging, not a timing assertion). The one polling helper of the tests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


@pytest.fixture(params=TWINS)
def codec(request):
    """The codec twin under test: ``pravega_wire._codec_py`` or ``pravega_wire._codec``."""
    return load_twin("_codec", request.param)


@pytest.fixture
def pure_codec():
    return importlib.import_module("pravega_wire._codec_py")


@pytest.fixture
def compiled_codec():
    return load_twin("_codec", "compiled")
