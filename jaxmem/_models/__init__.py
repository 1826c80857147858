"""Sequence models: continuous-time linear RNNs (`AbstractRNN`, `DiagonalRNN`, `LinearRNN`), the
continuous-time nonlinear `ContinuousRNN`, and the discrete-time `DiscreteRNN` and
`DiscreteDiagonalRNN`; every one evaluates a sampled input path with `predict(xs, dt)`."""

from ._base import AbstractSequenceModel as AbstractSequenceModel
from ._discrete import (
    DiscreteDiagonalRNN as DiscreteDiagonalRNN,
    DiscreteRNN as DiscreteRNN,
)
from ._linear import (
    AbstractRNN as AbstractRNN,
    DiagonalRNN as DiagonalRNN,
    LinearRNN as LinearRNN,
    check_diagonal as check_diagonal,
)
from ._nonlinear import ContinuousRNN as ContinuousRNN
