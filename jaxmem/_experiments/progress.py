"""Progress of long work: a tqdm bar on a terminal, one plain line per finished batch elsewhere."""

import sys
import time

from tqdm.auto import tqdm


def _seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"


class Progress:
    """`with Progress(total, "sweep") as bar: bar.update(k, note, work=w)` — prints to stderr.

    Counts finished items out of `total`, and estimates the time left from the *work* done
    rather than the items: each item may carry a predicted cost (`work`, default 1 per item;
    `total_work` is their sum), so that a queue of unequal items (plateaus whose length grows
    exponentially with the lag) gets an honest estimate. On a terminal it draws a tqdm bar,
    refreshed by `tick` between updates; elsewhere (CI logs, pipes) it prints one plain line
    per update.
    """

    def __init__(self, total: int, label: str, stream=None, *, total_work=None):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.total_work = float(self.total if total_work is None else total_work)
        self.work = 0.0
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None

    def __enter__(self):
        if self.tty:
            self.bar = tqdm(total=self.total, desc=self.label, file=self.stream, unit="config", dynamic_ncols=True,
                            bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed} elapsed, {postfix}]")
            self.bar.set_postfix_str("~? left", refresh=True)
        else:
            self._line("")
        return self

    def left(self) -> float:
        """Seconds left, from the work done so far (nan before any)."""
        elapsed = time.perf_counter() - self.start
        if self.work <= 0:
            return float("nan")
        return max(elapsed * (self.total_work - self.work) / self.work, 0.0)

    def update(self, n: int = 1, note: str = "", *, work=None):
        """`n` more items finished, with predicted cost `work` (default `n`)."""
        self.done = min(self.done + n, self.total)
        self.work = min(self.work + (n if work is None else work), self.total_work)
        if self.bar is not None:
            self.bar.update(n)
            self.tick(note)
        else:
            self._line(note)

    def tick(self, note: str = ""):
        """Refresh the bar (on a terminal) with the item in progress."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"~{_seconds(self.left())} left {note}".rstrip(), refresh=True)

    def _line(self, note):
        elapsed = time.perf_counter() - self.start
        left = self.left()
        eta = "?" if left != left else f"{left:.0f}s"
        self.stream.write(f"{self.label} {self.done}/{self.total} {elapsed:.0f}s elapsed, ~{eta} left {note}".rstrip()
                          + "\n")
        self.stream.flush()

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
