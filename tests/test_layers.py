"""The package's layering (`.importlinter`): kernels → models → loss → dynamics and
approximation → experiments → cli, with no import against that direction (lazy imports count)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_layers_are_kept():
    code = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(config_filename='.importlinter'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def test_a_broken_layer_is_reported(tmp_path):
    # The check can fail: a contract that puts the kernels above the CLI is broken.
    config = tmp_path / "bad.ini"
    config.write_text("[importlinter]\nroot_package = jaxmem\n\n[importlinter:contract:bad]\nname = upside down\n"
                      "type = layers\nlayers =\n    jaxmem._kernels\n    jaxmem._cli\n")
    code = f"from importlinter.cli import lint_imports; raise SystemExit(lint_imports(config_filename={str(config)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout
