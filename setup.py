"""Build script: the Cython extensions are optional.

- ``PRAVEGA_WIRE_NO_EXTENSIONS=1``: build nothing; install the pure-Python package.
- No compiler (or a failed compile): warn and install the pure-Python package, unless
  ``PRAVEGA_WIRE_REQUIRE_EXTENSIONS=1``, which makes any failure to build an extension fatal
  (CI sets it).

The .pyx sources are cythonized at build time, so the sdist carries .pyx files, never .c.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("PRAVEGA_WIRE_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("PRAVEGA_WIRE_REQUIRE_EXTENSIONS")

if NO_EXTENSIONS and REQUIRE_EXTENSIONS:
    sys.exit("PRAVEGA_WIRE_NO_EXTENSIONS and PRAVEGA_WIRE_REQUIRE_EXTENSIONS contradict each other")


def _extensions():
    if NO_EXTENSIONS:
        print("pravega-wire: PRAVEGA_WIRE_NO_EXTENSIONS is set: installing the pure-Python codec")
        return []
    here = Path(__file__).parent
    return [
        Extension(f"pravega_wire.{pyx.stem}", [str(pyx.relative_to(here))],
                  extra_compile_args=["-O2"])
        for pyx in sorted((here / "pravega_wire").glob("*.pyx"))
    ]


class OptionalBuildExt(build_ext):
    """setuptools' build_ext cythonizes the .pyx sources itself when Cython is importable (a
    build requirement); a failure downgrades to the pure package unless extensions are required.
    After a failure no extension is installed at all: the ones this run built and any left in the
    build directory by an earlier run are removed, so a failed compile never ships a stale or
    partial set of extensions. Compiler directives live in each .pyx header."""

    failed = None  # why building gave up, once it has

    def run(self):
        try:
            import Cython  # noqa: F401
        except ImportError as e:
            self._give_up(f"Cython is not installed ({e})")
        else:
            try:
                super().run()
            except Exception as e:  # noqa: BLE001 - any compiler/link failure
                self._give_up(str(e))
        if self.failed is not None:
            self._remove_outputs()

    def build_extension(self, ext):
        if self.failed is not None:
            return
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self._give_up(f"{ext.name}: {e}")

    def _give_up(self, why):
        if REQUIRE_EXTENSIONS:
            raise SystemExit(f"pravega-wire: building the compiled codec failed: {why}")
        self.failed = why
        print(f"pravega-wire: WARNING: could not build the compiled codec ({why}); "
              "installing the pure-Python codec", file=sys.stderr)

    def _remove_outputs(self):
        for ext in self.extensions:
            path = Path(self.get_ext_fullpath(ext.name))
            if path.exists():
                print(f"pravega-wire: removing {path}: after a failure no extension is installed",
                      file=sys.stderr)
                path.unlink()


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
