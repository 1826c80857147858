"""The `jaxmem` command line: each subcommand parses its options into a settings object and
calls its driver in `jaxmem._experiments`."""

import argparse
import shlex
import sys

import jax

from .._distributed import enable_compilation_cache, init_distributed, launched_locally
from . import approx, data, demo, memory, plateau, report, stability, train


def main(argv=None) -> int:
    # The CLI produces theory-grade numbers: float64 always (the library warns when it is off).
    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()
    init_distributed()
    parser = argparse.ArgumentParser(
        prog="jaxmem", description="Simulate, measure and see the curse of memory in linear RNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    plateau.add_parser(sub)
    demo.add_parser(sub)
    approx.add_parser(sub)
    report.add_parser(sub)
    stability.add_parser(sub)
    data.add_parser(sub)
    train.add_parser(sub)
    memory.add_parser(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError) as e:  # StoreError is a ValueError: nothing was overwritten
        print(f"jaxmem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: one line, not a traceback
        print(f"jaxmem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not launched_locally():  # with --processes N the launching process says it once
            resume = shlex.join(["jaxmem", *args.argv])
            print(f"\njaxmem {args.command}: interrupted; the rows finished so far are in the output folder. "
                  f"To resume: {resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
