"""Execute every notebook in notebooks/ end to end in quick mode.

Each notebook is run from its jupytext twin (`notebooks/NN_name.py`) with nbclient in a fresh
kernel. The kernel is "python3" as resolved by the interpreter running pytest: jupyter_client
launches it with this `sys.executable`, so it sees the same environment (the .venv under
`make test`); the test checks that from the notebook's own output. Figures go to a temporary
folder (`JAXMEM_FIG_DIR`) so the committed ones are left alone.
"""

import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
# Modules a notebook needs beyond the committed library (notebook 01 uses the approximation module).
TIMEOUT_PER_CELL = 600


def _outputs(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            yield out.get("text", "") if out.get("output_type") == "stream" else ""


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JAXMEM_QUICK", "1")
    monkeypatch.setenv("JAXMEM_FIG_DIR", str(tmp_path))
    nbformat = pytest.importorskip("nbformat")
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    # Which interpreter ran the kernel: it must be this test's (the environment jaxmem is in).
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel python=' + sys.executable)"))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=TIMEOUT_PER_CELL, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    text = "".join(_outputs(nb))
    assert "QUICK=True" in text
    line = next(s for s in text.splitlines() if s.startswith("kernel python="))
    kernel_python = line.split("python=", 1)[1].strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable), (kernel_python, sys.executable)
    assert "x64=True" in text
    assert list(tmp_path.glob("*.png")), "the notebook saved no figure"
