"""Every `python` example in the public API's docstrings runs (the examples are the user's first
contact; a renamed argument or a changed default must not leave them broken)."""

import inspect
import re

import pytest

import jaxmem


def _examples():
    seen, out = set(), []
    for name in sorted(dir(jaxmem)):
        obj = getattr(jaxmem, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        for i, m in enumerate(re.finditer(r"```python\n(.*?)```", inspect.getdoc(obj) or "", re.S)):
            out.append(pytest.param(m.group(1), id=f"{name}-{i}"))
    return out


EXAMPLES = _examples()


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    # `enable_compilation_cache`'s example must not turn on a cache in the home folder.
    monkeypatch.setenv("JAXMEM_NO_CACHE", "1")


def test_the_public_api_has_examples():
    assert len(EXAMPLES) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("code", EXAMPLES)
def test_docstring_example_runs(code):
    exec(compile(code, "<docstring>", "exec"), {})
