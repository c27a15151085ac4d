"""``python -m pravega_wire.server [options]``: the same as ``pravega-wire serve [options]``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
