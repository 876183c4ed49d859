"""Residual networks of residual networks, RoR-3 (Zhang et al. 2016), as the
Keras seed (Residual-of-Residual-Networks) builds them.

RoR adds shortcuts above the usual ones, in three levels:

* **level 1**: one shortcut from the first convolution's output to the end
  of the last stage (a 1x1 convolution with stride 4 and the last stage's
  width, since it spans both down-samplings);
* **level 2**: one shortcut per stage, from the stage's input to its end
  (a 1x1 projection to the stage's width, stride 2 for the stages that
  halve the resolution);
* **level 3**: the residual blocks' own shortcuts.

Two families, as the seed's ``ror.py`` and ``ror_wrn.py``:

``ror N`` -- RoR-3 on the original (post-activation) ResNet of He et al.
2015, widths 16, 32, 64. Following the seed (and REFERENCE.md), each stage
holds ``9N - 1`` blocks: RoR-3 keeps the depth of the ResNet it builds on
by dropping one block per stage for its extra 1x1 convolutions, and its
depth counts the 3x3 convolutions (``6(9N-1)``), the stem, the four level-1/2
projections and the three block projections: ``6(9N-1) + 8 = 54N + 2``.
``ror 1`` is RoR-3-56, ``ror 2`` RoR-3-110 (the paper's), ``ror 3``
RoR-3-164. A block is conv-BN-ReLU, conv-BN, add, ReLU; the first block of
every stage has a 1x1 projection shortcut (with stride 2 in stages 2 and 3;
in stage 1 it maps 16 to 16 channels, as the seed's ``initial`` block does,
and it is one of the 8). In each stage's last block the level-2 shortcut
(and, in stage 3, the level-1 shortcut) is added to the block's sum before
its ReLU, so every addition is followed by exactly one ReLU.

``ror-wrn N k`` -- RoR-3 on the pre-activation / wide ResNet (Zagoruyko &
Komodakis 2016): widths 16k, 32k, 64k, ``N = (depth - 4) / 6`` blocks per
stage, ``6N + 4`` layers (the seed does not count its four long shortcuts
in WRN depths); RoR-3-WRN-40-2 (5.01% error in the paper) is
``ror-wrn 6 2``, RoR-3-WRN-58-4 ``ror-wrn 9 4``. A block is BN-ReLU-conv,
BN-ReLU-conv, add; its shortcut is the identity, or a 1x1 projection of the
block's input where the shape changes (first block of stages 2 and 3, and of
stage 1 when k > 1). The level-2 and level-1 shortcuts are added after each
stage's last block; a final BN-ReLU precedes the global average pool.

Option ``layout=keras`` builds instead the seed's exact Keras networks
(max-pooling, biases, Keras batch normalisation...; see
:mod:`lasres.models.ror_keras`), which its HDF5 weight files fit.

Option ``dropout`` (probability, default 0) puts a dropout layer between the
two convolutions of every block, where WRN puts it (after the second
BN-ReLU).

Choices where paper and seed leave room:

* Down-sampling is done by the first 3x3 convolution of a stage (stride 2)
  and by strided 1x1 projections, as in the ResNets RoR builds on; the seed
  max-pools between stages instead.
* ``ror``: 3x3 convolutions feed a batch normalisation and have no bias;
  the 1x1 projections keep theirs (they feed a ReLU-ed sum, as in the seed).
  ``ror-wrn``: every convolution is bias-free (each feeds a BN, directly or
  through an addition).
* Weights ``HeNormal(gain='relu')`` (the seed's ``he_normal``), also for
  the level shortcuts; softmax layer ``HeNormal()``.
"""
from ..errors import ArchitectureError
from ..init import HeNormal
from ..layers import (batch_norm, BatchNormLayer, DenseLayer, DropoutLayer, ElemwiseSumLayer,
                      GlobalPoolLayer, InputLayer, NonlinearityLayer)
from ..layers.dnn import Conv2DDNNLayer as ConvLayer
from ..nonlinearities import rectify, softmax
from .blocks import he_norm
from .registry import register_model, total_depth_hint
from .ror_keras import RoR3_ResNet_Keras, RoR3_WRN_Keras

__all__ = ["RoR3_ResNet", "RoR3_WRN", "ror_depth", "ror_wrn_depth", "LAYOUTS"]

#: Option ``layout``: ``'paper'`` (default, the builders of this module) or
#: ``'keras'`` (the seed's exact Keras graph, :mod:`lasres.models.ror_keras`).
LAYOUTS = ("paper", "keras")

def _projection(l, num_filters, stride, bias, name):
    """1x1 projection shortcut."""
    kw = {} if bias else {"b": None}
    return ConvLayer(l, num_filters=num_filters, filter_size=(1, 1), stride=stride, pad="same",
                     W=he_norm, nonlinearity=None, name=name, **kw)


def _dropout(l, p, name):
    return DropoutLayer(l, p=p, name=name) if p else l


def _head(l, n_classes):
    l = GlobalPoolLayer(l, name="pool")
    return DenseLayer(l, num_units=n_classes, W=HeNormal(), nonlinearity=softmax, name="softmax")


# --- RoR-3 on the original ResNet ---------------------------------------------
def _ror_block(l, num_filters, stride=1, project=False, longer=(), dropout=0.0, name=None):
    """conv-BN-ReLU, conv-BN; + its shortcut (+ the longer shortcuts ending
    here, level 2 then level 1), then ReLU."""
    residual = batch_norm(ConvLayer(l, num_filters=num_filters, filter_size=(3, 3), stride=stride,
                                    pad="same", W=he_norm, nonlinearity=rectify,
                                    name=name + "_conv1"))
    residual = _dropout(residual, dropout, name + "_dropout")
    residual = BatchNormLayer(ConvLayer(residual, num_filters=num_filters, filter_size=(3, 3),
                                        pad="same", W=he_norm, b=None, nonlinearity=None,
                                        name=name + "_conv2"), name=name + "_conv2_bn")
    shortcut = _projection(l, num_filters, stride, True, name + "_projection") if project else l
    l = ElemwiseSumLayer([residual, shortcut], name=name + "_sum")
    for level, extra in longer:
        l = ElemwiseSumLayer([l, extra], name=f"{name}_level{level}_sum")
    return NonlinearityLayer(l, rectify, name=name + "_relu")


def RoR3_ResNet(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, N=2,
                blocks_per_stage=None, dropout=0.0):
    """RoR-3 on the original ResNet: ``6(9N-1) + 8`` layers (``N=2``: RoR-3-110).

    Parameters
    ----------
    input_shape : tuple
    input_var : PyTensor variable or None
    n_classes : int
    N : int
        The seed's depth parameter: ``9N - 1`` blocks per stage.
    blocks_per_stage : int or None
        Overrides ``9N - 1`` (small test nets).
    dropout : float
        Dropout probability between a block's convolutions.
    """
    blocks = 9 * N - 1 if blocks_per_stage is None else blocks_per_stage
    l_in = InputLayer(shape=input_shape, input_var=input_var, name="input")
    stem = batch_norm(ConvLayer(l_in, num_filters=16, filter_size=(3, 3), pad="same", W=he_norm,
                                nonlinearity=rectify, name="stem"))
    level1 = _projection(stem, 64, 4, True, "level1_shortcut")
    l = stem
    for stage, num_filters in enumerate((16, 32, 64), start=1):
        stride = 1 if stage == 1 else 2
        level2 = _projection(l, num_filters, stride, True, f"stage{stage}_level2_shortcut")
        for block in range(1, blocks + 1):
            longer = ()
            if block == blocks:
                longer = ((2, level2),) + (((1, level1),) if stage == 3 else ())
            l = _ror_block(l, num_filters, stride if block == 1 else 1, project=(block == 1),
                           longer=longer, dropout=dropout, name=f"stage{stage}_block{block}")
    return _head(l, n_classes)


# --- RoR-3 on the pre-activation / wide ResNet --------------------------------------
def _preact_block(l, num_filters, stride=1, dropout=0.0, name=None):
    """BN-ReLU-conv, BN-ReLU-(dropout)-conv; + identity or 1x1 projection."""
    residual = NonlinearityLayer(BatchNormLayer(l, name=name + "_bn1"), rectify,
                                 name=name + "_relu1")
    residual = ConvLayer(residual, num_filters=num_filters, filter_size=(3, 3), stride=stride,
                         pad="same", W=he_norm, b=None, nonlinearity=None, name=name + "_conv1")
    residual = NonlinearityLayer(BatchNormLayer(residual, name=name + "_bn2"), rectify,
                                 name=name + "_relu2")
    residual = _dropout(residual, dropout, name + "_dropout")
    residual = ConvLayer(residual, num_filters=num_filters, filter_size=(3, 3), pad="same",
                         W=he_norm, b=None, nonlinearity=None, name=name + "_conv2")
    if stride != 1 or l.output_shape[1] != num_filters:
        shortcut = _projection(l, num_filters, stride, False, name + "_projection")
    else:
        shortcut = l
    return ElemwiseSumLayer([residual, shortcut], name=name + "_sum")


def RoR3_WRN(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, N=6, k=2,
             dropout=0.0):
    """RoR-3 on the wide pre-activation ResNet: ``6N + 4`` layers, widths
    16k, 32k, 64k (``N=6, k=2``: RoR-3-WRN-40-2).

    Parameters
    ----------
    input_shape, input_var, n_classes
        As for :func:`RoR3_ResNet`.
    N : int
        Blocks per stage, ``(depth - 4) / 6``.
    k : int
        Widening factor.
    dropout : float
        Dropout probability between a block's convolutions.
    """
    l_in = InputLayer(shape=input_shape, input_var=input_var, name="input")
    stem = ConvLayer(l_in, num_filters=16, filter_size=(3, 3), pad="same", W=he_norm, b=None,
                     nonlinearity=None, name="stem")
    level1 = _projection(stem, 64 * k, 4, False, "level1_shortcut")
    l = stem
    for stage, num_filters in enumerate((16 * k, 32 * k, 64 * k), start=1):
        stride = 1 if stage == 1 else 2
        level2 = _projection(l, num_filters, stride, False, f"stage{stage}_level2_shortcut")
        for block in range(1, N + 1):
            l = _preact_block(l, num_filters, stride if block == 1 else 1, dropout,
                              name=f"stage{stage}_block{block}")
        l = ElemwiseSumLayer([l, level2], name=f"stage{stage}_level2_sum")
    l = ElemwiseSumLayer([l, level1], name="level1_sum")
    l = NonlinearityLayer(BatchNormLayer(l, name="postnorm_bn"), rectify, name="postnorm")
    return _head(l, n_classes)


def ror_depth(N, k=1):
    """``6(9N-1)`` 3x3 convolutions + stem + 4 level-1/2 + 3 block projections."""
    return 6 * (9 * N - 1) + 8


def ror_wrn_depth(N, k=1):
    """WRN depth ``6N + 4`` (long shortcuts not counted, as the seed)."""
    return 6 * N + 4


def _check_ror(depth, width):
    if width != 1:
        raise ArchitectureError(f"ror has no width argument (got width {width}); use "
                                "'ror-wrn N k' for RoR-3 on wide ResNets")


def _check_dropout(dropout):
    if not 0.0 <= float(dropout) < 1.0:
        raise ArchitectureError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ArchitectureError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)} "
                                "('keras' is the RoR seed's exact network, for its weight files)")
    return layout


def _build_ror(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32),
               dropout=0.0, layout="paper"):
    if _check_layout(layout) == "keras":
        return RoR3_ResNet_Keras(input_shape=input_shape, input_var=input_var,
                                 n_classes=num_classes, N=depth, dropout=dropout)
    return RoR3_ResNet(input_shape=input_shape, input_var=input_var, n_classes=num_classes,
                       N=depth, dropout=_check_dropout(dropout))


def _build_ror_wrn(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32),
                   dropout=0.0, layout="paper"):
    if _check_layout(layout) == "keras":
        return RoR3_WRN_Keras(input_shape=input_shape, input_var=input_var,
                              n_classes=num_classes, N=depth, k=width, dropout=dropout)
    return RoR3_WRN(input_shape=input_shape, input_var=input_var, n_classes=num_classes,
                    N=depth, k=width, dropout=_check_dropout(dropout))


_build_ror.__doc__ = RoR3_ResNet.__doc__
_build_ror_wrn.__doc__ = RoR3_WRN.__doc__

def _ror_wrn_hint(depth, width):
    if depth < 10 or (depth - 4) % 6:
        return None
    k = width or 2
    return (f"note: depth is the per-stage block multiplier N; RoR-3-WRN-{depth}-{k} is "
            f"'ror-wrn {(depth - 4) // 6} {k}'")


register_model("ror", "RoR-3 on the original ResNet (Zhang et al. 2016), 9N-1 blocks per stage",
               ror_depth, "6(9N-1)+8", default_depth=2, default_width=1, check=_check_ror,
               options=("dropout", "layout"),
               hint=total_depth_hint("ror", "6(9N-1)+8", ror_depth, 56, "RoR-3"))(_build_ror)
register_model("ror-wrn", "RoR-3 on the wide pre-activation ResNet (Zhang et al. 2016)",
               ror_wrn_depth, "6N+4", default_depth=6, default_width=2,
               options=("dropout", "layout"), hint=_ror_wrn_hint,
               # the RoR seed's published file (Keras 1, Theano weights: layout=keras)
               weights={(6, 2): "RoR-WRN-40-2-Weights.h5"})(_build_ror_wrn)
