"""Batch normalisation (Lasagne's ``lasagne.layers.normalization``)."""
import warnings
import pytensor.tensor as pt

from .. import init, nonlinearities
from ..ops.bn import batch_norm_infer, batch_norm_train
from ..ops.fused import attach, fused_elemwise
from .base import Layer

__all__ = ["LocalResponseNormalization2DLayer", "BatchNormLayer", "batch_norm",
           "StandardizationLayer", "instance_norm", "layer_norm", "KerasBatchNormLayer"]


def _normalized_axes(input_shape, axes, name):
    """``(axes, parameter shape)``: the axes a batch norm averages over
    (``'auto'``: all but the second) and the shape of its parameters, the
    sizes of the other axes."""
    if axes == "auto":
        axes = (0,) + tuple(range(2, len(input_shape)))
    elif isinstance(axes, int):
        axes = (axes,)
    axes = tuple(axes)
    shape = [size for axis, size in enumerate(input_shape) if axis not in axes]
    if any(size is None for size in shape):
        raise ValueError(f"{name} needs specified input sizes for all axes not "
                         "normalized over.")
    return axes, shape


class BatchNormLayer(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015), as Lasagne did it.

    ``y = (x - mean) * (gamma * inv_std) + beta`` with the statistics taken
    over ``axes``. In training mode (``deterministic=False``) the batch's mean
    and ``inv_std = 1/sqrt(var + epsilon)`` (biased variance) are used, and the
    stored ``mean`` and ``inv_std`` get default updates
    ``stat ← (1 - alpha)·stat + alpha·batch_stat`` that any function compiled
    from such an output applies. With ``deterministic=True`` the stored
    statistics are used and nothing is updated. ``batch_norm_use_averages``
    and ``batch_norm_update_averages`` override either choice.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    axes : 'auto', int or tuple of int
        Axes to normalise over; 'auto' is all but the second.
    epsilon : float
        Added to the variance (default 1e-4).
    alpha : float
        Weight of the batch statistic in the running averages (default 0.1).
    beta, gamma : initializer, array, shared variable or None
        Shift (trainable) and scale (trainable, regularizable).
    mean, inv_std : initializer, array or shared variable
        The stored statistics (tag ``batch_norm_stat``, neither trainable nor
        regularizable).
    """

    def __init__(self, incoming, axes="auto", epsilon=1e-4, alpha=0.1, beta=init.Constant(0),
                 gamma=init.Constant(1), mean=init.Constant(0), inv_std=init.Constant(1),
                 **kwargs):
        super().__init__(incoming, **kwargs)
        self.axes, shape = _normalized_axes(self.input_shape, axes, "BatchNormLayer")
        self.epsilon = epsilon
        self.alpha = alpha
        self.beta = None if beta is None else self.add_param(
            beta, shape, "beta", trainable=True, regularizable=False)
        self.gamma = None if gamma is None else self.add_param(
            gamma, shape, "gamma", trainable=True, regularizable=True)
        self.mean = self.add_param(mean, shape, "mean", trainable=False, regularizable=False,
                                   batch_norm_stat=True)
        self.inv_std = self.add_param(inv_std, shape, "inv_std", trainable=False,
                                      regularizable=False, batch_norm_stat=True)

    def _gamma_beta(self, dtype):
        shape = self.mean.type.shape
        gamma = self.gamma if self.gamma is not None else pt.ones(shape, dtype=dtype)
        beta = self.beta if self.beta is not None else pt.zeros(shape, dtype=dtype)
        return gamma, beta

    def get_output_for(self, input, deterministic=False, batch_norm_use_averages=None,
                       batch_norm_update_averages=None, **kwargs):
        use_averages = deterministic if batch_norm_use_averages is None else batch_norm_use_averages
        update_averages = (not deterministic if batch_norm_update_averages is None
                           else batch_norm_update_averages)
        gamma, beta = self._gamma_beta(input.dtype)
        if use_averages and not update_averages:
            return batch_norm_infer(input, gamma, beta, self.mean, self.inv_std, axes=self.axes)

        normalized, batch_mean, batch_inv_std = batch_norm_train(
            input, gamma, beta, axes=self.axes, epsilon=self.epsilon)
        if use_averages:
            normalized = batch_norm_infer(input, gamma, beta, self.mean, self.inv_std,
                                          axes=self.axes)
        if update_averages:
            # Lasagne's trick: memory-aliased clones of the stored statistics
            # carry the default updates; they enter the graph through an
            # identity node (Lasagne added 0 * clone), so pytensor.function
            # collects their updates.
            running_mean = self.mean.clone()
            running_inv_std = self.inv_std.clone()
            with warnings.catch_warnings():  # PyTensor 3 marks default_update deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                running_mean.default_update = _running_average(running_mean, batch_mean,
                                                               self.alpha)
                running_inv_std.default_update = _running_average(running_inv_std,
                                                                  batch_inv_std, self.alpha)
            normalized = attach(normalized, running_mean, running_inv_std)
        return normalized


def _running_average(stat, batch_stat, alpha):
    """``(1 - alpha) * stat + alpha * batch_stat`` as one elementwise node."""
    return fused_elemwise(lambda s, b, one_minus_a, a: one_minus_a * s + a * b,
                          stat, batch_stat, 1 - alpha, alpha)


def batch_norm(layer, **kwargs):
    """Put batch normalisation after ``layer``'s linear part.

    Removes the layer's nonlinearity and bias ``b`` (batch norm's ``beta``
    takes the bias's role), stacks a :class:`BatchNormLayer` on it and, if
    the layer had a nonlinearity, a :class:`NonlinearityLayer` applying it.
    Returns the topmost new layer. Keyword arguments go to the
    BatchNormLayer; its name defaults to the layer's name + '_bn'.
    """
    nonlinearity = _steal_nonlinearity_and_bias(layer)
    bn_name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + "_bn")
    layer = BatchNormLayer(layer, name=bn_name, **kwargs)
    if nonlinearity is not None:
        from .special import NonlinearityLayer
        nonlin_name = bn_name and bn_name + "_nonlin"
        layer = NonlinearityLayer(layer, nonlinearity, name=nonlin_name)
    return layer


class KerasBatchNormLayer(Layer):
    """Batch normalisation as Keras 1.x (``BatchNormalization``, mode 0) did it.

    Test phase (``deterministic=True``)::

        y = (x - running_mean) * gamma / sqrt(running_std + epsilon) + beta

    where ``running_std`` holds a **variance** (Keras 1's misnomer, kept so
    that the parameters are the Keras weights one for one). Training phase:
    the batch mean and biased variance, ``epsilon`` inside the square root,
    and the default updates ``running_mean <- momentum * running_mean +
    (1 - momentum) * batch_mean`` and ``running_std <- momentum * running_std
    + (1 - momentum) * (batch_var + epsilon)`` (Keras 1.2 on Theano averages
    the variance *plus epsilon*; the test phase adds epsilon again).

    The parameters are added in Keras's order, ``gamma, beta, running_mean,
    running_std`` (Lasagne's :class:`BatchNormLayer` has ``beta, gamma, mean,
    inv_std``), so that a Keras weight file's arrays load without conversion
    and are written back bit for bit.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    axes : 'auto', int or tuple of int
        Axes to normalise over; 'auto' is all but the second (Keras ``axis=1``).
    epsilon : float
        Keras 1.2's default 1e-3 (1.0.8 to 1.1.2 used 1e-5).
    momentum : float
        Keras's 0.99: weight of the stored statistic in the running averages.
    gamma, beta : initializer, array or shared variable
        Scale (trainable, regularizable, as Lasagne tags it) and shift (trainable).
    running_mean, running_std : initializer, array or shared variable
        The stored mean and variance (tag ``batch_norm_stat``).
    """

    def __init__(self, incoming, axes="auto", epsilon=1e-3, momentum=0.99,
                 gamma=init.Constant(1), beta=init.Constant(0), running_mean=init.Constant(0),
                 running_std=init.Constant(1), **kwargs):
        super().__init__(incoming, **kwargs)
        self.axes, shape = _normalized_axes(self.input_shape, axes, "KerasBatchNormLayer")
        self.epsilon = epsilon
        self.momentum = momentum
        self.gamma = self.add_param(gamma, shape, "gamma", trainable=True, regularizable=True)
        self.beta = self.add_param(beta, shape, "beta", trainable=True, regularizable=False)
        self.running_mean = self.add_param(running_mean, shape, "running_mean", trainable=False,
                                           regularizable=False, batch_norm_stat=True)
        self.running_std = self.add_param(running_std, shape, "running_std", trainable=False,
                                          regularizable=False, batch_norm_stat=True)

    def get_output_for(self, input, deterministic=False, batch_norm_use_averages=None,
                       batch_norm_update_averages=None, **kwargs):
        use_averages = deterministic if batch_norm_use_averages is None else batch_norm_use_averages
        update_averages = (not deterministic if batch_norm_update_averages is None
                           else batch_norm_update_averages)
        if use_averages:
            inv_std = 1 / pt.sqrt(self.running_std + self.epsilon)
            out = batch_norm_infer(input, self.gamma, self.beta, self.running_mean, inv_std,
                                   axes=self.axes)
            if not update_averages:
                return out
        normalized, batch_mean, batch_inv_std = batch_norm_train(
            input, self.gamma, self.beta, axes=self.axes, epsilon=self.epsilon)
        if use_averages:
            normalized = out
        if update_averages:
            running_mean = self.running_mean.clone()
            running_var = self.running_std.clone()
            alpha = 1 - self.momentum
            with warnings.catch_warnings():  # PyTensor 3 marks default_update deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                running_mean.default_update = _running_average(running_mean, batch_mean, alpha)
                # batch_inv_std = 1/sqrt(var + eps): Keras averages var + eps
                running_var.default_update = _running_average(
                    running_var, 1 / pt.sqr(batch_inv_std), alpha)
            normalized = attach(normalized, running_mean, running_var)
        return normalized


class LocalResponseNormalization2DLayer(Layer):
    """Cross-channel local response normalisation (Krizhevsky et al. 2012)
    of a 4D ``(batch, channels, rows, columns)`` input:

    ``b_c = a_c / (k + alpha · sum_{c' = c - n//2}^{c + n//2} a_{c'}²) ** beta``

    (channels outside the input count as zeros; ``alpha`` is not divided by
    ``n``, as in Lasagne and pylearn2).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    alpha : float
        Coefficient of the sum of squares.
    k : float
        Offset.
    beta : float
        Exponent.
    n : int
        Number of adjacent channels to sum over (odd).
    """

    def __init__(self, incoming, alpha=1e-4, k=2, beta=0.75, n=5, **kwargs):
        super().__init__(incoming, **kwargs)
        self.alpha = alpha
        self.k = k
        self.beta = beta
        self.n = n
        if n % 2 == 0:
            raise NotImplementedError("Only works with odd n")

    def get_output_shape_for(self, input_shape):
        return input_shape

    def get_output_for(self, input, **kwargs):
        input_shape = self.input_shape
        if any(s is None for s in input_shape):
            input_shape = input.shape
        half_n = self.n // 2
        input_sqr = pt.sqr(input)
        b, ch, r, c = input_shape
        padding = pt.zeros((b, half_n, r, c), dtype=input.dtype)
        input_sqr = pt.concatenate([padding, input_sqr, padding], axis=1)
        scale = self.k
        for i in range(self.n):
            scale += self.alpha * input_sqr[:, i:i + ch, :, :]
        scale = scale ** self.beta
        return input / scale


class StandardizationLayer(Layer):
    """Normalise each example to zero mean and unit variance over ``axes``:
    ``(x - mean) / sqrt(var + epsilon)`` (biased variance); no parameters,
    the same in training and testing. The basis of :func:`instance_norm`
    and :func:`layer_norm`.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    axes : 'auto', 'spatial', 'features', int or tuple of int
        'auto': the last axis of a 2D input, else all axes but the first two;
        'spatial': all axes but the first two; 'features': all but the first.
    epsilon : float
        Added to the variance.
    """

    def __init__(self, incoming, axes="auto", epsilon=1e-4, **kwargs):
        super().__init__(incoming, **kwargs)
        ndim = len(self.input_shape)
        if axes == "auto":
            axes = (1,) if ndim == 2 else tuple(range(2, ndim))
        elif axes == "spatial":
            axes = tuple(range(2, ndim))
        elif axes == "features":
            axes = tuple(range(1, ndim))
        elif isinstance(axes, int):
            axes = (axes,)
        self.axes = axes
        self.epsilon = epsilon

    def get_output_for(self, input, **kwargs):
        mean = input.mean(self.axes, keepdims=True)
        std = pt.sqrt(input.var(self.axes, keepdims=True) + self.epsilon)
        return (input - mean) / std


def _steal_nonlinearity_and_bias(layer):
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    if hasattr(layer, "b") and layer.b is not None:
        del layer.params[layer.b]
        layer.b = None
    return nonlinearity


def _scale_bias_nonlin(layer, name, nonlinearity, learn_scale=True, learn_bias=True):
    from .special import BiasLayer, NonlinearityLayer, ScaleLayer
    if learn_scale:
        layer = ScaleLayer(layer, shared_axes="auto", name=name and name + "_scale")
    if learn_bias:
        layer = BiasLayer(layer, shared_axes="auto", name=name and name + "_bias")
    if nonlinearity is not None:
        layer = NonlinearityLayer(layer, nonlinearity, name=name and name + "_nonlin")
    return layer


def instance_norm(layer, learn_scale=True, learn_bias=True, **kwargs):
    """Instance normalisation (Ulyanov et al. 2016) after ``layer``'s
    linear part: removes its nonlinearity and bias, stacks a
    :class:`StandardizationLayer` over the spatial axes, then (optionally) a
    :class:`ScaleLayer` and a :class:`BiasLayer` and the nonlinearity.
    Keyword arguments go to the StandardizationLayer; its name defaults to
    the layer's name + '_in'. Returns the topmost new layer."""
    nonlinearity = _steal_nonlinearity_and_bias(layer)
    in_name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + "_in")
    layer = StandardizationLayer(layer, axes="spatial", name=in_name, **kwargs)
    return _scale_bias_nonlin(layer, in_name, nonlinearity, learn_scale, learn_bias)


def layer_norm(layer, **kwargs):
    """Layer normalisation (Ba et al. 2016) after ``layer``'s linear part:
    removes its nonlinearity and bias, stacks a :class:`StandardizationLayer`
    over all axes but the first, a :class:`ScaleLayer`, a :class:`BiasLayer`
    and the nonlinearity. Keyword arguments go to the StandardizationLayer;
    its name defaults to the layer's name + '_ln'. Returns the topmost new
    layer."""
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    ln_name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + "_ln")
    if hasattr(layer, "b") and layer.b is not None:
        del layer.params[layer.b]
        layer.b = None
    layer = StandardizationLayer(layer, axes="features", name=ln_name, **kwargs)
    return _scale_bias_nonlin(layer, ln_name, nonlinearity)
