"""Parsing helpers shared by the subcommands."""

import argparse


def floats(text):
    """A list of numbers: `8,10,12`, `8 10 12` (several arguments) or a range `8:40:2` (inclusive)."""
    out = []
    for part in str(text).replace(",", " ").split():
        if ":" in part:
            bits = [float(b) for b in part.split(":")]
            if len(bits) != 3 or bits[2] <= 0:
                raise argparse.ArgumentTypeError(f"a range is START:STOP:STEP with STEP > 0; got {part!r}.")
            start, stop, step = bits
            n = int(round((stop - start) / step))
            out.extend(start + k * step for k in range(n + 1))
        else:
            try:
                out.append(float(part))
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"not a number: {part!r}.") from e
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
