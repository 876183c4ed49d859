"""The state of the layers' random streams (the generators of dropout and
Gaussian-noise layers, ``layer._srng``): read and restored, so that a
checkpoint can record it and a resumed run continue the same sequence.
(The streams' seeds come from :func:`lasres.random.get_rng`.)"""
import numpy as np

from ..errors import LasresError
from .helper import get_all_layers

__all__ = ["get_stream_states", "set_stream_states"]

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _stream_variables(network):
    """The shared generator variables of the layers' random streams, in a fixed order."""
    out = []
    for layer in get_all_layers(network):
        srng = getattr(layer, "_srng", None)
        for var, _ in getattr(srng, "state_updates", ()):
            out.append(var)
    return out


def get_stream_states(network):
    """The states of the random streams of ``network``'s layers (JSON-serialisable).

    Returns
    -------
    list of dict
        One ``numpy.random.Generator.bit_generator.state`` per stream variable
        (one per compiled use of a dropout or noise layer), in layer order.
    """
    return [var.get_value(borrow=True).bit_generator.state for var in _stream_variables(network)]


def set_stream_states(network, states):
    """Restore states returned by :func:`get_stream_states` (e.g. from a checkpoint).

    Raises
    ------
    LasresError
        If the number of states differs from the number of streams or a
        state is malformed.
    """
    variables = _stream_variables(network)
    if not isinstance(states, list) or len(states) != len(variables):
        n = len(states) if isinstance(states, list) else type(states).__name__
        raise LasresError(f"the checkpoint records {n} random-stream states, the network has "
                          f"{len(variables)}")
    gens = []
    for st in states:
        name = st.get("bit_generator") if isinstance(st, dict) else None
        if name not in _BIT_GENERATORS:
            raise LasresError(f"unsupported random-stream state {str(st)[:60]!r}")
        try:
            bg = getattr(np.random, name)()
            bg.state = st
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise LasresError(f"malformed random-stream state ({exc})") from None
        gens.append(np.random.Generator(bg))
    for var, g in zip(variables, gens):
        var.set_value(g, borrow=True)
