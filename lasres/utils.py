"""Small helpers shared by the layers (Lasagne's ``lasagne.utils``)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
from pytensor.graph.traversal import graph_inputs

__all__ = ["floatX", "shared_empty", "as_theano_expression", "collect_shared_vars",
           "one_hot", "unique", "as_tuple", "compute_norms", "create_param"]


def floatX(arr):
    """Convert ``arr`` to a NumPy array of dtype ``pytensor.config.floatX``."""
    return np.asarray(arr, dtype=pytensor.config.floatX)


def shared_empty(dim=2, dtype=None):
    """A shared variable of ``dim`` dimensions holding an empty array."""
    dtype = dtype or pytensor.config.floatX
    return pytensor.shared(np.zeros((0,) * dim, dtype=dtype))


def as_theano_expression(input):
    """Wrap ``input`` as a PyTensor expression (name kept for ported code)."""
    if isinstance(input, Variable):
        return input
    try:
        return pt.as_tensor_variable(input)
    except (TypeError, ValueError):
        raise TypeError(f"Input of type {type(input)} is not a PyTensor expression")


as_pytensor_expression = as_theano_expression


def collect_shared_vars(expressions):
    """Return the shared variables that ``expressions`` depend on, in order."""
    if isinstance(expressions, Variable):
        expressions = [expressions]
    found = []
    for expr in expressions:
        if isinstance(expr, SharedVariable):
            found.append(expr)
        else:
            found.extend(v for v in graph_inputs([expr]) if isinstance(v, SharedVariable))
    return unique(found)


def one_hot(x, m=None):
    """One-hot matrix of the integer vector ``x`` with ``m`` columns."""
    if m is None:
        m = pt.cast(pt.max(x) + 1, "int32")
    return pt.eye(m)[pt.cast(x, "int32")]


def unique(l):
    """Items of ``l`` without duplicates, first occurrences kept in order."""
    seen, out = set(), []
    for el in l:
        if el not in seen:
            seen.add(el)
            out.append(el)
    return out


def as_tuple(x, N, t=None):
    """Coerce ``x`` to a tuple of length ``N`` (repeating a scalar)."""
    try:
        X = tuple(x)
    except TypeError:
        X = (x,) * N
    if t is not None and not all(isinstance(v, t) for v in X):
        raise TypeError(f"expected a single value or an iterable of {t}, got {x} instead")
    if len(X) != N:
        raise ValueError(f"expected a single value or an iterable with length {N}, got {x} instead")
    return X


def compute_norms(array, norm_axes=None):
    """Euclidean norms of a NumPy array or tensor over ``norm_axes``."""
    ndim = array.ndim
    if norm_axes is None:
        if ndim == 1:
            norm_axes = ()
        elif ndim == 2:
            norm_axes = (0,)
        elif ndim in (3, 4, 5):
            norm_axes = tuple(range(1, ndim))
        else:
            raise ValueError(f"Unsupported tensor dimensionality {ndim}. Must specify `norm_axes`")
    if isinstance(array, np.ndarray):
        return np.sqrt(np.sum(array ** 2, axis=norm_axes))
    return pt.sqrt(pt.sum(pt.sqr(array), axis=norm_axes))


def create_param(spec, shape, name=None):
    """Create a parameter from a shared variable, an array, an expression or
    an initializer (a callable taking the shape), checking its shape.

    Arrays and initializers become float32 shared variables whose static
    shape is ``shape`` (so graphs see constant shapes).
    """
    import numbers
    shape = tuple(shape)
    if any(d <= 0 for d in shape):
        raise ValueError(f"Cannot create param with a non-positive shape dimension. "
                         f"Tried to create param with shape={shape}, name={name}")
    err_prefix = f"cannot initialize parameter {name}: " if name else "cannot initialize parameter: "
    if isinstance(spec, numbers.Number) or (isinstance(spec, np.generic) and spec.dtype.kind in "biuf"):
        spec = np.asarray(spec)
    if isinstance(spec, Variable):
        if spec.ndim != len(shape):
            raise ValueError(err_prefix + f"parameter variable has {spec.ndim} dimensions, should be {len(shape)}")
        if isinstance(spec, SharedVariable):
            actual = spec.get_value(borrow=True).shape
            if actual != shape:
                raise ValueError(err_prefix + f"parameter variable has shape {actual}, should be {shape}")
        if name is not None and spec.name is None:
            spec.name = name
        return spec
    if callable(spec) and not isinstance(spec, np.ndarray):
        arr = spec(shape)
        if isinstance(arr, Variable):
            return create_param(arr, shape, name)
        arr = np.asarray(arr)
        if arr.shape != shape:
            raise ValueError(err_prefix + f"initializer returned an array of shape {arr.shape}, should be {shape}")
        spec = arr
    if isinstance(spec, np.ndarray):
        if spec.shape != shape:
            raise ValueError(err_prefix + f"parameter array has shape {spec.shape}, should be {shape}")
        return pytensor.shared(floatX(spec) if spec.dtype.kind == "f" else spec,
                               name=name, shape=shape)
    raise ValueError(err_prefix + "cannot initialize parameters: 'spec' is not a numpy array, "
                     "a PyTensor expression, or a callable")
