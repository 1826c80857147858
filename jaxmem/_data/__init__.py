"""Data: sampled input paths and the exact outputs of linear and nonlinear targets."""

from ._inputs import (
    INPUTS as INPUTS,
    ornstein_uhlenbeck as ornstein_uhlenbeck,
    sample_inputs as sample_inputs,
    smooth_signal as smooth_signal,
    white_noise as white_noise,
)
from ._lorenz import (
    STABLE_FORCING as STABLE_FORCING,
    Lorenz96 as Lorenz96,
    outputs as outputs,
)
from ._outputs import (
    apply_filter as apply_filter,
    lag_weights as lag_weights,
    linear_outputs as linear_outputs,
    output_filter as output_filter,
)
