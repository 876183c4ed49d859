"""The Lasagne layers in PyTorch, as copied verbatim into every exported
``model.py`` (so that the file needs nothing but torch). This module is
source text for :mod:`.torch_codegen`; lasres never imports torch itself."""

RUNTIME = r'''
import torch
import torch.nn as nn
import torch.nn.functional as F


# --- Lasagne's nonlinearities ----------------------------------------------------------
def nonlinearity(x, spec):
    """``spec``: a lasagne.nonlinearities name, with its arguments."""
    name, args = spec[0], spec[1:]
    if name in ("identity", "linear"):
        return x
    if name == "rectify":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "softmax":  # over the second axis of a 2-d input, as Lasagne's
        return torch.softmax(x, dim=-1)
    if name == "softplus":
        return F.softplus(x)
    if name == "elu":
        return F.elu(x)
    if name == "leaky_rectify":  # x above 0, leakiness * x below
        return torch.where(x > 0, x, x * args[0])
    if name == "selu":  # scale * x above 0, scale * scale_neg * (exp(x) - 1) below
        scale, scale_neg = args
        return scale * torch.where(x > 0, x, scale_neg * (torch.exp(x) - 1))
    if name == "scaled_tanh":
        scale_in, scale_out = args
        return scale_out * torch.tanh(scale_in * x)
    raise ValueError(f"unknown nonlinearity {name!r}")


# --- helpers ---------------------------------------------------------------------------
def dimshuffle(x, pattern):
    """Theano's dimshuffle: a permutation with broadcastable axes dropped
    and 'x' (new unit axes) inserted."""
    kept = [p for p in pattern if p != "x"]
    dropped = [d for d in range(x.dim()) if d not in kept]
    for d in reversed(dropped):
        x = x.squeeze(d)
    remaining = [d for d in range(x.dim() + len(dropped)) if d not in dropped]
    perm = [remaining.index(p) for p in kept]
    if perm != sorted(perm):
        x = x.permute(perm)
    for i, p in enumerate(pattern):
        if p == "x":
            x = x.unsqueeze(i)
    return x


def index(x, key):
    """``x[key]`` with NumPy's semantics, negative slice steps included."""
    out = []
    for axis, k in enumerate(key):
        if isinstance(k, slice) and k.step is not None and k.step < 0:
            n = x.shape[axis]
            r = range(n)[k]
            x = x.flip(axis)
            step = -k.step
            k = slice(n - 1 - r.start, n - 1 - r.start + len(r) * step, step) if len(r) \
                else slice(0, 0)
        out.append(k)
    return x[tuple(out)]


def pool_length(n, ws, stride, pad, ignore_border):
    """Theano's pooled length of one axis."""
    if ignore_border:
        return max(0, (n + 2 * pad - ws) // stride + 1)
    if stride >= ws:
        return (n - 1) // stride + 1
    return max(0, (n - 1 - ws + stride) // stride) + 1


def pool2d(x, ws, stride, pad, mode, ignore_border):
    """Theano's pool_2d (Lasagne's Pool2DLayer): max pads with -inf;
    'average_exc_pad' divides by the pixels of the image in the window,
    'average_inc_pad' by the window's pixels inside the padded image;
    ignore_border=False keeps the partial windows at the end."""
    sizes = x.shape[-2:]
    out = [pool_length(n, w, s, p, ignore_border) for n, w, s, p in zip(sizes, ws, stride, pad)]
    end = [max(0, (o - 1) * s + w - n - p) for o, s, w, n, p in zip(out, stride, ws, sizes, pad)]
    widths = (pad[1], end[1], pad[0], end[0])
    if mode == "max":
        return F.max_pool2d(F.pad(x, widths, value=-float("inf")), ws, stride)
    sums = F.avg_pool2d(F.pad(x, widths), ws, stride, divisor_override=1)
    if mode == "sum":
        return sums
    if mode == "average_inc_pad" and ignore_border:  # the window's pixels, padding included
        return sums / (ws[0] * ws[1])
    ones = torch.ones((1, 1) + tuple(sizes), dtype=x.dtype, device=x.device)
    counts = F.avg_pool2d(F.pad(ones, widths), ws, stride, divisor_override=1)
    return sums / counts


def flip(w, n):
    """Filters flipped over their ``n`` spatial axes (a true convolution)."""
    return torch.flip(w, dims=tuple(range(2, 2 + n)))


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


# --- Lasagne's layers ------------------------------------------------------------------
def channel_view(p, ndim, axes):
    """A batch-norm parameter of the non-normalised axes, reshaped to broadcast
    over a tensor of ``ndim`` dimensions normalised over ``axes``."""
    sizes = iter(p.shape)
    return p.reshape([1 if d in axes else next(sizes) for d in range(ndim)])


class Input(nn.Module):
    """lasagne.layers.InputLayer: checks the number of dimensions."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        if x.dim() != len(self.shape):
            raise ValueError(f"expected a {len(self.shape)}-d input {self.shape}, got "
                             f"{tuple(x.shape)}")
        return x


class Conv(nn.Module):
    """lasagne.layers.Conv{1,2,3}DLayer (and the dnn/corrmm variants):
    ``nonlinearity(conv(x, W) + b)``; ``flip_filters=True`` convolves
    (flips W), False correlates; ``pad`` as resolved by Lasagne ('same' =
    filter_size // 2, 'full' = filter_size - 1); W is
    ``(num_filters, channels // num_groups, *filter_size)``."""

    def __init__(self, W_shape, b_shape, stride, pad, flip_filters, num_groups, untie_biases,
                 nonlinearity):
        super().__init__()
        self.n = len(W_shape) - 2
        self.stride, self.pad = tuple(stride), tuple(pad)
        self.flip_filters, self.num_groups = flip_filters, num_groups
        self.untie_biases, self.nonlinearity = untie_biases, nonlinearity
        self.W = nn.Parameter(torch.empty(W_shape))
        self.b = None if b_shape is None else nn.Parameter(torch.empty(b_shape))

    def forward(self, x):
        W = flip(self.W, self.n) if self.flip_filters else self.W
        tied = self.b if self.b is not None and not self.untie_biases else None
        y = _CONV[self.n](x, W, tied, self.stride, self.pad, 1, self.num_groups)
        if self.b is not None and self.untie_biases:
            y = y + self.b
        return nonlinearity(y, self.nonlinearity)


class Dense(nn.Module):
    """lasagne.layers.DenseLayer: ``nonlinearity(x.flatten(lead) @ W + b)``."""

    def __init__(self, W_shape, b_shape, num_leading_axes, nonlinearity):
        super().__init__()
        self.num_leading_axes, self.nonlinearity = num_leading_axes, nonlinearity
        self.W = nn.Parameter(torch.empty(W_shape))
        self.b = None if b_shape is None else nn.Parameter(torch.empty(b_shape))

    def forward(self, x):
        lead = self.num_leading_axes % x.dim() if self.num_leading_axes < 0 \
            else self.num_leading_axes
        if x.dim() > lead + 1:
            x = x.reshape(tuple(x.shape[:lead]) + (-1,))
        y = torch.matmul(x, self.W)
        if self.b is not None:
            y = y + self.b
        return nonlinearity(y, self.nonlinearity)


class BatchNorm(nn.Module):
    """lasagne.layers.BatchNormLayer, with Lasagne's semantics: training
    normalises with the batch's mean and ``inv_std = 1/sqrt(var + epsilon)``
    (biased variance, epsilon inside the root) and moves the stored ``mean``
    and ``inv_std`` (not the variance) by ``stat = (1 - alpha) stat + alpha
    batch_stat``; evaluation uses the stored ones:
    ``y = (x - mean) * (gamma * inv_std) + beta``."""

    def __init__(self, shape, axes, epsilon, alpha, beta=True, gamma=True):
        super().__init__()
        self.axes, self.epsilon, self.alpha = tuple(axes), epsilon, alpha
        self.beta = nn.Parameter(torch.empty(shape)) if beta else None
        self.gamma = nn.Parameter(torch.empty(shape)) if gamma else None
        self.register_buffer("mean", torch.empty(shape))
        self.register_buffer("inv_std", torch.empty(shape))

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=self.axes)
            inv_std = 1.0 / torch.sqrt(x.var(dim=self.axes, unbiased=False) + self.epsilon)
            with torch.no_grad():
                self.mean.mul_(1 - self.alpha).add_(self.alpha * mean)
                self.inv_std.mul_(1 - self.alpha).add_(self.alpha * inv_std)
        else:
            mean, inv_std = self.mean, self.inv_std
        scale = inv_std if self.gamma is None else self.gamma * inv_std
        n, axes = x.dim(), self.axes
        y = (x - channel_view(mean, n, axes)) * channel_view(scale, n, axes)
        return y if self.beta is None else y + channel_view(self.beta, n, axes)


class KerasBatchNorm(nn.Module):
    """lasres.layers.KerasBatchNormLayer (Keras 1's BatchNormalization, mode 0):
    ``running_std`` holds a variance; training normalises with the batch's
    mean and biased variance, epsilon inside the root, and moves
    ``running_mean`` and ``running_std`` (towards ``var + epsilon``, as Keras
    1.2 on Theano did) by ``momentum``; evaluation uses the stored ones."""

    def __init__(self, shape, axes, epsilon, momentum):
        super().__init__()
        self.axes, self.epsilon, self.momentum = tuple(axes), epsilon, momentum
        self.gamma = nn.Parameter(torch.empty(shape))
        self.beta = nn.Parameter(torch.empty(shape))
        self.register_buffer("running_mean", torch.empty(shape))
        self.register_buffer("running_std", torch.empty(shape))

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=self.axes)
            var = x.var(dim=self.axes, unbiased=False)
            inv_std = 1.0 / torch.sqrt(var + self.epsilon)
            with torch.no_grad():
                a = 1 - self.momentum
                self.running_mean.mul_(self.momentum).add_(a * mean)
                self.running_std.mul_(self.momentum).add_(a * (1.0 / inv_std ** 2))
        else:
            mean = self.running_mean
            inv_std = 1.0 / torch.sqrt(self.running_std + self.epsilon)
        n, axes = x.dim(), self.axes
        y = (x - channel_view(mean, n, axes)) * channel_view(self.gamma * inv_std, n, axes)
        return y + channel_view(self.beta, n, axes)


class Pool2D(nn.Module):
    """lasagne.layers.Pool2DLayer / MaxPool2DLayer (Theano's pooling)."""

    def __init__(self, pool_size, stride, pad, mode, ignore_border):
        super().__init__()
        self.pool_size, self.stride, self.pad = tuple(pool_size), tuple(stride), tuple(pad)
        self.mode, self.ignore_border = mode, ignore_border

    def forward(self, x):
        return pool2d(x, self.pool_size, self.stride, self.pad, self.mode, self.ignore_border)


class GlobalPool(nn.Module):
    """lasagne.layers.GlobalPoolLayer: mean/max/sum/min over the trailing axes."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        dims = tuple(range(2, x.dim()))
        if self.function == "mean":
            return x.mean(dim=dims)
        if self.function == "sum":
            return x.sum(dim=dims)
        if self.function == "max":
            return torch.amax(x, dim=dims)
        return torch.amin(x, dim=dims)


class ElemwiseSum(nn.Module):
    """lasagne.layers.ElemwiseSumLayer: ``sum(c_i * x_i)``."""

    def __init__(self, coeffs):
        super().__init__()
        self.coeffs = list(coeffs)

    def forward(self, *xs):
        y = None
        for c, x in zip(self.coeffs, xs):
            t = x if c == 1 else x * c
            y = t if y is None else y + t
        return y


class ElemwiseMerge(nn.Module):
    """lasagne.layers.ElemwiseMergeLayer with add/mul/sub/maximum/minimum/true_div."""

    OPS = {"add": torch.add, "mul": torch.mul, "sub": torch.sub, "maximum": torch.maximum,
           "minimum": torch.minimum, "true_div": torch.div}

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = self.OPS[self.function](y, x)
        return y


class Concat(nn.Module):
    """lasagne.layers.ConcatLayer."""

    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def forward(self, *xs):
        return torch.cat(xs, dim=self.axis)


class Nonlinearity(nn.Module):
    """lasagne.layers.NonlinearityLayer."""

    def __init__(self, nonlinearity):
        super().__init__()
        self.nonlinearity = nonlinearity

    def forward(self, x):
        return nonlinearity(x, self.nonlinearity)


class Dropout(nn.Module):
    """lasagne.layers.DropoutLayer: in training, zero with probability p and
    (``rescale``) divide the rest by 1 - p; ``shared_axes`` share one mask
    value; identity in evaluation."""

    def __init__(self, p, rescale, shared_axes):
        super().__init__()
        self.p, self.rescale, self.shared_axes = p, rescale, tuple(shared_axes)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        retain = 1 - self.p
        if self.rescale:
            x = x / retain
        axes = [a % x.dim() for a in self.shared_axes]
        shape = [1 if a in axes else s for a, s in enumerate(x.shape)]
        mask = torch.bernoulli(torch.full(shape, retain, dtype=x.dtype, device=x.device))
        return x * mask


class GaussianNoise(nn.Module):
    """lasagne.layers.GaussianNoiseLayer: x + N(0, sigma) in training."""

    def __init__(self, sigma):
        super().__init__()
        self.sigma = sigma

    def forward(self, x):
        if not self.training or self.sigma == 0:
            return x
        return x + torch.randn_like(x) * self.sigma


class Pad(nn.Module):
    """lasagne.layers.PadLayer: constant padding of the axes after batch_ndim."""

    def __init__(self, widths, val, batch_ndim):
        super().__init__()
        self.widths, self.val, self.batch_ndim = [tuple(w) for w in widths], val, batch_ndim

    def forward(self, x):
        pads = []
        for lo, hi in reversed(self.widths):
            pads += [lo, hi]
        return F.pad(x, pads, value=self.val)


class Flatten(nn.Module):
    """lasagne.layers.FlattenLayer."""

    def __init__(self, outdim):
        super().__init__()
        self.outdim = outdim

    def forward(self, x):
        return x.reshape(tuple(x.shape[:self.outdim - 1]) + (-1,))


class Reshape(nn.Module):
    """lasagne.layers.ReshapeLayer: ``[i]`` copies the input's axis i."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(tuple(x.shape[s[0]] if isinstance(s, list) else s for s in self.shape))


class Dimshuffle(nn.Module):
    """lasagne.layers.DimshuffleLayer."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = tuple(pattern)

    def forward(self, x):
        return dimshuffle(x, self.pattern)


class Slice(nn.Module):
    """lasagne.layers.SliceLayer: an index or a slice along one axis."""

    def __init__(self, index, axis):
        super().__init__()
        self.index, self.axis = index, axis

    def forward(self, x):
        key = (slice(None),) * (self.axis % x.dim()) + (self.index,)
        return index(x, key)


class Bias(nn.Module):
    """lasagne.layers.BiasLayer (b broadcast over shared_axes)."""

    def __init__(self, b_shape, pattern):
        super().__init__()
        self.pattern = tuple(pattern)
        self.b = None if b_shape is None else nn.Parameter(torch.empty(b_shape))

    def forward(self, x):
        return x if self.b is None else x + dimshuffle(self.b, self.pattern)


class Scale(nn.Module):
    """lasagne.layers.ScaleLayer (scales broadcast over shared_axes)."""

    def __init__(self, scales_shape, pattern):
        super().__init__()
        self.pattern = tuple(pattern)
        self.scales = nn.Parameter(torch.empty(scales_shape))

    def forward(self, x):
        return x * dimshuffle(self.scales, self.pattern)


class Translated(nn.Module):
    """Base of the layers translated from their PyTensor graphs."""
    stochastic = False

    def check_mode(self):
        if self.training and self.stochastic:
            raise NotImplementedError(
                f"{type(self).__name__}: the layer is random (or depends on the batch) in "
                "training; only its deterministic pass was exported (call .eval())")
'''
