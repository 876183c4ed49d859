"""PyTensor ops for convolutional networks.

Each op follows Theano's pattern: ``make_node``, a vectorised NumPy
``perform``, ``pullback`` (PyTensor 3's ``grad``) expressed through gradient ops of its own,
``infer_shape``; their JAX implementations live in :mod:`lasres.ops.jax`,
registered with PyTensor's JAX dispatch only when that dispatch is loaded
(:mod:`lasres.ops._dispatch`), so importing lasres does not import jax.
"""
from .conv import conv2d, Conv2d, Conv2dGradInputs, Conv2dGradWeights
from .onednn import kernels
from .pool import pool2d, Pool2d, Pool2dGrad
from . import _dispatch
from .bn import batch_norm_train, batch_norm_infer, BatchNormTrain, BatchNormTrainGrad, BatchNormInfer

__all__ = ["conv2d", "Conv2d", "Conv2dGradInputs", "Conv2dGradWeights",
           "pool2d", "Pool2d", "Pool2dGrad",
           "batch_norm_train", "batch_norm_infer", "BatchNormTrain",
           "BatchNormTrainGrad", "BatchNormInfer", "kernels"]

_dispatch.install()
