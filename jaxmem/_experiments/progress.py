"""A small terminal progress bar with an estimate of the time left (no dependency)."""

import sys
import time


class Progress:
    """`with Progress(total, "plateau") as bar: bar.update(k, note)` — prints to stderr.

    On a terminal it redraws one line; elsewhere (CI, pipes) it prints a line per update.
    """

    def __init__(self, total: int, label: str, stream=None):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __enter__(self):
        self._draw("")
        return self

    def update(self, n: int = 1, note: str = ""):
        self.done = min(self.done + n, self.total)
        self._draw(note)

    def _draw(self, note):
        elapsed = time.perf_counter() - self.start
        frac = self.done / self.total
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        width = 24
        bar = "#" * int(round(width * frac)) + "-" * (width - int(round(width * frac)))
        eta_s = "?" if eta != eta else f"{eta:5.0f}s"
        line = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.0f}s elapsed, ~{eta_s} left {note}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __exit__(self, *exc):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        return False
