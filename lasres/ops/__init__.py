"""PyTensor ops for convolutional networks.

Each op follows Theano's pattern: ``make_node``, a vectorised NumPy
``perform``, ``grad`` expressed through gradient ops of its own,
``infer_shape``, and a JAX implementation registered with PyTensor's JAX
dispatch beside the op (when jax is installed).
"""
from .conv import conv2d, Conv2d, Conv2dGradInputs, Conv2dGradWeights
from .pool import pool2d, Pool2d, Pool2dGrad
from .bn import batch_norm_train, batch_norm_infer, BatchNormTrain, BatchNormTrainGrad, BatchNormInfer

__all__ = ["conv2d", "Conv2d", "Conv2dGradInputs", "Conv2dGradWeights",
           "pool2d", "Pool2d", "Pool2dGrad",
           "batch_norm_train", "batch_norm_infer", "BatchNormTrain",
           "BatchNormTrainGrad", "BatchNormInfer"]
