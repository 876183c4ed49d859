"""The legacy training recipe, written once.

Every trainer and front end builds the objective and the inference function
here, so the numbers of :class:`lasres.train.Trainer`,
:class:`lasres.train.jax_trainer.JaxTrainer`, ``test_model.py`` and ``compare.py``
come from one graph:

* :func:`legacy_objective`: the Lasagne seed's loss (mean categorical
  cross-entropy of the softmax outputs + ``l2`` times the sum of squares of
  every regularizable parameter, batch-norm gammas included, as Lasagne
  tags them), the mean accuracy and the trainable parameters;
* :func:`inference_output` / :func:`compile_predict`: the deterministic
  output (stored batch-norm statistics, no dropout) and its compiled
  function;
* :func:`input_var`: the one input variable of a network.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import pytensor
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from .. import objectives, regularization
from ..config import get_mode
from ..layers import InputLayer, Layer, get_all_layers, get_all_params, get_output
from ..recipes import LEGACY

__all__ = ["Objective", "legacy_objective", "input_var", "inference_output", "compile_predict"]


def input_var(network: Layer) -> TensorVariable:
    """The input variable of the network's single :class:`~lasres.layers.InputLayer`.

    Parameters
    ----------
    network : Layer
        The output layer.

    Returns
    -------
    TensorVariable

    Raises
    ------
    ValueError
        The network has no or several input layers.
    """
    inputs = [l for l in get_all_layers(network) if isinstance(l, InputLayer)]
    if len(inputs) != 1:
        raise ValueError(f"the network must have one InputLayer, found {len(inputs)}")
    return inputs[0].input_var


@dataclass
class Objective:
    """The symbolic training objective of a network (see :func:`legacy_objective`).

    Attributes
    ----------
    inputs : TensorVariable
        The network's input variable.
    targets : TensorVariable
        Integer class labels (``ivector``).
    prediction : TensorVariable
        The stochastic (training-mode) output.
    loss : TensorVariable
        Scalar: mean cross-entropy, plus the L2 penalty when ``l2`` is not 0.
    accuracy : TensorVariable
        Scalar of floatX: the fraction of correct argmax predictions.
    params : list of shared variables
        The trainable parameters, in Lasagne's order.
    """

    inputs: TensorVariable
    targets: TensorVariable
    prediction: TensorVariable
    loss: TensorVariable
    accuracy: TensorVariable
    params: List


def legacy_objective(network: Layer, l2: float = LEGACY.l2,
                     bn_update_averages: bool = LEGACY.bn_update_averages) -> Objective:
    """The Lasagne seed's objective of ``network``.

    ``loss = mean(categorical_crossentropy(prediction, targets))
    + l2 * sum(p ** 2 for every regularizable p)`` (batch-norm gammas are
    regularizable, as in Lasagne) and ``accuracy = mean(argmax == targets)``.

    Parameters
    ----------
    network : Layer
        Output layer (softmax probabilities).
    l2 : float
        Weight of the L2 penalty (the legacy recipe's, :data:`lasres.recipes.LEGACY`);
        0 leaves it out of the graph.
    bn_update_averages : bool
        The batch-norm layers' running averages are updated by the training
        output (their default updates), as the legacy recipe does.

    Returns
    -------
    Objective
    """
    x = input_var(network)
    y = pt.ivector("targets")
    # (the layers' default is to update them: the keyword is given only to turn
    # it off, so that networks without batch norm get no unused-keyword warning)
    prediction = get_output(network, **({} if bn_update_averages
                                        else {"batch_norm_update_averages": False}))
    loss = objectives.categorical_crossentropy(prediction, y).mean()
    if l2:
        loss = loss + l2 * regularization.regularize_layer_params(
            get_all_layers(network), regularization.l2)
    accuracy = objectives.categorical_accuracy(prediction, y).mean(dtype=pytensor.config.floatX)
    return Objective(x, y, prediction, loss, accuracy, get_all_params(network, trainable=True))


def inference_output(network: Layer) -> Tuple[TensorVariable, TensorVariable]:
    """The input variable and the deterministic output of ``network``.

    Parameters
    ----------
    network : Layer

    Returns
    -------
    (TensorVariable, TensorVariable)
        ``(inputs, probabilities)`` with the stored batch-norm statistics and
        no dropout or noise.
    """
    return input_var(network), get_output(network, deterministic=True)


def compile_predict(network: Layer, backend: Optional[str] = None) -> Callable:
    """Compile ``predict_fn(X) -> probabilities`` of :func:`inference_output`.

    Parameters
    ----------
    network : Layer
    backend : str or None
        As for :func:`lasres.config.get_mode` (None: the default backend).

    Returns
    -------
    callable
    """
    x, out = inference_output(network)
    return pytensor.function([x], out, mode=get_mode(backend))
