"""lasres.layers.special additions (Lasagne's standardize, InverseLayer,
TransformerLayer, TPSTransformerLayer, ParametricRectifierLayer, prelu,
RandomizedRectifierLayer, rrelu) against NumPy written here from the
documented definitions."""
import numpy as np
import pytensor
import pytest

import lasres  # noqa: F401
from lasres import init, nonlinearities
from lasres import layers as L


def _f(layer, *ins, **kw):
    return pytensor.function(list(ins), L.get_output(layer, **kw))


# ---------------------------------------------------------------- sampling
def np_sample(img, xs, ys, border):
    """Bilinear sampling of img (C, H, W) at normalised coordinates xs, ys
    (flat arrays), reading outside pixels by the border mode."""
    C, H, W = img.shape
    x = (xs + 1) / 2 * (W - 1)
    y = (ys + 1) / 2 * (H - 1)

    def fix(i, n):
        if border == "nearest":
            return min(max(i, 0), n - 1)
        if border == "wrap":
            return i % n
        period = 2 * (n - 1)  # mirror: reflect about both edges
        r = i % period
        return r if r <= n - 1 else period - r
    out = np.zeros((C, len(xs)))
    for p in range(len(xs)):
        x0, y0 = int(np.floor(x[p])), int(np.floor(y[p]))
        for dx in (0, 1):
            for dy in (0, 1):
                wx = (x[p] - x0) if dx else (x0 + 1 - x[p])
                wy = (y[p] - y0) if dy else (y0 + 1 - y[p])
                out[:, p] += wx * wy * img[:, fix(y0 + dy, H), fix(x0 + dx, W)]
    return out


def np_grid(oh, ow):
    xt, yt = np.meshgrid(np.linspace(-1, 1, ow), np.linspace(-1, 1, oh))
    return np.stack([xt.ravel(), yt.ravel()])


def np_affine(theta, imgs, ds, border):
    N, C, H, W = imgs.shape
    oh, ow = int(H // ds[0]), int(W // ds[1])
    grid = np.vstack([np_grid(oh, ow), np.ones(oh * ow)])
    return np.stack([np_sample(imgs[n], *(theta[n].reshape(2, 3) @ grid), border)
                     .reshape(C, oh, ow) for n in range(N)])


@pytest.mark.parametrize("border", ["nearest", "mirror", "wrap"])
@pytest.mark.parametrize("ds", [1, (2, 1.5)])
def test_transformer_layer_matches_numpy_bilinear_sampling(border, ds):
    rng = np.random.RandomState(0)
    l_in = L.InputLayer((2, 3, 7, 8))
    l_loc = L.InputLayer((2, 6))
    layer = L.TransformerLayer(l_in, l_loc, downsample_factor=ds, border_mode=border)
    imgs = rng.standard_normal((2, 3, 7, 8)).astype("float32")
    # a rotation+zoom+shift reaching outside the image, and the identity
    theta = np.array([[1.2, 0.3, 0.25, -0.4, 0.9, -0.3], [1, 0, 0, 0, 1, 0]], "float32")
    got = _f(layer, l_in.input_var, l_loc.input_var)(imgs, theta)
    dsx = (ds, ds) if np.isscalar(ds) else ds
    assert layer.output_shape == (2, 3, int(7 // dsx[0]), int(8 // dsx[1])) == got.shape
    ref = np_affine(theta.astype(float), imgs.astype(float), dsx, border)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    if ds == 1:
        np.testing.assert_allclose(got[1], imgs[1], atol=1e-5)  # identity


def test_transformer_gradients_and_errors():
    rng = np.random.RandomState(1)
    theta = np.array([[0.9, 0.1, 0.05, -0.2, 1.1, 0.1]])

    def fn(img, th):
        return L.get_output(L.TransformerLayer(L.InputLayer((1, 2, 5, 6), input_var=img),
                                               L.InputLayer((1, 6), input_var=th)))
    old = pytensor.config.floatX
    pytensor.config.floatX = "float64"
    try:
        pytensor.gradient.verify_grad(fn, [rng.standard_normal((1, 2, 5, 6)), theta], rng=rng)
    finally:
        pytensor.config.floatX = old
    with pytest.raises(ValueError, match=r"output shape: \(batch_size, 6\)"):
        L.TransformerLayer(L.InputLayer((2, 3, 7, 8)), L.InputLayer((2, 5)))
    with pytest.raises(ValueError, match="4-dimensional"):
        L.TransformerLayer(L.InputLayer((2, 3, 7)), L.InputLayer((2, 6)))
    with pytest.raises(ValueError, match="border_mode must be one of"):
        L.get_output(L.TransformerLayer(L.InputLayer((2, 3, 7, 8)), L.InputLayer((2, 6)),
                                        border_mode="reflect"))
    assert L.TransformerLayer(L.InputLayer((None, 3, None, 8)), L.InputLayer((None, 6)),
                              downsample_factor=2).output_shape == (None, 3, None, 4)


def np_tps(offsets, imgs, ds, n_points, border):
    """Thin plate spline warp (Bookstein 1989) solved in float64 here."""
    N, C, H, W = imgs.shape
    g = int(round(np.sqrt(n_points)))
    sx, sy = np.meshgrid(np.linspace(-1, 1, g), np.linspace(-1, 1, g))
    src = np.stack([sx.ravel(), sy.ravel()])  # (2, K)

    def U(d2):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d2 == 0, 0.0, d2 * np.log(d2))
    K = U(((src[:, :, None] - src[:, None, :]) ** 2).sum(0))
    P = np.vstack([np.ones(n_points), src]).T  # (K, 3)
    Lm = np.zeros((n_points + 3, n_points + 3))
    Lm[:3, 3:] = P.T
    Lm[3:, :3] = P
    Lm[3:, 3:] = K
    oh, ow = int(H // ds[0]), int(W // ds[1])
    grid = np_grid(oh, ow)
    basis = np.vstack([np.ones(oh * ow), grid,
                       U(((grid[:, None, :] - src[:, :, None]) ** 2).sum(0))])
    out = []
    for n in range(N):
        dest = src + offsets[n].reshape(2, n_points)
        coef = np.linalg.solve(Lm, np.hstack([np.zeros((2, 3)), dest]).T)  # (K + 3, 2)
        xs, ys = coef.T @ basis
        out.append(np_sample(imgs[n], xs, ys, border).reshape(C, oh, ow))
    return np.stack(out)


@pytest.mark.parametrize("precompute", [True, False])
def test_tps_transformer_matches_numpy_spline(precompute):
    rng = np.random.RandomState(2)
    shape = (2, 2, 6, 7)
    l_in = L.InputLayer(shape)
    l_loc = L.InputLayer((2, 32))
    layer = L.TPSTransformerLayer(l_in, l_loc, control_points=16, precompute_grid=precompute,
                                  downsample_factor=(1, 1.5), border_mode="mirror")
    assert layer.precompute_grid == precompute
    imgs = rng.standard_normal(shape).astype("float32")
    offsets = np.vstack([rng.uniform(-0.2, 0.2, 32), np.zeros(32)]).astype("float32")
    got = _f(layer, l_in.input_var, l_loc.input_var)(imgs, offsets)
    assert got.shape == layer.output_shape == (2, 2, 6, 4)
    ref = np_tps(offsets.astype(float), imgs.astype(float), (1, 1.5), 16, "mirror")
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)


def test_tps_identity_and_errors():
    l_in = L.InputLayer((None, 1, 5, 5))
    layer = L.TPSTransformerLayer(l_in, L.DenseLayer(l_in, 2 * 9, W=init.Constant(0.),
                                                     b=init.Constant(0.), nonlinearity=None),
                                  control_points=9)
    img = np.random.RandomState(3).standard_normal((2, 1, 5, 5)).astype("float32")
    np.testing.assert_allclose(_f(layer, l_in.input_var)(img), img, atol=1e-4)
    assert L.TPSTransformerLayer(L.InputLayer((None, 1, None, 5)), L.InputLayer((None, 32))
                                 ).precompute_grid is False
    with pytest.raises(ValueError, match="perfect square"):
        L.TPSTransformerLayer(l_in, L.InputLayer((None, 10)), control_points=5)
    with pytest.raises(ValueError, match="2\\*control_points"):
        L.TPSTransformerLayer(l_in, L.InputLayer((None, 10)), control_points=16)
    with pytest.raises(ValueError, match="Grid can only be precomputed"):
        L.TPSTransformerLayer(L.InputLayer((None, 1, None, 5)), L.InputLayer((None, 32)),
                              precompute_grid=True)


# ---------------------------------------------------------------- rectifiers
@pytest.mark.parametrize("shared_axes,alpha_shape", [
    ("auto", (3,)), ("all", ()), ((0, 3), (3, 4)), (0, (3, 4, 5))])
def test_parametric_rectifier(shared_axes, alpha_shape):
    rng = np.random.RandomState(4)
    l_in = L.InputLayer((2, 3, 4, 5))
    alpha = rng.uniform(0.1, 0.5, alpha_shape).astype("float32")
    layer = L.ParametricRectifierLayer(l_in, alpha=alpha, shared_axes=shared_axes)
    assert layer.alpha.get_value().shape == alpha_shape
    assert layer.get_params(regularizable=True) == []
    x = rng.standard_normal((2, 3, 4, 5)).astype("float32")
    axes = {"auto": (0, 2, 3), "all": (0, 1, 2, 3)}.get(shared_axes, shared_axes)
    axes = (axes,) if isinstance(axes, int) else axes
    a = alpha.reshape([1 if d in axes else s for d, s in enumerate(x.shape)])
    np.testing.assert_allclose(_f(layer, l_in.input_var)(x),
                               np.maximum(x, 0) + a * np.minimum(x, 0), rtol=1e-6, atol=1e-7)


def test_prelu_and_rrelu_replace_the_nonlinearity():
    l_in = L.InputLayer((None, 6))
    dense = L.DenseLayer(l_in, 4)
    top = L.prelu(dense)
    assert isinstance(top, L.ParametricRectifierLayer) and top.input_layer is dense
    assert dense.nonlinearity is nonlinearities.identity
    assert np.allclose(top.alpha.get_value(), 0.25)  # Lasagne's default
    dense2 = L.DenseLayer(l_in, 4)
    top2 = L.rrelu(dense2, lower=0.1, upper=0.2)
    assert isinstance(top2, L.RandomizedRectifierLayer) and dense2.nonlinearity is \
        nonlinearities.identity
    with pytest.raises(ValueError, match="needs input sizes"):
        L.ParametricRectifierLayer(L.InputLayer((None, None)))


def test_randomized_rectifier():
    l_in = L.InputLayer((50, 4, 3))
    layer = L.RandomizedRectifierLayer(l_in, lower=0.2, upper=0.6)
    x = -np.abs(np.random.RandomState(5).standard_normal((50, 4, 3))).astype("float32") - 0.1
    det = _f(layer, l_in.input_var, deterministic=True)(x)
    np.testing.assert_allclose(det, 0.4 * x, rtol=1e-6)
    train = _f(layer, l_in.input_var)(x)
    slopes = train / x
    # one slope per channel (shared over batch and the trailing axis), in range
    assert np.allclose(slopes, slopes[:1, :, :1], rtol=1e-5)
    assert np.all((slopes >= 0.2 - 1e-6) & (slopes <= 0.6 + 1e-6))
    assert len(np.unique(np.round(slopes[0, :, 0], 5))) == 4
    xp = np.abs(x)
    np.testing.assert_allclose(_f(layer, l_in.input_var)(xp), xp, rtol=1e-6)  # positives pass
    per_unit = L.RandomizedRectifierLayer(l_in, shared_axes=())
    s = _f(per_unit, l_in.input_var)(x) / x
    assert len(np.unique(np.round(s, 5))) > 100
    same = L.RandomizedRectifierLayer(l_in, lower=0.3, upper=0.3)
    np.testing.assert_allclose(_f(same, l_in.input_var)(x), 0.3 * x, rtol=1e-6)
    with pytest.raises(ValueError, match="Upper bound for RandomizedRectifierLayer"):
        L.RandomizedRectifierLayer(l_in, lower=0.7, upper=0.2)


# ---------------------------------------------------------------- standardize, inverse
def test_standardize():
    rng = np.random.RandomState(6)
    data = rng.standard_normal((20, 5)) * 3 + 1
    offset, scale = data.mean(0), data.std(0)
    l_in = L.InputLayer((None, 5))
    layer = L.standardize(l_in, offset, scale, shared_axes=0)
    assert isinstance(layer, L.ScaleLayer) and isinstance(layer.input_layer, L.BiasLayer)
    assert L.get_all_params(layer, trainable=True) == []
    assert len(L.get_all_params(layer)) == 2
    out = _f(layer, l_in.input_var)(data.astype("float32"))
    np.testing.assert_allclose(out, (data - offset) / scale, rtol=1e-5, atol=1e-5)
    conv_in = L.InputLayer((None, 3, 4, 4))
    layer = L.standardize(conv_in, np.arange(3.0), np.ones(3) * 2)  # 'auto': per channel
    x = rng.standard_normal((2, 3, 4, 4)).astype("float32")
    np.testing.assert_allclose(_f(layer, conv_in.input_var)(x),
                               (x - np.arange(3.0)[:, None, None]) / 2, rtol=1e-5, atol=1e-6)


def test_inverse_layer_of_dense_and_of_max_pooling():
    rng = np.random.RandomState(7)
    l_in = L.InputLayer((4, 6))
    W = rng.standard_normal((6, 3)).astype("float32")
    dense = L.DenseLayer(l_in, 3, W=W, nonlinearity=nonlinearities.tanh)
    inv = L.InverseLayer(dense, dense)
    assert inv.output_shape == (4, 6)
    x = rng.standard_normal((4, 6)).astype("float32")
    got = _f(inv, l_in.input_var)(x)
    d = 1 - np.tanh(x @ W) ** 2  # the nonlinearity's derivative is included
    y = np.tanh(x @ W)
    np.testing.assert_allclose(got, (y * d) @ W.T, rtol=1e-4, atol=1e-5)
    # unpooling: each pooled value goes back to its maximum's position
    p_in = L.InputLayer((1, 1, 4, 4))
    pool = L.MaxPool2DLayer(p_in, 2)
    unpool = L.InverseLayer(pool, pool)
    img = rng.permutation(16).reshape(1, 1, 4, 4).astype("float32")
    got = _f(unpool, p_in.input_var)(img)
    ref = np.zeros_like(img)
    for i in range(2):
        for j in range(2):
            block = img[0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            a, b = np.unravel_index(block.argmax(), (2, 2))
            ref[0, 0, 2 * i + a, 2 * j + b] = block.max()
    np.testing.assert_array_equal(got, ref)
