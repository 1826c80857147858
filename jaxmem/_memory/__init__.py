"""Memory: memory functions of kernels and models, kernels estimated from data, the decay class,
and the perturbation test of stable approximation."""

from ._decay import DecayClass as DecayClass, decay_class as decay_class
from ._estimate import (
    KernelEstimate as KernelEstimate,
    estimate_kernel as estimate_kernel,
    exp_basis_outputs as exp_basis_outputs,
    least_squares_kernel as least_squares_kernel,
)
from ._function import memory_function as memory_function
from ._stability import (
    Stability as Stability,
    perturbation_test as perturbation_test,
    perturbed_error as perturbed_error,
    perturbed_errors as perturbed_errors,
)
