"""The random number generator used to initialise parameters
(Lasagne's ``lasagne.random``): NumPy's global generator unless set.

Besides Lasagne's :func:`get_rng` / :func:`set_rng`, this module gathers what
a repeatable run needs: :func:`seed_everything` seeds the generator that
draws the initial weights and the seeds of the layers' random streams
(dropout, Gaussian noise), and :func:`get_stream_states` /
:func:`set_stream_states` read and restore the state of those streams, so
that a checkpoint can record it and a resumed run continue the same
sequence. (The data shuffle and augmentation draw from a generator seeded
from the run's seed and the epoch, see :func:`lasres.training.fit`.)
"""
import numpy as np

from .errors import LasresError

_rng = np.random

__all__ = ["get_rng", "set_rng", "seed_everything", "get_stream_states", "set_stream_states"]

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def get_rng():
    """The current generator (by default the ``numpy.random`` module)."""
    return _rng


def set_rng(new_rng):
    """Use ``new_rng`` (e.g. ``np.random.RandomState(42)``) from now on."""
    global _rng
    _rng = new_rng


def seed_everything(seed):
    """Make everything random that lasres draws on the host follow ``seed``.

    Sets :func:`get_rng` to ``numpy.random.RandomState(seed)``: the initial
    weights and the seeds of the dropout / noise streams of layers built
    afterwards follow from it. Call it before building the network.

    Parameters
    ----------
    seed : int
        Non-negative, below 2**32.
    """
    seed = int(seed)
    if not 0 <= seed < 2 ** 32:
        raise LasresError(f"the seed must be in 0..{2 ** 32 - 1}, got {seed}")
    set_rng(np.random.RandomState(seed))


def _stream_variables(network):
    """The shared generator variables of the layers' random streams, in a fixed order."""
    from .layers import get_all_layers
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
