"""The RoR seed's own networks, layer for layer: ``layout=keras`` of ``ror``
and ``ror-wrn``.

The RoR seed (Residual-of-Residual-Networks, Keras 1.x on Theano) built its
networks with ``ror.py`` (``create_residual_of_residual``) and
``ror_wrn.py`` (``create_pre_residual_of_residual``); its published
RoR-3-WRN-40-2 weights fit only those exact graphs. The builders here
reproduce them with one lasres layer per Keras layer, named as Keras 1 named
them (``convolution2d_7``, ``batchnormalization_3``, ``merge_2``, ...: the
class name in lower case and a per-class counter in construction order;
the four long shortcuts carry the seed's explicit names), so that
:mod:`lasres.weights.keras_h5` can read and write the seed's HDF5 weight files by
the graph's structure. Where the seed differs from the RoR paper (and from
the paper-style builders of :mod:`lasres.models.ror`):

* 2x2 **max-pooling** between stages (``MaxPool2DLayer``), no strided
  convolutions; the stride-4 1x1 level-1 shortcut from the stem output
  (``conv0_level1_shortcut``: rows/columns 0, 4, ..., 28);
* every convolution has a **bias** (Keras's default), and convolves
  (Keras 1 on Theano flips the kernel: ``Conv2DLayer`` with
  ``flip_filters=True``, so the file's kernels are used as they are);
* level-2 shortcuts are 1x1 convolutions of the stage's input (after the
  pooling); the first block of stage 1 always projects (1x1, ``initial``),
  stages 2 and 3 project their first block where the width changes;
* Keras's batch normalisation (:class:`lasres.layers.KerasBatchNormLayer`:
  epsilon 1e-3, variance stored in ``running_std``, momentum 0.99);
* ``ror.py`` drops the ReLU after the sum of stage 3's block ``N - 1``
  (``is_last = (i == N - 1)``, meant as the last block; with ``9N - 1``
  blocks per stage it is not), and puts a ReLU after each level-2 sum;
  ``ror_wrn.py`` has none there (pre-activation blocks) and ends with
  BN-ReLU;
* inits: ``he_normal`` (lasres ``HeNormal(gain='relu')``) everywhere except
  ``ror_wrn.py``'s three level-2 and one level-1 shortcuts, which keep
  Keras's default ``glorot_uniform`` (``GlorotUniform()``), and the Dense
  softmax layer (``glorot_uniform``); biases 0;
* ``AveragePooling2D((8, 8))`` then ``Flatten`` then a softmax ``Dense``
  (``Pool2DLayer`` + ``FlattenLayer`` + ``DenseLayer``);
* dropout (option, default 0) where the seed puts it: after a block's first
  convolution in ``ror_wrn.py``, after its first BN-ReLU in ``ror.py``.

The seed evaluated on ``x / 255`` without mean subtraction; the scripts pick
that preprocessing with this layout (see :data:`PREPROCESSING`).
"""
from ..errors import ArchitectureError
from ..init import Constant, GlorotUniform, HeNormal
from ..layers import (Conv2DLayer, DenseLayer, DropoutLayer, ElemwiseSumLayer, FlattenLayer,
                      InputLayer, KerasBatchNormLayer, MaxPool2DLayer, NonlinearityLayer,
                      Pool2DLayer)
from ..nonlinearities import rectify, softmax

__all__ = ["RoR3_ResNet_Keras", "RoR3_WRN_Keras", "PREPROCESSING"]

#: The preprocessing the seed's weights expect: ``x.astype('float32') / 255``.
PREPROCESSING = "scale255"

_INITS = {"he_normal": lambda: HeNormal(gain="relu"), "glorot_uniform": lambda: GlorotUniform()}


class _KerasGraph(object):
    """Stacks lasres layers the way the seed's Keras calls did, naming each
    as Keras 1 would (``prefix_<n>``, counters per class in call order)."""

    def __init__(self):
        self.counts = {}

    def name(self, prefix, name=None):
        if name:
            return name
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}_{self.counts[prefix]}"

    def input(self, shape, input_var):
        return InputLayer(shape=shape, input_var=input_var, name=self.name("input"))

    def conv(self, l, filters, size, stride=1, init="he_normal", name=None):
        return Conv2DLayer(l, num_filters=filters, filter_size=(size, size),
                           stride=(stride, stride), pad="same", W=_INITS[init](),
                           b=Constant(0.0), nonlinearity=None, flip_filters=True,
                           name=self.name("convolution2d", name))

    def bn(self, l):
        return KerasBatchNormLayer(l, name=self.name("batchnormalization"))

    def relu(self, l):
        return NonlinearityLayer(l, rectify, name=self.name("activation"))

    def dropout(self, l, p):
        return DropoutLayer(l, p=p, name=self.name("dropout")) if p > 0.0 else l

    def merge(self, layers):
        return ElemwiseSumLayer(layers, name=self.name("merge"))

    def maxpool(self, l):
        return MaxPool2DLayer(l, pool_size=2, name=self.name("maxpooling2d"))

    def head(self, l, n_classes):
        size = l.output_shape[2:]
        if any(s is not None and s < 8 for s in size):
            raise ArchitectureError(f"layout=keras ends in the seed's AveragePooling2D((8, 8)), "
                                    f"which needs feature maps of at least 8x8; this input "
                                    f"gives {size[0]}x{size[1]} (use 32x32 images)")
        l = Pool2DLayer(l, pool_size=8, mode="average_exc_pad",
                        name=self.name("averagepooling2d"))
        l = FlattenLayer(l, name=self.name("flatten"))
        return DenseLayer(l, num_units=n_classes, W=GlorotUniform(), b=Constant(0.0),
                          nonlinearity=softmax, name=self.name("dense"))


def _check(input_shape, N, k, dropout):
    if len(input_shape) != 4:
        raise ArchitectureError(f"layout=keras needs image inputs (None, C, H, W), got "
                                f"{input_shape}")
    if N < 1 or k < 1:
        raise ArchitectureError(f"layout=keras needs N >= 1 and k >= 1, got N={N}, k={k}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ArchitectureError(f"dropout must be in [0, 1), got {dropout!r}")


# --- ror_wrn.py: create_pre_residual_of_residual --------------------------------
def _preact_block(g, x, filters, dropout, project):
    """``conv{1,2,3}_block`` of ror_wrn.py: [1x1 projection of the input],
    BN-ReLU-conv, [dropout], BN-ReLU-conv, sum(shortcut, residual)."""
    shortcut = g.conv(x, filters, 1) if project else x
    y = g.conv(g.relu(g.bn(x)), filters, 3)
    y = g.dropout(y, dropout)
    y = g.conv(g.relu(g.bn(y)), filters, 3)
    return g.merge([shortcut, y])


def RoR3_WRN_Keras(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, N=6, k=2,
                   dropout=0.0):
    """The seed's ``ror_wrn.create_pre_residual_of_residual(input_dim,
    nb_classes, N, k, dropout)``: RoR-3 on the wide pre-activation ResNet,
    ``6N + 8`` convolutions (printed depth ``6N + 4``; ``N=6, k=2``:
    RoR-3-WRN-40-2, the published weights).

    Parameters
    ----------
    input_shape : tuple
        ``(None, 3, 32, 32)`` as the seed.
    input_var : PyTensor variable or None
    n_classes : int
    N : int
        Blocks per stage.
    k : int
        Widening factor (stage widths 16k, 32k, 64k).
    dropout : float
        Dropout after each block's first convolution (the seed's 0 adds none).
    """
    _check(input_shape, N, k, dropout)
    g = _KerasGraph()
    x = g.conv(g.input(input_shape, input_var), 16, 3)
    level1 = g.conv(x, 64 * k, 1, stride=4, init="glorot_uniform", name="conv0_level1_shortcut")
    level2 = g.conv(x, 16 * k, 1, init="glorot_uniform", name="conv1_level2_shortcut")
    for i in range(N):
        x = _preact_block(g, x, 16 * k, dropout, project=(i == 0))
    x = g.maxpool(g.merge([x, level2]))
    for stage, filters in ((2, 32 * k), (3, 64 * k)):
        level2 = g.conv(x, filters, 1, init="glorot_uniform",
                        name=f"conv{stage}_level2_shortcut")
        for i in range(N):
            x = _preact_block(g, x, filters, dropout, project=x.output_shape[1] != filters)
        x = g.merge([x, level2])
        if stage == 2:
            x = g.maxpool(x)
    x = g.merge([x, level1])
    x = g.relu(g.bn(x))
    return g.head(x, n_classes)


# --- ror.py: create_residual_of_residual -------------------------------------------
def _post_block(g, x, filters, dropout, project, relu=True):
    """``conv{1,2,3}_block`` of ror.py: [1x1 projection of the input],
    conv-BN-ReLU, [dropout], conv-BN, sum(shortcut, residual), [ReLU]."""
    shortcut = g.conv(x, filters, 1) if project else x
    y = g.relu(g.bn(g.conv(x, filters, 3)))
    y = g.dropout(y, dropout)
    y = g.bn(g.conv(y, filters, 3))
    m = g.merge([shortcut, y])
    return g.relu(m) if relu else m


def RoR3_ResNet_Keras(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, N=2,
                      dropout=0.0):
    """The seed's ``ror.create_residual_of_residual(input_dim, nb_classes, N,
    dropout)``: RoR-3 on the original ResNet, ``9N - 1`` blocks per stage,
    ``6(9N - 1) + 8`` convolutions (``N=1``: RoR-3-56, ``N=2``: RoR-3-110).

    Parameters
    ----------
    input_shape, input_var, n_classes
        As for :func:`RoR3_WRN_Keras`.
    N : int
        The seed's depth parameter.
    dropout : float
        Dropout after each block's first BN-ReLU (the seed's 0 adds none).
    """
    _check(input_shape, N, 1, dropout)
    blocks = 9 * N - 1
    g = _KerasGraph()
    x = g.relu(g.bn(g.conv(g.input(input_shape, input_var), 16, 3)))
    level1 = g.conv(x, 64, 1, stride=4, name="conv0_level1_shortcut")
    level2 = g.conv(x, 16, 1, name="conv1_level2_shortcut")
    for i in range(blocks):
        x = _post_block(g, x, 16, dropout, project=(i == 0))
    x = g.maxpool(g.relu(g.merge([x, level2])))
    level2 = g.conv(x, 32, 1, name="conv2_level2_shortcut")
    for i in range(blocks):
        x = _post_block(g, x, 32, dropout, project=x.output_shape[1] != 32)
    x = g.maxpool(g.relu(g.merge([x, level2])))
    level2 = g.conv(x, 64, 1, name="conv3_level2_shortcut")
    for i in range(blocks):
        # the seed's is_last = (i == N - 1): stage 3's block N-1, not its last
        x = _post_block(g, x, 64, dropout, project=x.output_shape[1] != 64,
                        relu=(i != N - 1))
    x = g.merge([g.merge([x, level2]), level1])
    return g.head(g.relu(x), n_classes)
