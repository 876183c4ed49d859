"""Miscellaneous layers (Lasagne's ``lasagne.layers.special``)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable
from pytensor.tensor.random.utils import RandomStream

from .. import init, nonlinearities
from ..ops.shape import broadcast_pattern
from ..random import get_rng
from ..utils import as_tuple, floatX
from .base import Layer, MergeLayer

__all__ = ["NonlinearityLayer", "BiasLayer", "ScaleLayer", "standardize", "ExpressionLayer",
           "InverseLayer", "TransformerLayer", "TPSTransformerLayer",
           "ParametricRectifierLayer", "prelu", "RandomizedRectifierLayer", "rrelu"]


class NonlinearityLayer(Layer):
    """Apply a nonlinearity (rectify by default; None means identity)."""

    def __init__(self, incoming, nonlinearity=nonlinearities.rectify, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity

    def get_output_for(self, input, **kwargs):
        return self.nonlinearity(input)


def _shared_axes(layer, shared_axes, allow_all=False):
    if shared_axes == "auto":
        return (0,) + tuple(range(2, len(layer.input_shape)))
    if allow_all and shared_axes == "all":
        return tuple(range(len(layer.input_shape)))
    if isinstance(shared_axes, int):
        return (shared_axes,)
    return tuple(shared_axes)


def _param_shape(layer, shared_axes, message):
    shape = [size for axis, size in enumerate(layer.input_shape) if axis not in shared_axes]
    if any(size is None for size in shape):
        raise ValueError(message)
    return shape


class BiasLayer(Layer):
    """Add a learned bias, shared over ``shared_axes`` ('auto': all but axis 1)."""

    def __init__(self, incoming, b=init.Constant(0), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes = _shared_axes(self, shared_axes)
        if b is None:
            self.b = None
        else:
            shape = _param_shape(self, self.shared_axes, "BiasLayer needs specified input "
                                 "sizes for all axes that biases are not shared over.")
            self.b = self.add_param(b, shape, "b", regularizable=False)

    def get_output_for(self, input, **kwargs):
        if self.b is None:
            return input
        return input + self.b.dimshuffle(broadcast_pattern(input.ndim, self.shared_axes))


class ScaleLayer(Layer):
    """Multiply by a learned scale, shared over ``shared_axes``."""

    def __init__(self, incoming, scales=init.Constant(1), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes = _shared_axes(self, shared_axes)
        shape = _param_shape(self, self.shared_axes, "ScaleLayer needs specified input "
                             "sizes for all axes that scales are not shared over.")
        self.scales = self.add_param(scales, shape, "scales", regularizable=False)

    def get_output_for(self, input, **kwargs):
        return input * self.scales.dimshuffle(broadcast_pattern(input.ndim, self.shared_axes))


class ExpressionLayer(Layer):
    """Apply an arbitrary function to the input.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    function : callable
        Maps the input expression to the output expression.
    output_shape : None, tuple, 'auto' or callable
        None: same as the input shape; a tuple: that shape; a callable: maps
        the input shape to the output shape; 'auto': inferred by running the
        function on a dummy input.
    """

    def __init__(self, incoming, function, output_shape=None, **kwargs):
        super().__init__(incoming, **kwargs)
        if output_shape is None:
            self._output_shape = None
        elif output_shape == "auto":
            self._output_shape = "auto"
        elif hasattr(output_shape, "__call__"):
            self.get_output_shape_for = output_shape
        else:
            self._output_shape = tuple(output_shape)
        self.function = function

    def get_output_shape_for(self, input_shape):
        if self._output_shape is None:
            return input_shape
        if self._output_shape == "auto":
            input_shape = (0 if s is None else s for s in input_shape)
            X = pt.alloc(np.asarray(0, dtype=pytensor.config.floatX), *input_shape)
            output_shape = self.function(X).shape.eval()
            output_shape = tuple(s if s else None for s in output_shape)
            return output_shape
        return self._output_shape

    def get_output_for(self, input, **kwargs):
        return self.function(input)


def standardize(layer, offset, scale, shared_axes="auto"):
    """Subtract a fixed ``offset`` and divide by a fixed ``scale`` (e.g. the
    training set's mean and standard deviation) as part of the network:
    a :class:`BiasLayer` holding ``-offset`` and a :class:`ScaleLayer`
    holding ``1 / scale``, both parameters not trainable.

    Parameters
    ----------
    layer : a :class:`Layer` instance or a tuple
    offset, scale : numpy array or shared variable
    shared_axes : 'auto', int or tuple of int
        As for :class:`BiasLayer`.
    """
    layer = BiasLayer(layer, -offset, shared_axes)
    layer.params[layer.b].remove("trainable")
    layer = ScaleLayer(layer, floatX(1.) / scale, shared_axes)
    layer.params[layer.scales].remove("trainable")
    return layer


class InverseLayer(MergeLayer):
    """The "inverse" of a layer for tied-weight autoencoders: the gradient
    of ``layer``'s output with respect to its input, applied to this layer's
    input (a transposed dense layer for a :class:`DenseLayer`, a transposed
    convolution for a convolution, unpooling for max pooling; the derivative
    of the layer's nonlinearity is included).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Shaped like ``layer``'s output.
    layer : a :class:`Layer` instance
        The layer to invert; the output has its input's shape.
    """

    def __init__(self, incoming, layer, **kwargs):
        super().__init__([incoming, layer, layer.input_layer], **kwargs)

    def get_output_shape_for(self, input_shapes):
        return input_shapes[2]

    def get_output_for(self, inputs, **kwargs):
        input, layer_out, layer_in = inputs
        return pytensor.grad(None, wrt=layer_in, known_grads={layer_out: input})


class TransformerLayer(MergeLayer):
    """Spatial transformer (Jaderberg et al. 2015) with an affine transform:
    each output pixel samples the input bilinearly at ``theta · (x, y, 1)``,
    coordinates normalised to [-1, 1].

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        A 4D input ``(batch, channels, rows, columns)``.
    localization_network : a :class:`Layer` instance
        Outputs ``(batch, 6)``: the affine matrices ``[[t1, t2, t3], [t4,
        t5, t6]]`` row by row (identity: ``[1, 0, 0, 0, 1, 0]``).
    downsample_factor : float or tuple of 2 floats
        Output size is the input size divided by this (floored).
    border_mode : {'nearest', 'mirror', 'wrap'}
        How samples outside the image are read.
    """

    def __init__(self, incoming, localization_network, downsample_factor=1,
                 border_mode="nearest", **kwargs):
        super().__init__([incoming, localization_network], **kwargs)
        self.downsample_factor = as_tuple(downsample_factor, 2)
        self.border_mode = border_mode
        input_shp, loc_shp = self.input_shapes
        if loc_shp[-1] != 6 or len(loc_shp) != 2:
            raise ValueError("The localization network must have "
                             "output shape: (batch_size, 6)")
        if len(input_shp) != 4:
            raise ValueError("The input network must have a 4-dimensional "
                             "output shape: (batch_size, num_input_channels, "
                             "input_rows, input_columns)")

    def get_output_shape_for(self, input_shapes):
        return _downsampled_shape(input_shapes[0], self.downsample_factor)

    def get_output_for(self, inputs, **kwargs):
        input, theta = inputs
        return _transform_affine(theta, input, self.downsample_factor, self.border_mode)


def _downsampled_shape(shape, factors):
    return tuple(shape[:2]) + tuple(None if s is None else int(s // f)
                                    for s, f in zip(shape[2:], factors))


def _transform_affine(theta, input, downsample_factor, border_mode):
    num_batch, num_channels, height, width = input.shape
    theta = pt.reshape(theta, (-1, 2, 3))
    out_height = pt.cast(height // downsample_factor[0], "int64")
    out_width = pt.cast(width // downsample_factor[1], "int64")
    grid = _meshgrid(out_height, out_width)  # (3, out_height * out_width)
    t_g = pt.dot(theta, grid)  # (batch, 2, out_height * out_width)
    x_s = t_g[:, 0].flatten()
    y_s = t_g[:, 1].flatten()
    sampled = _interpolate(input.dimshuffle(0, 2, 3, 1), x_s, y_s, out_height, out_width,
                           border_mode)
    output = pt.reshape(sampled, (num_batch, out_height, out_width, num_channels))
    return output.dimshuffle(0, 3, 1, 2)


def _interpolate(im, x, y, out_height, out_width, border_mode):
    """Bilinear sampling of ``im`` (batch, rows, columns, channels) at the
    normalised coordinates ``x``, ``y`` (flat, ``out_height * out_width`` per
    example); returns (batch * out_height * out_width, channels)."""
    num_batch, height, width, channels = im.shape
    floatx = pytensor.config.floatX
    height_f = pt.cast(height, floatx)
    width_f = pt.cast(width, floatx)
    # [-1, 1] -> [0, size - 1]
    x = (x + 1) / 2 * (width_f - 1)
    y = (y + 1) / 2 * (height_f - 1)
    x0_f = pt.floor(x)
    y0_f = pt.floor(y)
    x1_f = x0_f + 1
    y1_f = y0_f + 1
    # pixel indices, mapped into the image by the border mode
    if border_mode == "nearest":
        x0 = pt.clip(x0_f, 0, width_f - 1)
        x1 = pt.clip(x1_f, 0, width_f - 1)
        y0 = pt.clip(y0_f, 0, height_f - 1)
        y1 = pt.clip(y1_f, 0, height_f - 1)
    elif border_mode == "mirror":
        w = 2 * (width_f - 1)
        x0 = pt.minimum(x0_f % w, -x0_f % w)
        x1 = pt.minimum(x1_f % w, -x1_f % w)
        h = 2 * (height_f - 1)
        y0 = pt.minimum(y0_f % h, -y0_f % h)
        y1 = pt.minimum(y1_f % h, -y1_f % h)
    elif border_mode == "wrap":
        x0 = pt.mod(x0_f, width_f)
        x1 = pt.mod(x1_f, width_f)
        y0 = pt.mod(y0_f, height_f)
        y1 = pt.mod(y1_f, height_f)
    else:
        raise ValueError("border_mode must be one of 'nearest', 'mirror', 'wrap'")
    x0, x1, y0, y1 = (pt.cast(v, "int64") for v in (x0, x1, y0, y1))
    # offsets into the image flattened to (batch * rows * columns, channels)
    base = pt.repeat(pt.arange(num_batch, dtype="int64") * (width * height),
                     out_height * out_width)
    base_y0 = base + y0 * width
    base_y1 = base + y1 * width
    im_flat = im.reshape((-1, channels))
    pixel_a = im_flat[base_y0 + x0]
    pixel_b = im_flat[base_y1 + x0]
    pixel_c = im_flat[base_y0 + x1]
    pixel_d = im_flat[base_y1 + x1]
    wa = ((x1_f - x) * (y1_f - y)).dimshuffle(0, "x")
    wb = ((x1_f - x) * (y - y0_f)).dimshuffle(0, "x")
    wc = ((x - x0_f) * (y1_f - y)).dimshuffle(0, "x")
    wd = ((x - x0_f) * (y - y0_f)).dimshuffle(0, "x")
    return pt.sum(pt.stack([wa * pixel_a, wb * pixel_b, wc * pixel_c, wd * pixel_d]), axis=0)


def _linspace(start, stop, num):
    floatx = pytensor.config.floatX
    start = pt.cast(start, floatx)
    stop = pt.cast(stop, floatx)
    num = pt.cast(num, floatx)
    step = (stop - start) / (num - 1)
    return pt.arange(num, dtype=floatx) * step + start


def _meshgrid(height, width):
    """The (3, height * width) grid of target coordinates ``(x_t, y_t, 1)``,
    x varying fastest, as ``np.meshgrid(linspace(-1, 1, width),
    linspace(-1, 1, height))`` flattened (symbolic sizes allowed)."""
    x_t = pt.dot(pt.ones((height, 1)), _linspace(-1.0, 1.0, width).dimshuffle("x", 0))
    y_t = pt.dot(_linspace(-1.0, 1.0, height).dimshuffle(0, "x"), pt.ones((1, width)))
    x_t_flat = x_t.reshape((1, -1))
    y_t_flat = y_t.reshape((1, -1))
    ones = pt.ones_like(x_t_flat)
    return pt.concatenate([x_t_flat, y_t_flat, ones], axis=0)


class TPSTransformerLayer(MergeLayer):
    """Spatial transformer with a thin plate spline (Bookstein 1989): the
    localisation network moves a square grid of control points; each output
    pixel samples the input bilinearly where the spline through the moved
    points sends it (coordinates normalised to [-1, 1]).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        A 4D input ``(batch, channels, rows, columns)``.
    localization_network : a :class:`Layer` instance
        Outputs ``(batch, 2 * control_points)``: the x offsets of all
        control points, then their y offsets (all zero: identity).
    downsample_factor : float or tuple of 2 floats
        Output size is the input size divided by this (floored).
    control_points : int
        Number of control points, a perfect square (default 16).
    precompute_grid : 'auto' or bool
        Compute the spline's basis on the output grid once, in NumPy (needs
        known rows and columns; 'auto': whenever they are known).
    border_mode : {'nearest', 'mirror', 'wrap'}
        How samples outside the image are read.

    Notes
    -----
    The radial basis is ``U(r) = r² log r²`` with ``U(0) = 0`` in both the
    precomputed and the symbolic grid. (Lasagne's symbolic-grid path zeroed
    every ``U`` by a reversed test; lasres computes the same spline on both
    paths, equal to Lasagne's precomputed one.)
    """

    def __init__(self, incoming, localization_network, downsample_factor=1, control_points=16,
                 precompute_grid="auto", border_mode="nearest", **kwargs):
        super().__init__([incoming, localization_network], **kwargs)
        self.downsample_factor = as_tuple(downsample_factor, 2)
        self.control_points = control_points
        self.border_mode = border_mode
        input_shp, loc_shp = self.input_shapes
        if loc_shp[-1] != 2 * control_points or len(loc_shp) != 2:
            raise ValueError("The localization network must have "
                             "output shape: (batch_size, 2*control_points)")
        if round(np.sqrt(control_points)) != np.sqrt(control_points):
            raise ValueError("The number of control points must be a perfect square.")
        if len(input_shp) != 4:
            raise ValueError("The input network must have a 4-dimensional "
                             "output shape: (batch_size, num_input_channels, "
                             "input_rows, input_columns)")
        can_precompute_grid = all(s is not None for s in input_shp[2:])
        if precompute_grid == "auto":
            precompute_grid = can_precompute_grid
        elif precompute_grid and not can_precompute_grid:
            raise ValueError("Grid can only be precomputed if the input "
                             "height and width are pre-specified.")
        self.precompute_grid = precompute_grid
        (self.right_mat, self.L_inv, self.source_points, self.out_height,
         self.out_width) = _initialize_tps(control_points, input_shp, self.downsample_factor,
                                           precompute_grid)

    def get_output_shape_for(self, input_shapes):
        return _downsampled_shape(input_shapes[0], self.downsample_factor)

    def get_output_for(self, inputs, **kwargs):
        input, dest_offsets = inputs
        return _transform_thin_plate_spline(
            dest_offsets, input, self.right_mat, self.L_inv, self.source_points,
            self.out_height, self.out_width, self.precompute_grid, self.downsample_factor,
            self.border_mode)


def _transform_thin_plate_spline(dest_offsets, input, right_mat, L_inv, source_points,
                                 out_height, out_width, precompute_grid, downsample_factor,
                                 border_mode):
    num_batch, num_channels, height, width = input.shape
    num_control_points = source_points.shape[1]
    # destination points (batch, 2, K) = source points + offsets
    dest_points = source_points + pt.reshape(dest_offsets, (num_batch, 2, num_control_points))
    # spline coefficients (batch, 2, K + 3)
    coefficients = pt.dot(dest_points, L_inv[:, 3:].T)
    if precompute_grid:
        transformed_points = pt.dot(coefficients, right_mat)  # (batch, 2, P)
    else:
        out_height = pt.cast(height // downsample_factor[0], "int64")
        out_width = pt.cast(width // downsample_factor[1], "int64")
        orig_grid = _meshgrid(out_height, out_width)[0:2, :]  # (2, P)
        transformed_points = pt.dot(coefficients, _tps_right_matrix(orig_grid, source_points))
    x_transformed = transformed_points[:, 0].flatten()
    y_transformed = transformed_points[:, 1].flatten()
    sampled = _interpolate(input.dimshuffle(0, 2, 3, 1), x_transformed, y_transformed,
                           out_height, out_width, border_mode)
    output = pt.reshape(sampled, (num_batch, out_height, out_width, num_channels))
    return output.dimshuffle(0, 3, 1, 2)


def _tps_right_matrix(grid, source_points):
    """Symbolic (K + 3, P) matrix ``[1; x; y; U(|p - s_k|)]`` for the grid
    points ``grid`` (2, P) and the control points (2, K)."""
    diff = grid.dimshuffle("x", 0, 1) - source_points.T.dimshuffle(0, 1, "x")  # (K, 2, P)
    r_2 = pt.sum(diff ** 2, axis=1)  # (K, P)
    safe = pt.switch(pt.eq(r_2, 0), pt.ones_like(r_2), r_2)
    distances = r_2 * pt.log(safe)
    ones = pt.ones((1, grid.shape[1]), dtype=grid.dtype)
    return pt.concatenate([ones, grid, distances], axis=0)


def _U_func_numpy(x1, y1, x2, y2):
    """Bookstein's U function ``r² log r²`` of two points (0 for equal points)."""
    if x1 == x2 and y1 == y2:
        return 0.
    r_2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    return r_2 * np.log(r_2)


def _initialize_tps(num_control_points, input_shape, downsample_factor, precompute_grid):
    """Source control points (a square grid over [-1, 1]²), the inverse of
    the spline system matrix L and, if ``precompute_grid``, the output grid's
    (K + 3, P) right-hand matrix and the output size, all in floatX."""
    floatx = pytensor.config.floatX
    _, _, height, width = input_shape
    grid_size = int(round(np.sqrt(num_control_points)))
    x_control_source, y_control_source = np.meshgrid(np.linspace(-1, 1, grid_size),
                                                     np.linspace(-1, 1, grid_size))
    source_points = np.vstack((x_control_source.flatten(),
                               y_control_source.flatten())).astype(floatx)
    num_equations = num_control_points + 3
    L = np.zeros((num_equations, num_equations), dtype=floatx)
    L[0, 3:num_equations] = 1.
    L[1:3, 3:num_equations] = source_points
    L[3:num_equations, 0] = 1.
    L[3:num_equations, 1:3] = source_points.T
    for p1 in range(num_control_points):
        for p2 in range(p1, num_control_points):
            L[p1 + 3, p2 + 3] = _U_func_numpy(source_points[0, p1], source_points[1, p1],
                                              source_points[0, p2], source_points[1, p2])
            if p1 != p2:
                L[p2 + 3, p1 + 3] = L[p1 + 3, p2 + 3]
    L_inv = np.linalg.inv(L)
    if precompute_grid:
        out_height = np.array(height // downsample_factor[0]).astype("int64")
        out_width = np.array(width // downsample_factor[1]).astype("int64")
        x_t, y_t = np.meshgrid(np.linspace(-1, 1, int(out_width)),
                               np.linspace(-1, 1, int(out_height)))
        orig_grid = np.vstack([x_t.flatten(), y_t.flatten()]).astype(floatx)
        r_2 = np.sum((orig_grid[np.newaxis, :, :] - source_points.T[:, :, np.newaxis]) ** 2,
                     axis=1)
        with np.errstate(divide="ignore"):
            log_r_2 = np.log(r_2)
        log_r_2[np.isinf(log_r_2)] = 0.
        distances = r_2 * log_r_2
        upper_array = np.concatenate([np.ones((1, orig_grid.shape[1]), dtype=floatx),
                                      orig_grid], axis=0)
        right_mat = np.concatenate([upper_array, distances], axis=0)
        out_height = pt.as_tensor_variable(out_height)
        out_width = pt.as_tensor_variable(out_width)
        right_mat = pt.as_tensor_variable(right_mat)
    else:
        out_height = out_width = right_mat = None
    return (right_mat, pt.as_tensor_variable(L_inv), pt.as_tensor_variable(source_points),
            out_height, out_width)


def _relu(x, alpha):
    """Theano's ``relu(x, alpha)``: ``max(x, alpha·x)`` as
    ``0.5·(1 + alpha)·x + 0.5·(1 - alpha)·|x|``."""
    f1 = 0.5 * (1 + alpha)
    f2 = 0.5 * (1 - alpha)
    return f1 * x + f2 * abs(x)


class ParametricRectifierLayer(Layer):
    """Parametric rectifier (He et al. 2015): ``max(x, 0) + alpha·min(x, 0)``
    with learned ``alpha``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    alpha : initializer, array, shared variable or expression
        Initial slopes (default 0.25), of the input's shape without the
        shared axes.
    shared_axes : 'auto', 'all', int or tuple of int
        'auto': all axes but the second; 'all': one scalar slope.
    """

    def __init__(self, incoming, alpha=init.Constant(0.25), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes = _shared_axes(self, shared_axes, allow_all=True)
        shape = _param_shape(self, self.shared_axes, "ParametricRectifierLayer needs input "
                             "sizes for all axes that alpha's are not shared over.")
        self.alpha = self.add_param(alpha, shape, name="alpha", regularizable=False)

    def get_output_for(self, input, **kwargs):
        return _relu(input, self.alpha.dimshuffle(broadcast_pattern(input.ndim, self.shared_axes)))


def _stack_instead_of_nonlinearity(layer, layer_class, **kwargs):
    """Set ``layer``'s nonlinearity (if it has one) to the identity and stack
    a ``layer_class(layer, **kwargs)`` on it, as Lasagne's prelu/rrelu do."""
    if getattr(layer, "nonlinearity", None) is not None:
        layer.nonlinearity = nonlinearities.identity
    return layer_class(layer, **kwargs)


def prelu(layer, **kwargs):
    """Replace ``layer``'s nonlinearity by a :class:`ParametricRectifierLayer`
    stacked on it (keyword arguments go to that layer); returns it."""
    return _stack_instead_of_nonlinearity(layer, ParametricRectifierLayer, **kwargs)


class RandomizedRectifierLayer(Layer):
    """Randomized leaky rectifier (Xu et al. 2015): in training the negative
    slope is drawn from U(lower, upper) (shared over ``shared_axes``); with
    ``deterministic=True`` it is ``(lower + upper) / 2``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    lower, upper : float or scalar expression
        Bounds of the slopes (defaults 0.3 and 0.8).
    shared_axes : 'auto', 'all', int or tuple of int
        Axes sharing one slope ('auto': all but the second).
    """

    def __init__(self, incoming, lower=0.3, upper=0.8, shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self._srng = RandomStream(get_rng().randint(1, 2147462579))  # as Lasagne seeds it
        self.lower = lower
        self.upper = upper
        if not isinstance(lower > upper, Variable) and lower > upper:
            raise ValueError("Upper bound for RandomizedRectifierLayer needs "
                             "to be higher than lower bound.")
        self.shared_axes = _shared_axes(self, shared_axes, allow_all=True)

    def get_output_for(self, input, deterministic=False, **kwargs):
        if deterministic or self.upper == self.lower:
            return _relu(input, (self.upper + self.lower) / 2.0)
        shape = list(self.input_shape)
        if any(s is None for s in shape):
            shape = [input.shape[a] for a in range(input.ndim)]
        for ax in self.shared_axes:
            shape[ax] = 1
        rnd = self._srng.uniform(self.lower, self.upper, size=tuple(shape),
                                 dtype=pytensor.config.floatX)
        rnd = pt.specify_broadcastable(rnd, *self.shared_axes)
        return _relu(input, rnd)


def rrelu(layer, **kwargs):
    """Replace ``layer``'s nonlinearity by a :class:`RandomizedRectifierLayer`
    stacked on it (keyword arguments go to that layer); returns it."""
    return _stack_instead_of_nonlinearity(layer, RandomizedRectifierLayer, **kwargs)
