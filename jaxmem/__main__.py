"""`python -m jaxmem ...`: the `jaxmem` command line (also how `--processes N` starts its processes)."""

import sys

from ._cli import main

sys.exit(main())
