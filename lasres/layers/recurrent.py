"""Recurrent layers (Lasagne's ``lasagne.layers.recurrent``).

Recurrent layers take inputs of shape ``(batch_size, sequence_length,
num_inputs...)`` and return ``(batch_size, sequence_length, num_units...)``
(or ``(batch_size, num_units...)`` with ``only_return_final=True``). The
recursion runs as one :func:`pytensor.scan` (or, with ``unroll_scan=True``,
unrolled by :func:`lasres.utils.unroll_scan`).

Common arguments
----------------
backwards : bool
    Process the sequence from its end; the output is still in input order.
learn_init : bool
    Whether the initial states (when given as initializers) are trainable.
gradient_steps : int
    Truncate backpropagation through time to this many steps (-1: all).
grad_clipping : float
    If nonzero, clip the gradient flowing into the recurrence to
    ``[-grad_clipping, grad_clipping]`` (Graves 2013).
unroll_scan : bool
    Unroll the loop (needs a known sequence length and ``gradient_steps=-1``).
precompute_input : bool
    Compute the input-to-hidden products for all steps before the loop.
mask_input : :class:`Layer` or None
    A ``(batch_size, sequence_length)`` mask: where it is 0 the state is
    carried over unchanged.
only_return_final : bool
    Return the last state only.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import grad_clip

from .. import init, nonlinearities
from ..utils import unroll_scan
from . import helper
from .base import Layer, MergeLayer
from .dense import DenseLayer
from .input import InputLayer

__all__ = ["CustomRecurrentLayer", "RecurrentLayer", "Gate", "LSTMLayer", "GRULayer"]


def _extra_incomings(incoming, mask_input, **state_inits):
    """The incomings list (input, then mask, then initial-state layers) and
    the index of each in it (-1 where absent)."""
    incomings = [incoming]
    indices = {"mask": -1}
    if mask_input is not None:
        incomings.append(mask_input)
        indices["mask"] = len(incomings) - 1
    for key, value in state_inits.items():
        indices[key] = -1
        if isinstance(value, Layer):
            incomings.append(value)
            indices[key] = len(incomings) - 1
    return incomings, indices


def _loop(step_fun, sequences, outputs_info, non_seqs, layer):
    """Run ``step_fun`` over the sequences with scan, or unrolled."""
    if layer.unroll_scan:
        return unroll_scan(fn=step_fun, sequences=sequences, outputs_info=outputs_info,
                           go_backwards=layer.backwards, non_sequences=non_seqs,
                           n_steps=layer.input_shapes[0][1])
    out = pytensor.scan(fn=step_fun, sequences=sequences, outputs_info=outputs_info,
                        go_backwards=layer.backwards, non_sequences=non_seqs,
                        truncate_gradient=layer.gradient_steps, strict=True,
                        return_list=True, return_updates=False)
    return out


def _finish(hid_out, layer):
    """Last state, or all states back in (batch, time, ...) input order."""
    if layer.only_return_final:
        return hid_out[-1]
    hid_out = hid_out.dimshuffle(1, 0, *range(2, hid_out.ndim))
    if layer.backwards:
        hid_out = hid_out[:, ::-1]
    return hid_out


class CustomRecurrentLayer(MergeLayer):
    """A recurrent layer with arbitrary input-to-hidden and hidden-to-hidden
    connections: ``h_t = nonlinearity(f_i(x_t) + f_h(h_{t-1}))``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        The input, of shape ``(batch_size, sequence_length, ...)``.
    input_to_hidden : :class:`Layer`
        :math:`f_i`: a network from one :class:`InputLayer` shaped like one
        time step of the input (``(None,) + input_shape[2:]``).
    hidden_to_hidden : :class:`Layer`
        :math:`f_h`: a network from one :class:`InputLayer` shaped like the
        hidden state.
    nonlinearity : callable or None
        Applied to the sum (None: identity).
    hid_init : callable, np.ndarray, shared variable or :class:`Layer`
        Initial hidden state: an initializer for a ``(1,) +
        hidden_to_hidden.output_shape[1:]`` parameter repeated over the
        batch, or a layer giving the full ``(batch_size, ...)`` state.
    backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
    precompute_input, mask_input, only_return_final
        See the module documentation.
    """

    def __init__(self, incoming, input_to_hidden, hidden_to_hidden,
                 nonlinearity=nonlinearities.rectify, hid_init=init.Constant(0.),
                 backwards=False, learn_init=False, gradient_steps=-1, grad_clipping=0,
                 unroll_scan=False, precompute_input=True, mask_input=None,
                 only_return_final=False, **kwargs):
        incomings, idx = _extra_incomings(incoming, mask_input, hid_init=hid_init)
        self.mask_incoming_index = idx["mask"]
        self.hid_init_incoming_index = idx["hid_init"]
        super().__init__(incomings, **kwargs)
        input_to_hidden_in_layers = [layer for layer in helper.get_all_layers(input_to_hidden)
                                     if isinstance(layer, InputLayer)]
        if len(input_to_hidden_in_layers) != 1:
            raise ValueError("`input_to_hidden` must have exactly one InputLayer, but it "
                             "has {}".format(len(input_to_hidden_in_layers)))
        hidden_to_hidden_in_lyrs = [layer for layer in helper.get_all_layers(hidden_to_hidden)
                                    if isinstance(layer, InputLayer)]
        if len(hidden_to_hidden_in_lyrs) != 1:
            raise ValueError("`hidden_to_hidden` must have exactly one InputLayer, but it "
                             "has {}".format(len(hidden_to_hidden_in_lyrs)))
        hidden_to_hidden_in_layer = hidden_to_hidden_in_lyrs[0]

        self.input_to_hidden = input_to_hidden
        self.hidden_to_hidden = hidden_to_hidden
        self.learn_init = learn_init
        self.backwards = backwards
        self.gradient_steps = gradient_steps
        self.grad_clipping = grad_clipping
        self.unroll_scan = unroll_scan
        self.precompute_input = precompute_input
        self.only_return_final = only_return_final

        if unroll_scan and gradient_steps != -1:
            raise ValueError("Gradient steps must be -1 when unroll_scan is true.")
        input_shape = self.input_shapes[0]
        if unroll_scan and input_shape[1] is None:
            raise ValueError("Input sequence length cannot be specified as "
                             "None when unroll_scan is True")
        i2h_shape = input_to_hidden.output_shape
        h2h_shape = hidden_to_hidden.output_shape
        if (self.precompute_input and i2h_shape[0] is not None
                and input_shape[0] is not None and input_shape[1] is not None
                and i2h_shape[0] != input_shape[0] * input_shape[1]):
            raise ValueError(
                "When precompute_input == True, input_to_hidden.output_shape[0] must "
                "equal incoming.output_shape[0]*incoming.output_shape[1] (i.e. "
                "batch_size*sequence_length) or be None but "
                "input_to_hidden.output_shape[0] = {} and "
                "incoming.output_shape[0]*incoming.output_shape[1] = {}".format(
                    i2h_shape[0], input_shape[0] * input_shape[1]))
        if (not self.precompute_input and i2h_shape[0] is not None
                and h2h_shape[0] is not None and i2h_shape[0] != h2h_shape[0]):
            raise ValueError(
                "When precompute_input == False, input_to_hidden.output_shape[0] must "
                "equal hidden_to_hidden.output_shape[0] but "
                "input_to_hidden.output_shape[0] = {} and "
                "hidden_to_hidden.output_shape[0] = {}".format(i2h_shape[0], h2h_shape[0]))
        if not all(s1 is None or s2 is None or s1 == s2
                   for s1, s2 in zip(i2h_shape[1:], h2h_shape[1:])):
            raise ValueError(
                "The output shape for input_to_hidden and hidden_to_hidden must be equal "
                "after the first dimension, but input_to_hidden.output_shape={} and "
                "hidden_to_hidden.output_shape={}".format(i2h_shape, h2h_shape))
        h_to_h_input_shape = hidden_to_hidden_in_layer.output_shape
        if not all(s1 is None or s2 is None or s1 == s2
                   for s1, s2 in zip(i2h_shape[1:], h_to_h_input_shape[1:])):
            raise ValueError(
                "The output shape for input_to_hidden and input shape for "
                "hidden_to_hidden must be equal after the first dimension, but "
                "input_to_hidden.output_shape={} and "
                "hidden_to_hidden:input_layer.shape={}".format(i2h_shape, h_to_h_input_shape))

        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        if isinstance(hid_init, Layer):
            self.hid_init = hid_init
        else:
            self.hid_init = self.add_param(hid_init, (1,) + h2h_shape[1:], name="hid_init",
                                           trainable=learn_init, regularizable=False)

    def get_params(self, **tags):
        """This layer's parameters (``hid_init``), then those of
        ``input_to_hidden`` and of ``hidden_to_hidden``."""
        params = super().get_params(**tags)
        params += helper.get_all_params(self.input_to_hidden, **tags)
        params += helper.get_all_params(self.hidden_to_hidden, **tags)
        return params

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        if self.only_return_final:
            return (input_shape[0],) + self.hidden_to_hidden.output_shape[1:]
        return (input_shape[0], input_shape[1]) + self.hidden_to_hidden.output_shape[1:]

    def get_output_for(self, inputs, **kwargs):
        """The hidden states for ``inputs``: the input, then (if the layer
        has them) the mask and the initial hidden state."""
        input = inputs[0]
        mask = inputs[self.mask_incoming_index] if self.mask_incoming_index > 0 else None
        hid_init = (inputs[self.hid_init_incoming_index]
                    if self.hid_init_incoming_index > 0 else None)
        # scan iterates over the first axis: (time, batch, features...)
        input = input.dimshuffle(1, 0, *range(2, input.ndim))
        seq_len, num_batch = input.shape[0], input.shape[1]
        if self.precompute_input:
            trailing_dims = tuple(input.shape[n] for n in range(2, input.ndim))
            input = pt.reshape(input, (seq_len * num_batch,) + trailing_dims)
            input = helper.get_output(self.input_to_hidden, input, **kwargs)
            trailing_dims = tuple(input.shape[n] for n in range(1, input.ndim))
            input = pt.reshape(input, (seq_len, num_batch) + trailing_dims)

        non_seqs = helper.get_all_params(self.hidden_to_hidden)
        if not self.precompute_input:
            non_seqs += helper.get_all_params(self.input_to_hidden)

        def step(input_n, hid_previous, *args):
            hid_pre = helper.get_output(self.hidden_to_hidden, hid_previous, **kwargs)
            if self.precompute_input:
                hid_pre += input_n
            else:
                hid_pre += helper.get_output(self.input_to_hidden, input_n, **kwargs)
            if self.grad_clipping:
                hid_pre = grad_clip(hid_pre, -self.grad_clipping, self.grad_clipping)
            return self.nonlinearity(hid_pre)

        def step_masked(input_n, mask_n, hid_previous, *args):
            hid = step(input_n, hid_previous, *args)
            return [pt.switch(mask_n, hid, hid_previous)]

        if mask is not None:
            sequences = [input, mask.dimshuffle(1, 0, "x")]
            step_fun = step_masked
        else:
            sequences = input
            step_fun = step
        if not isinstance(self.hid_init, Layer):
            # repeat hid_init over the batch (a dot with a column of ones)
            dot_dims = list(range(1, self.hid_init.ndim - 1)) + [0, self.hid_init.ndim - 1]
            hid_init = pt.dot(pt.ones((num_batch, 1)), self.hid_init.dimshuffle(dot_dims))
        hid_out = _loop(step_fun, sequences, [hid_init], non_seqs, self)[0]
        return _finish(hid_out, self)


class RecurrentLayer(CustomRecurrentLayer):
    """A dense ("vanilla") recurrent layer:
    ``h_t = nonlinearity(x_t · W_in_to_hid + h_{t-1} · W_hid_to_hid + b)``,
    a :class:`CustomRecurrentLayer` over two :class:`DenseLayer`\\ s named
    ``input_to_hidden`` (with the bias) and ``hidden_to_hidden``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Of shape ``(batch_size, sequence_length, num_inputs...)`` (trailing
        axes are flattened).
    num_units : int
        Number of hidden units.
    W_in_to_hid, W_hid_to_hid, b : initializers, arrays or shared variables
        Weights ``(num_inputs, num_units)``, ``(num_units, num_units)`` and
        bias ``(num_units,)`` (None: no bias).
    nonlinearity, hid_init, backwards, learn_init, gradient_steps,
    grad_clipping, unroll_scan, precompute_input, mask_input,
    only_return_final
        As for :class:`CustomRecurrentLayer`.
    """

    def __init__(self, incoming, num_units, W_in_to_hid=init.Uniform(),
                 W_hid_to_hid=init.Uniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, hid_init=init.Constant(0.),
                 backwards=False, learn_init=False, gradient_steps=-1, grad_clipping=0,
                 unroll_scan=False, precompute_input=True, mask_input=None,
                 only_return_final=False, **kwargs):
        input_shape = incoming if isinstance(incoming, tuple) else incoming.output_shape
        if "name" in kwargs:
            basename = kwargs["name"] + "."
            layer_kwargs = dict((key, arg) for key, arg in kwargs.items() if key != "name")
        else:
            basename = ""
            layer_kwargs = kwargs
        in_to_hid = DenseLayer(InputLayer((None,) + tuple(input_shape[2:])), num_units,
                               W=W_in_to_hid, b=b, nonlinearity=None,
                               name=basename + "input_to_hidden", **layer_kwargs)
        hid_to_hid = DenseLayer(InputLayer((None, num_units)), num_units, W=W_hid_to_hid,
                                b=None, nonlinearity=None, name=basename + "hidden_to_hidden",
                                **layer_kwargs)
        self.W_in_to_hid = in_to_hid.W
        self.W_hid_to_hid = hid_to_hid.W
        self.b = in_to_hid.b
        super().__init__(incoming, in_to_hid, hid_to_hid, nonlinearity=nonlinearity,
                         hid_init=hid_init, backwards=backwards, learn_init=learn_init,
                         gradient_steps=gradient_steps, grad_clipping=grad_clipping,
                         unroll_scan=unroll_scan, precompute_input=precompute_input,
                         mask_input=mask_input, only_return_final=only_return_final,
                         **kwargs)


class Gate(object):
    """The parameters of one gate of an :class:`LSTMLayer` or a
    :class:`GRULayer`: ``nonlinearity(x_t · W_in + h_{t-1} · W_hid
    (+ c · W_cell) + b)``.

    Parameters
    ----------
    W_in, W_hid : initializers, arrays or shared variables
        Input-to-gate and hidden-to-gate weights (default ``Normal(0.1)``).
    W_cell : initializer, array, shared variable or None
        Peephole (cell-to-gate) weight vector; None for none (then the
        ``W_cell`` attribute is absent).
    b : initializer, array or shared variable
        Bias (default 0).
    nonlinearity : callable or None
        Default sigmoid; None means identity.
    """

    def __init__(self, W_in=init.Normal(0.1), W_hid=init.Normal(0.1), W_cell=init.Normal(0.1),
                 b=init.Constant(0.), nonlinearity=nonlinearities.sigmoid):
        self.W_in = W_in
        self.W_hid = W_hid
        if W_cell is not None:
            self.W_cell = W_cell
        self.b = b
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity


class LSTMLayer(MergeLayer):
    """Long short-term memory (Hochreiter & Schmidhuber 1997; Graves 2013),
    with optional peepholes::

        i_t = σ_i(x_t W_xi + h_{t-1} W_hi + w_ci ⊙ c_{t-1} + b_i)
        f_t = σ_f(x_t W_xf + h_{t-1} W_hf + w_cf ⊙ c_{t-1} + b_f)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ σ_c(x_t W_xc + h_{t-1} W_hc + b_c)
        o_t = σ_o(x_t W_xo + h_{t-1} W_ho + w_co ⊙ c_t + b_o)
        h_t = o_t ⊙ σ_h(c_t)

    Parameters (in this order): ``W_in_to_ingate, W_hid_to_ingate,
    b_ingate``, the same for ``forgetgate``, ``cell`` and ``outgate``, then
    (with peepholes) ``W_cell_to_ingate, W_cell_to_forgetgate,
    W_cell_to_outgate``, then ``cell_init, hid_init`` (unless given as
    layers).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Of shape ``(batch_size, sequence_length, num_inputs...)`` (trailing
        axes are flattened).
    num_units : int
        Number of hidden units.
    ingate, forgetgate, cell, outgate : :class:`Gate`
        Parameters of each gate (``cell``'s W_cell is unused).
    nonlinearity : callable or None
        σ_h (default tanh; None: identity).
    cell_init, hid_init : callable, np.ndarray, shared variable or :class:`Layer`
        Initial cell and hidden states: initializers for ``(1, num_units)``
        parameters repeated over the batch, or layers giving ``(batch_size,
        num_units)``.
    peepholes : bool
        Whether to use the peephole weights.
    backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
    precompute_input, mask_input, only_return_final
        See the module documentation.
    """

    def __init__(self, incoming, num_units, ingate=Gate(), forgetgate=Gate(),
                 cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh), outgate=Gate(),
                 nonlinearity=nonlinearities.tanh, cell_init=init.Constant(0.),
                 hid_init=init.Constant(0.), backwards=False, learn_init=False,
                 peepholes=True, gradient_steps=-1, grad_clipping=0, unroll_scan=False,
                 precompute_input=True, mask_input=None, only_return_final=False, **kwargs):
        incomings, idx = _extra_incomings(incoming, mask_input, hid_init=hid_init,
                                          cell_init=cell_init)
        self.mask_incoming_index = idx["mask"]
        self.hid_init_incoming_index = idx["hid_init"]
        self.cell_init_incoming_index = idx["cell_init"]
        super().__init__(incomings, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        self.learn_init = learn_init
        self.num_units = num_units
        self.backwards = backwards
        self.peepholes = peepholes
        self.gradient_steps = gradient_steps
        self.grad_clipping = grad_clipping
        self.unroll_scan = unroll_scan
        self.precompute_input = precompute_input
        self.only_return_final = only_return_final
        if unroll_scan and gradient_steps != -1:
            raise ValueError("Gradient steps must be -1 when unroll_scan is true.")
        input_shape = self.input_shapes[0]
        if unroll_scan and input_shape[1] is None:
            raise ValueError("Input sequence length cannot be specified as "
                             "None when unroll_scan is True")
        num_inputs = int(np.prod(input_shape[2:]))

        def add_gate_params(gate, gate_name):
            return (self.add_param(gate.W_in, (num_inputs, num_units),
                                   name="W_in_to_{}".format(gate_name)),
                    self.add_param(gate.W_hid, (num_units, num_units),
                                   name="W_hid_to_{}".format(gate_name)),
                    self.add_param(gate.b, (num_units,), name="b_{}".format(gate_name),
                                   regularizable=False),
                    gate.nonlinearity)

        (self.W_in_to_ingate, self.W_hid_to_ingate, self.b_ingate,
         self.nonlinearity_ingate) = add_gate_params(ingate, "ingate")
        (self.W_in_to_forgetgate, self.W_hid_to_forgetgate, self.b_forgetgate,
         self.nonlinearity_forgetgate) = add_gate_params(forgetgate, "forgetgate")
        (self.W_in_to_cell, self.W_hid_to_cell, self.b_cell,
         self.nonlinearity_cell) = add_gate_params(cell, "cell")
        (self.W_in_to_outgate, self.W_hid_to_outgate, self.b_outgate,
         self.nonlinearity_outgate) = add_gate_params(outgate, "outgate")
        if self.peepholes:
            self.W_cell_to_ingate = self.add_param(ingate.W_cell, (num_units,),
                                                   name="W_cell_to_ingate")
            self.W_cell_to_forgetgate = self.add_param(forgetgate.W_cell, (num_units,),
                                                       name="W_cell_to_forgetgate")
            self.W_cell_to_outgate = self.add_param(outgate.W_cell, (num_units,),
                                                    name="W_cell_to_outgate")
        if isinstance(cell_init, Layer):
            self.cell_init = cell_init
        else:
            self.cell_init = self.add_param(cell_init, (1, num_units), name="cell_init",
                                            trainable=learn_init, regularizable=False)
        if isinstance(hid_init, Layer):
            self.hid_init = hid_init
        else:
            self.hid_init = self.add_param(hid_init, (1, self.num_units), name="hid_init",
                                           trainable=learn_init, regularizable=False)

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        if self.only_return_final:
            return input_shape[0], self.num_units
        return input_shape[0], input_shape[1], self.num_units

    def get_output_for(self, inputs, **kwargs):
        """The hidden states for ``inputs``: the input, then (if the layer
        has them) the mask, the initial hidden and the initial cell state."""
        input = inputs[0]
        mask = inputs[self.mask_incoming_index] if self.mask_incoming_index > 0 else None
        hid_init = (inputs[self.hid_init_incoming_index]
                    if self.hid_init_incoming_index > 0 else None)
        cell_init = (inputs[self.cell_init_incoming_index]
                     if self.cell_init_incoming_index > 0 else None)
        if input.ndim > 3:
            input = pt.flatten(input, 3)
        input = input.dimshuffle(1, 0, 2)
        seq_len, num_batch, _ = input.shape
        # all gates in one product: (num_inputs, 4 * num_units) etc.
        W_in_stacked = pt.concatenate([self.W_in_to_ingate, self.W_in_to_forgetgate,
                                       self.W_in_to_cell, self.W_in_to_outgate], axis=1)
        W_hid_stacked = pt.concatenate([self.W_hid_to_ingate, self.W_hid_to_forgetgate,
                                        self.W_hid_to_cell, self.W_hid_to_outgate], axis=1)
        b_stacked = pt.concatenate([self.b_ingate, self.b_forgetgate,
                                    self.b_cell, self.b_outgate], axis=0)
        if self.precompute_input:
            input = pt.dot(input, W_in_stacked) + b_stacked
        num_units = self.num_units

        def slice_w(x, n):
            return x[:, n * num_units:(n + 1) * num_units]

        def step(input_n, cell_previous, hid_previous, *args):
            if not self.precompute_input:
                input_n = pt.dot(input_n, W_in_stacked) + b_stacked
            gates = input_n + pt.dot(hid_previous, W_hid_stacked)
            if self.grad_clipping:
                gates = grad_clip(gates, -self.grad_clipping, self.grad_clipping)
            ingate = slice_w(gates, 0)
            forgetgate = slice_w(gates, 1)
            cell_input = slice_w(gates, 2)
            outgate = slice_w(gates, 3)
            if self.peepholes:
                ingate += cell_previous * self.W_cell_to_ingate
                forgetgate += cell_previous * self.W_cell_to_forgetgate
            ingate = self.nonlinearity_ingate(ingate)
            forgetgate = self.nonlinearity_forgetgate(forgetgate)
            cell_input = self.nonlinearity_cell(cell_input)
            cell = forgetgate * cell_previous + ingate * cell_input
            if self.peepholes:
                outgate += cell * self.W_cell_to_outgate
            outgate = self.nonlinearity_outgate(outgate)
            hid = outgate * self.nonlinearity(cell)
            return [cell, hid]

        def step_masked(input_n, mask_n, cell_previous, hid_previous, *args):
            cell, hid = step(input_n, cell_previous, hid_previous, *args)
            cell = pt.switch(mask_n, cell, cell_previous)
            hid = pt.switch(mask_n, hid, hid_previous)
            return [cell, hid]

        if mask is not None:
            sequences = [input, mask.dimshuffle(1, 0, "x")]
            step_fun = step_masked
        else:
            sequences = input
            step_fun = step
        ones = pt.ones((num_batch, 1))
        if not isinstance(self.cell_init, Layer):
            cell_init = pt.dot(ones, self.cell_init)
        if not isinstance(self.hid_init, Layer):
            hid_init = pt.dot(ones, self.hid_init)
        non_seqs = [W_hid_stacked]
        if self.peepholes:
            non_seqs += [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                         self.W_cell_to_outgate]
        if not self.precompute_input:
            non_seqs += [W_in_stacked, b_stacked]
        cell_out, hid_out = _loop(step_fun, sequences, [cell_init, hid_init], non_seqs, self)
        return _finish(hid_out, self)


class GRULayer(MergeLayer):
    """Gated recurrent unit (Cho et al. 2014)::

        r_t = σ_r(x_t W_xr + h_{t-1} W_hr + b_r)
        u_t = σ_u(x_t W_xu + h_{t-1} W_hu + b_u)
        c_t = σ_c(x_t W_xc + b_c + r_t ⊙ (h_{t-1} W_hc))
        h_t = (1 - u_t) ⊙ h_{t-1} + u_t ⊙ c_t

    Parameters (in this order): ``W_in_to_updategate, W_hid_to_updategate,
    b_updategate``, the same for ``resetgate`` and ``hidden_update``, then
    ``hid_init`` (unless given as a layer).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Of shape ``(batch_size, sequence_length, num_inputs...)`` (trailing
        axes are flattened).
    num_units : int
        Number of hidden units.
    resetgate, updategate, hidden_update : :class:`Gate`
        Parameters of each gate (their W_cell is unused).
    hid_init : callable, np.ndarray, shared variable or :class:`Layer`
        Initial hidden state, as for :class:`LSTMLayer`.
    backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
    precompute_input, mask_input, only_return_final
        See the module documentation.
    """

    def __init__(self, incoming, num_units, resetgate=Gate(W_cell=None),
                 updategate=Gate(W_cell=None),
                 hidden_update=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
                 hid_init=init.Constant(0.), backwards=False, learn_init=False,
                 gradient_steps=-1, grad_clipping=0, unroll_scan=False,
                 precompute_input=True, mask_input=None, only_return_final=False, **kwargs):
        incomings, idx = _extra_incomings(incoming, mask_input, hid_init=hid_init)
        self.mask_incoming_index = idx["mask"]
        self.hid_init_incoming_index = idx["hid_init"]
        super().__init__(incomings, **kwargs)
        self.learn_init = learn_init
        self.num_units = num_units
        self.grad_clipping = grad_clipping
        self.backwards = backwards
        self.gradient_steps = gradient_steps
        self.unroll_scan = unroll_scan
        self.precompute_input = precompute_input
        self.only_return_final = only_return_final
        if unroll_scan and gradient_steps != -1:
            raise ValueError("Gradient steps must be -1 when unroll_scan is true.")
        input_shape = self.input_shapes[0]
        if unroll_scan and input_shape[1] is None:
            raise ValueError("Input sequence length cannot be specified as "
                             "None when unroll_scan is True")
        num_inputs = int(np.prod(input_shape[2:]))

        def add_gate_params(gate, gate_name):
            return (self.add_param(gate.W_in, (num_inputs, num_units),
                                   name="W_in_to_{}".format(gate_name)),
                    self.add_param(gate.W_hid, (num_units, num_units),
                                   name="W_hid_to_{}".format(gate_name)),
                    self.add_param(gate.b, (num_units,), name="b_{}".format(gate_name),
                                   regularizable=False),
                    gate.nonlinearity)

        (self.W_in_to_updategate, self.W_hid_to_updategate, self.b_updategate,
         self.nonlinearity_updategate) = add_gate_params(updategate, "updategate")
        (self.W_in_to_resetgate, self.W_hid_to_resetgate, self.b_resetgate,
         self.nonlinearity_resetgate) = add_gate_params(resetgate, "resetgate")
        (self.W_in_to_hidden_update, self.W_hid_to_hidden_update, self.b_hidden_update,
         self.nonlinearity_hid) = add_gate_params(hidden_update, "hidden_update")
        if isinstance(hid_init, Layer):
            self.hid_init = hid_init
        else:
            self.hid_init = self.add_param(hid_init, (1, self.num_units), name="hid_init",
                                           trainable=learn_init, regularizable=False)

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        if self.only_return_final:
            return input_shape[0], self.num_units
        return input_shape[0], input_shape[1], self.num_units

    def get_output_for(self, inputs, **kwargs):
        """The hidden states for ``inputs``: the input, then (if the layer
        has them) the mask and the initial hidden state."""
        input = inputs[0]
        mask = inputs[self.mask_incoming_index] if self.mask_incoming_index > 0 else None
        hid_init = (inputs[self.hid_init_incoming_index]
                    if self.hid_init_incoming_index > 0 else None)
        if input.ndim > 3:
            input = pt.flatten(input, 3)
        input = input.dimshuffle(1, 0, 2)
        seq_len, num_batch, _ = input.shape
        W_in_stacked = pt.concatenate([self.W_in_to_resetgate, self.W_in_to_updategate,
                                       self.W_in_to_hidden_update], axis=1)
        W_hid_stacked = pt.concatenate([self.W_hid_to_resetgate, self.W_hid_to_updategate,
                                        self.W_hid_to_hidden_update], axis=1)
        b_stacked = pt.concatenate([self.b_resetgate, self.b_updategate,
                                    self.b_hidden_update], axis=0)
        if self.precompute_input:
            input = pt.dot(input, W_in_stacked) + b_stacked
        num_units = self.num_units

        def slice_w(x, n):
            return x[:, n * num_units:(n + 1) * num_units]

        def step(input_n, hid_previous, *args):
            hid_input = pt.dot(hid_previous, W_hid_stacked)
            if self.grad_clipping:
                input_n = grad_clip(input_n, -self.grad_clipping, self.grad_clipping)
                hid_input = grad_clip(hid_input, -self.grad_clipping, self.grad_clipping)
            if not self.precompute_input:
                input_n = pt.dot(input_n, W_in_stacked) + b_stacked
            resetgate = slice_w(hid_input, 0) + slice_w(input_n, 0)
            updategate = slice_w(hid_input, 1) + slice_w(input_n, 1)
            resetgate = self.nonlinearity_resetgate(resetgate)
            updategate = self.nonlinearity_updategate(updategate)
            hidden_update_in = slice_w(input_n, 2)
            hidden_update_hid = slice_w(hid_input, 2)
            hidden_update = hidden_update_in + resetgate * hidden_update_hid
            if self.grad_clipping:
                hidden_update = grad_clip(hidden_update, -self.grad_clipping,
                                          self.grad_clipping)
            hidden_update = self.nonlinearity_hid(hidden_update)
            return (1 - updategate) * hid_previous + updategate * hidden_update

        def step_masked(input_n, mask_n, hid_previous, *args):
            hid = step(input_n, hid_previous, *args)
            return pt.switch(mask_n, hid, hid_previous)

        if mask is not None:
            sequences = [input, mask.dimshuffle(1, 0, "x")]
            step_fun = step_masked
        else:
            sequences = input
            step_fun = step
        if not isinstance(self.hid_init, Layer):
            hid_init = pt.dot(pt.ones((num_batch, 1)), self.hid_init)
        non_seqs = [W_hid_stacked]
        if not self.precompute_input:
            non_seqs += [W_in_stacked, b_stacked]
        hid_out = _loop(step_fun, sequences, [hid_init], non_seqs, self)[0]
        return _finish(hid_out, self)
