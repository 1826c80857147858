"""One vocabulary of outcomes for every result jaxmem returns or writes (`jaxmem.RESULTS`)."""

import equinox as eqx
import numpy as np


class RESULTS(eqx.Enumeration):
    """How a computation ended: carried as `.result` by `FlowResult`, `HittingTimes`,
    `TrainResult` and `Approximation`, and written by name as the `status` column of
    `plateau.csv` and `approx.csv`.

    A threshold that is not reached is an outcome of the measurement, not a failure of the
    solver: `param_not_reached`, `loss_not_reached` and `not_reached` come with `inf` hitting
    times. The remaining members, but `successful`, are failures, and `throw=True` turns them
    into an error carrying the member's message.

    ```python
    import jaxmem
    jaxmem.RESULTS.successful, jaxmem.RESULTS.loss_not_reached
    ```
    """

    successful = ""
    param_not_reached = "The parameters did not move by delta_param within the horizon."
    loss_not_reached = "The loss did not drop by delta_loss within the horizon."
    not_reached = "Neither hitting threshold was reached within the horizon."
    max_steps_reached = "The solver's step budget (max_steps) was exhausted."
    event_not_located = "A hitting time could not be located on the dense output of the step that crossed it."
    nonfinite = "Non-finite values (NaN or inf) appeared."
    not_converged = "The optimiser stopped before its convergence test held."
    solver_failed = "The ODE solver stopped with a failure other than the step budget (see diffrax.RESULTS)."
    diverged = "The training diverged: non-finite values, rates outside their domain, or a loss far above its start."


#: The members that are outcomes of a measurement rather than failures.
NOT_REACHED = ("param_not_reached", "loss_not_reached", "not_reached")
_INDEX_TO_NAME = {int(item._value): key for key, item in RESULTS._name_to_item.items()}


def is_failure(name: str) -> bool:
    """Whether a member name (a CSV `status`) is a failure rather than a measurement."""
    return name != "successful" and name not in NOT_REACHED


def names(result) -> list[str]:
    """The member names (the CSV `status`) of concrete `RESULTS` values (or of their integer
    codes, `result._value`), flattened."""
    codes = result._value if isinstance(result, RESULTS) else result
    return [_INDEX_TO_NAME[int(i)] for i in np.asarray(codes).reshape(-1)]


def name(result) -> str:
    """The member name (the CSV `status`) of one concrete `RESULTS` value."""
    (out,) = names(result)
    return out


def hitting_result(reached_param, reached_loss):
    """The outcome of a hitting-time measurement from its reached flags (traceable)."""
    return RESULTS.where(
        reached_param & reached_loss,
        RESULTS.successful,
        RESULTS.where(
            reached_param,
            RESULTS.loss_not_reached,
            RESULTS.where(reached_loss, RESULTS.param_not_reached, RESULTS.not_reached),
        ),
    )


def failed(result):
    """Whether any of `result` is a failure (not `successful` and not a threshold not reached)."""
    import jax.numpy as jnp

    ok = result == RESULTS.successful
    for key in NOT_REACHED:
        ok = ok | (result == getattr(RESULTS, key))
    return ~jnp.all(ok)


def raise_if_failed(result, throw: bool):
    """With `throw`, raise a `RuntimeError` with the message of a failed concrete result (a
    threshold not reached is an outcome, not a failure). Under a trace the check is compiled in
    with `eqx.error_if`."""
    import jax

    if not throw:
        return
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(result)):
        eqx.error_if(result._value, failed(result), "jaxmem: the computation failed (see its .result).")
        return
    for key in dict.fromkeys(names(result)):
        if key != "successful" and key not in NOT_REACHED:
            raise RuntimeError(f"jaxmem: {key}: {RESULTS._index_to_message[int(getattr(RESULTS, key)._value)]}")
