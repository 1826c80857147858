"""Best width-m approximation of a memory kernel by a diagonal linear RNN, and maps of it."""

from ._fit import (
    NORMS as NORMS,
    RATE_GRIDS as RATE_GRIDS,
    Approximation as Approximation,
    best_approximation as best_approximation,
    check_args as check_args,
    named_rates as named_rates,
    start_rates as start_rates,
)
from ._maps import (
    bisect_widths as bisect_widths,
    error_map as error_map,
    fit_rows as fit_rows,
    map_keys as map_keys,
    width_needed as width_needed,
)
