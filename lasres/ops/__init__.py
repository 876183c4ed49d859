"""PyTensor ops for convolutional networks.

Each op follows PyTensor's pattern: ``make_node``, a vectorised NumPy
``perform``, ``pullback`` (PyTensor 3's name for Theano's ``grad``) expressed
through gradient ops of its own, ``infer_shape``.  The modules split by job:

* the ops: :mod:`~lasres.ops.conv`, :mod:`~lasres.ops.convnd`,
  :mod:`~lasres.ops.pool`, :mod:`~lasres.ops.poolnd`, :mod:`~lasres.ops.bn`,
  :mod:`~lasres.ops.elemwise`, :mod:`~lasres.ops.fused`, :mod:`~lasres.ops.add`;
* argument checks (:mod:`~lasres.ops._args`) and shape rules: output lengths,
  scalar shape ops, the gradient ops' shape inputs (:mod:`~lasres.ops.shape`);
* kernels: NumPy (:mod:`~lasres.ops.conv_numpy`,
  :mod:`~lasres.ops.convnd_numpy`, :mod:`~lasres.ops.pool_numpy`,
  ``_bn_kernels``) and oneDNN in C (:mod:`~lasres.ops.onednn`);
* backend implementations: JAX in :mod:`lasres.ops.jax`, registered with
  PyTensor's JAX dispatch only when that dispatch is loaded
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
