"""Test configuration: float64 and strict dtype promotion, set before anything imports jaxmem."""

import jax

jax.config.update("jax_enable_x64", True)
# The library computes in float64 without relying on implicit dtype promotion.
jax.config.update("jax_numpy_dtype_promotion", "strict")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_caches(monkeypatch):
    """No test reads or writes a persistent cache it did not make: `JAXMEM_NO_CACHE=1` (a test
    of the caches points them at its own folder), and a compilation cache turned on during a
    test (by the command line's `main`) is turned off again after it, so that later tests
    compile afresh instead of loading executables from a shared folder."""
    monkeypatch.setenv("JAXMEM_NO_CACHE", "1")
    yield
    if jax.config.jax_compilation_cache_dir is not None:
        from jax._src import compilation_cache

        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()
