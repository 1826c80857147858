"""Parsing helpers shared by the subcommands."""

import argparse
import math

#: The most numbers one range may give (a typo such as `8:4000000:1` is refused, not expanded).
MAX_RANGE = 100_000


def _number(text):
    try:
        x = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}.") from e
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}.")
    return x


def floats(text):
    """A list of numbers: `8,10,12`, `8 10 12` (several arguments) or a range `8:40:2` (inclusive
    of STOP when a whole number of steps reaches it, never beyond it)."""
    out = []
    for part in str(text).replace(",", " ").split():
        if ":" in part:
            bits = [_number(b) for b in part.split(":")]
            if len(bits) != 3 or bits[2] <= 0:
                raise argparse.ArgumentTypeError(f"a range is START:STOP:STEP with STEP > 0; got {part!r}.")
            start, stop, step = bits
            n = math.floor((stop - start) / step + 1e-9)
            if n < 0 or n >= MAX_RANGE:
                raise argparse.ArgumentTypeError(
                    f"a range START:STOP:STEP needs START <= STOP and at most {MAX_RANGE} values; got {part!r}.")
            out.extend(start + k * step for k in range(n + 1))
        else:
            out.append(_number(part))
    return out


def ints(text):
    """A list of integers, in the forms of `floats`."""
    out = floats(text)
    if any(x != int(x) for x in out):
        raise argparse.ArgumentTypeError(f"expected integers; got {text!r}.")
    return [int(x) for x in out]


def flat(values):
    """`nargs="+"` with a list type gives a list of lists (one per argument); flatten it."""
    return None if values is None else [x for v in values for x in (v if isinstance(v, list) else [v])]
