"""Test configuration: float64 and strict dtype promotion, set before anything imports jaxmem."""

import jax

jax.config.update("jax_enable_x64", True)
# The library computes in float64 without relying on implicit dtype promotion.
jax.config.update("jax_numpy_dtype_promotion", "strict")
