"""Interrupts: Ctrl-C (SIGINT) stops a run between two short compiled calls, keeps every finished
row, says how to resume, and the same command then completes the run; a diverged configuration
is written as `diverged`. The runs are real `jaxmem plateau` processes."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, JAXMEM_NO_CACHE="1", JAX_PLATFORMS="cpu", **extra)
    env.pop("XLA_FLAGS", None)
    return env


def _rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _start(argv, **env):
    return subprocess.Popen([sys.executable, "-m", "jaxmem", *argv], cwd=ROOT, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt_after_first_rows(proc, csv_path, timeout=300):
    """Wait until the run has written a row (hang guard `timeout`), then send SIGINT."""
    start = time.monotonic()
    while not _rows(csv_path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout, "no row written"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # a hang guard, not a timing assertion
    return out, err


# gd from L = 20 (~1e6 iterations) down to L = 12, longest first, in two slots: rows arrive
# over several seconds, so an interrupt after the first leaves work unfinished.
ARGV = ["plateau", "--optimizer", "gd", "--lags", "12:20:1", "--batch-size", "2", "--no-progress"]
N_ROWS = 9


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_ctrl_c_keeps_finished_rows_and_the_same_command_resumes(tmp_path, processes):
    out = tmp_path / "run"
    argv = [*ARGV, "--out", str(out), "--processes", str(processes)]
    proc = _start(argv)
    _, err = _interrupt_after_first_rows(proc, out / "plateau.csv")
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "To resume: jaxmem plateau" in err, err[-3000:]
    assert err.count("interrupted") == 1  # said once, by the process the user started
    kept = _rows(out / "plateau.csv")
    assert kept and all(r["status"] in ("successful", "loss_not_reached") for r in kept)
    assert len({r["key"] for r in kept}) == len(kept) < N_ROWS
    # The same command resumes: the kept rows stay as they were, the rest is computed once.
    done = subprocess.run([sys.executable, "-m", "jaxmem", *argv], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming: {len(kept)} of {N_ROWS}" in done.stdout
    rows = _rows(out / "plateau.csv")
    assert rows[: len(kept)] == kept
    assert len(rows) == N_ROWS and len({r["key"] for r in rows}) == N_ROWS
    assert all(r["status"] in ("successful", "loss_not_reached") for r in rows)


@pytest.mark.slow
def test_a_diverged_configuration_is_written_as_diverged(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "jaxmem", "plateau", "--optimizer", "gd", "--lags", "8", "--lr", "10",
                           "--out", str(out), "--no-progress"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _rows(out / "plateau.csv")
    assert row["status"] == "diverged" and row["tau_param"] == "inf" and row["tau_loss"] == "inf"
    assert int(row["steps"]) < 10


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_finished(tmp_path):
    """Fault injection: a run killed (SIGKILL) at random moments — while compiling, just after
    a row, while writing — is completed by the same command, with every row once, none torn,
    and the same numbers as a run never killed."""
    import random

    argv = ["plateau", "--optimizer", "gd", "--lags", "12:20:1", "--batch-size", "2", "--no-progress"]
    n = 9
    clean = tmp_path / "clean"
    ref = subprocess.run([sys.executable, "-m", "jaxmem", *argv, "--out", str(clean)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out, csv_path = tmp_path / "killed", tmp_path / "killed" / "plateau.csv"
    rng = random.Random(0)
    killed_mid_run = 0
    for round_ in range(4):
        proc = _start([*argv, "--out", str(out)])
        if round_ == 0:  # while compiling (no row can be there yet)
            time.sleep(rng.uniform(0.5, 2.0))
        else:  # a random moment after the run's next row appeared
            before, start = len(_rows(csv_path)), time.monotonic()
            while len(_rows(csv_path)) == before and proc.poll() is None and time.monotonic() - start < 600:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            killed_mid_run += len(_rows(csv_path)) < n
            proc.kill()
        proc.communicate(timeout=60)
    assert killed_mid_run >= 2  # the kills really cut runs short
    done = subprocess.run([sys.executable, "-m", "jaxmem", *argv, "--out", str(out)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    text = csv_path.read_text()
    rows, expected = _rows(csv_path), _rows(clean / "plateau.csv")
    assert text.endswith("\n") and text.count("\n") == len(rows) + 1
    assert len(rows) == len(expected) == n and len({r["key"] for r in rows}) == n
    fields = ("tau_param", "tau_loss", "steps", "status")
    assert {r["key"]: [r[k] for k in fields] for r in rows} == {r["key"]: [r[k] for k in fields] for r in expected}
