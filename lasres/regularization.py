"""Weight penalties (Lasagne's ``lasagne.regularization``).

Note that batch normalisation's ``gamma`` is tagged regularizable (as in
Lasagne), so the legacy L2 penalty includes the BN scales.
"""
import pytensor.tensor as pt

from .layers.base import Layer
from .ops.fused import sum_of_squares
from .layers.helper import get_all_params

__all__ = ["l1", "l2", "apply_penalty", "regularize_layer_params",
           "regularize_layer_params_weighted", "regularize_network_params"]


def l1(x):
    """Sum of absolute values."""
    return pt.sum(abs(x))


def l2(x):
    """Sum of squares, ``sum(x ** 2)`` (one graph node forward and backward)."""
    return sum_of_squares(x)


def apply_penalty(tensor_or_tensors, penalty, **kwargs):
    """Sum of ``penalty`` over one tensor or a list of tensors."""
    if penalty is l2 and not kwargs and isinstance(tensor_or_tensors, (list, tuple)) \
            and tensor_or_tensors:
        # one node for the whole list (same float64 sums, added in order)
        return sum_of_squares(*tensor_or_tensors)
    try:
        return sum(penalty(x, **kwargs) for x in tensor_or_tensors)
    except (TypeError, ValueError):
        return penalty(tensor_or_tensors, **kwargs)


def regularize_layer_params(layer, penalty, tags={"regularizable": True}, **kwargs):
    """Penalty over the params of one layer or a list of layers."""
    layers = [layer] if isinstance(layer, Layer) else layer
    all_params = []
    for layer in layers:
        all_params += layer.get_params(**tags)
    return apply_penalty(all_params, penalty, **kwargs)


def regularize_layer_params_weighted(layers, penalty, tags={"regularizable": True}, **kwargs):
    """Weighted penalty: ``layers`` maps each layer to its coefficient."""
    return sum(coeff * apply_penalty(layer.get_params(**tags), penalty, **kwargs)
               for layer, coeff in layers.items())


def regularize_network_params(layer, penalty, tags={"regularizable": True}, **kwargs):
    """Penalty over all params of a network (below ``layer``)."""
    return apply_penalty(get_all_params(layer, **tags), penalty, **kwargs)
