"""Small helpers shared by the layers (Lasagne's ``lasagne.utils``)."""
import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
import inspect

__all__ = ["floatX", "shared_empty", "as_theano_expression", "as_pytensor_expression",
           "collect_shared_vars", "one_hot", "unique", "as_tuple", "compute_norms",
           "create_param", "unroll_scan", "int_types", "inspect_kwargs"]

#: The types that count as integers (Python's and NumPy's).
int_types = (numbers.Integral, np.integer)


def floatX(arr):
    """Convert ``arr`` to a NumPy array of dtype ``pytensor.config.floatX``."""
    return np.asarray(arr, dtype=pytensor.config.floatX)


def shared_empty(dim=2, dtype=None):
    """A shared variable of ``dim`` dimensions (each of size 1) holding zeros,
    of dtype ``dtype`` (default floatX)."""
    if dtype is None:
        dtype = pytensor.config.floatX
    return pytensor.shared(np.zeros((1,) * dim, dtype=dtype))


def as_pytensor_expression(input):
    """Wrap ``input`` as a PyTensor constant unless it is an expression already.

    Parameters
    ----------
    input : number, numpy array or PyTensor expression

    Returns
    -------
    PyTensor variable
        ``input`` itself, or a constant holding it.

    Raises
    ------
    TypeError
        if ``input`` cannot be wrapped as a constant.
    """
    if isinstance(input, Variable):
        return input
    try:
        return pt.constant(input)
    except Exception as e:
        raise TypeError("Input of type %s is not a Theano expression and "
                        "cannot be wrapped as a Theano constant (original "
                        "exception: %s)" % (type(input), e))


#: Lasagne's name of :func:`as_pytensor_expression`.
as_theano_expression = as_pytensor_expression


def collect_shared_vars(expressions):
    """The shared variables ``expressions`` depend on, each once.

    The order is Lasagne's (Theano's ``graph.inputs``): a depth-first walk
    from the first expression, each node's inputs taken left to right, so a
    variable comes at its first appearance. It fixes the order of
    :meth:`Layer.get_params` for parameter expressions, hence the layout of
    weight files.

    Parameters
    ----------
    expressions : PyTensor variable or list of PyTensor variables

    Returns
    -------
    list of shared variables
    """
    if isinstance(expressions, Variable):
        expressions = [expressions]
    stack = list(reversed(list(expressions)))
    seen, found = set(), []
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if var.owner is None:
            if isinstance(var, SharedVariable):
                found.append(var)
        else:
            stack.extend(reversed(var.owner.inputs))
    return found


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
    """Coerce a value to a tuple of length ``N`` (and possibly of type ``t``).

    Parameters
    ----------
    x : value or iterable
    N : integer
        length of the desired tuple
    t : type or tuple of types, optional
        required type for all elements

    Returns
    -------
    tuple
        ``tuple(x)`` if `x` is iterable, ``(x,) * N`` otherwise.

    Raises
    ------
    TypeError
        if `t` is given and `x` or any of its elements do not match it
    ValueError
        if `x` is iterable, but does not have exactly `N` elements
    """
    try:
        X = tuple(x)
    except TypeError:
        X = (x,) * N
    if (t is not None) and not all(isinstance(v, t) for v in X):
        if t == int_types:
            expected_type = "int"
        elif isinstance(t, tuple):
            expected_type = " or ".join(tt.__name__ for tt in t)
        else:
            expected_type = t.__name__
        raise TypeError("expected a single value or an iterable "
                        "of {0}, got {1} instead".format(expected_type, x))
    if len(X) != N:
        raise ValueError("expected a single value or an iterable "
                         "with length {0}, got {1} instead".format(N, x))
    return X


def compute_norms(array, norm_axes=None):
    """Norms of the incoming weight vectors of a NumPy array or a tensor.

    Parameters
    ----------
    array : numpy array or PyTensor expression
    norm_axes : sequence of int, optional
        Axes to sum over; by default none for 1D (absolute values), ``(0,)``
        for 2D (dense weights) and all but the first for 3D to 5D
        (convolution filters).

    Returns
    -------
    norms : numpy array or PyTensor expression
    """
    if not isinstance(array, (Variable, np.ndarray)):
        raise RuntimeError("Unsupported type {}. Only theano variables and numpy "
                           "arrays are supported".format(type(array)))
    ndim = array.ndim
    if norm_axes is not None:
        sum_over = tuple(norm_axes)
    elif ndim == 1:
        sum_over = ()
    elif ndim == 2:
        sum_over = (0,)
    elif ndim in (3, 4, 5):
        sum_over = tuple(range(1, ndim))
    else:
        raise ValueError("Unsupported tensor dimensionality {}. Must specify "
                         "`norm_axes`".format(array.ndim))
    if isinstance(array, Variable):
        if len(sum_over) == 0:
            return abs(array)
        return pt.sqrt(pt.sum(array ** 2, axis=sum_over))
    if len(sum_over) == 0:
        return abs(array)
    return np.sqrt(np.sum(array ** 2, axis=sum_over))


def create_param(spec, shape, name=None):
    """Create a parameter from a number, an array, a shared variable, an
    expression or a callable, checking it against ``shape``.

    Parameters
    ----------
    spec : number, numpy array, PyTensor shared variable or expression, or callable
        A number or an array becomes a shared variable holding it (keeping
        its dtype) whose static shape is ``shape``; a variable or expression
        is returned as is (named ``name`` unless it has a name); a callable
        is called with ``shape`` and its result treated as above.
    shape : iterable of int
        The parameter's shape.
    name : str, optional
        The name to give a new (or unnamed) variable.

    Returns
    -------
    PyTensor shared variable or expression

    Raises
    ------
    ValueError
        for a non-positive shape, an array of another shape or a variable of
        another number of dimensions.
    TypeError
        for a spec (or a callable's result) of any other kind.
    """
    shape = tuple(shape)
    if any(d <= 0 for d in shape):
        raise ValueError((
            "Cannot create param with a non-positive shape dimension. "
            "Tried to create param with shape=%r, name=%r") % (shape, name))
    err_prefix = "cannot initialize parameter %s: " % name
    if callable(spec):
        spec = spec(shape)
        err_prefix += "the %s returned by the provided callable"
    else:
        err_prefix += "the provided %s"
    if isinstance(spec, numbers.Number) or (isinstance(spec, np.generic)
                                            and spec.dtype.kind in "biufc"):
        spec = np.asarray(spec)
    if isinstance(spec, np.ndarray):
        if spec.shape != shape:
            raise ValueError("%s has shape %s, should be %s"
                             % (err_prefix % "numpy array", spec.shape, shape))
        spec = pytensor.shared(spec, shape=shape)
    if isinstance(spec, Variable):
        if spec.ndim != len(shape):
            raise ValueError("%s has %d dimensions, should be %d"
                             % (err_prefix % "Theano variable", spec.ndim, len(shape)))
        if not spec.name:
            spec.name = name
        return spec
    if "callable" in err_prefix:
        raise TypeError("%s is not a numpy array or a Theano expression"
                        % (err_prefix % "value"))
    raise TypeError("%s is not a numpy array, a Theano expression, or a callable"
                    % (err_prefix % "spec"))


def unroll_scan(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards=False):
    """Unroll a loop that :func:`pytensor.scan` would run (for a known number
    of steps): the same arguments, without ``truncate_gradient``.

    Parameters
    ----------
    fn : callable
        The step function: ``fn(*sequence_slices, *previous_outputs,
        *non_sequences)`` returns one output or a list/tuple of outputs.
    sequences : variable or list of variables
        Iterated over their first axis.
    outputs_info : list of variables
        Initial values of the recurrent outputs.
    non_sequences : list of variables
        Passed unchanged to every step.
    n_steps : int
        Number of steps.
    go_backwards : bool
        If True, iterate from the last element of the sequences.

    Returns
    -------
    list of variables
        One per output of ``fn``, stacking its value at every step (in the
        order of iteration), as ``scan`` returns them.
    """
    if sequences is None:
        sequences = []
    if not isinstance(sequences, (list, tuple)):
        sequences = [sequences]
    if not isinstance(outputs_info, (list, tuple)):
        outputs_info = [outputs_info]
    counter = range(n_steps)
    if go_backwards:
        counter = counter[::-1]
    output = []
    prev_vals = list(outputs_info)
    for i in counter:
        step_input = [s[i] for s in sequences] + prev_vals + list(non_sequences)
        out_ = fn(*step_input)
        if isinstance(out_, Variable):
            out_ = [out_]
        if isinstance(out_, tuple):
            out_ = list(out_)
        output.append(out_)
        prev_vals = output[-1]
    return [pt.stack([step[i] for step in output]) for i in range(len(output[0]))]


def inspect_kwargs(func):
    """The names of the arguments of ``func`` that have default values
    (the optional keyword arguments), in order."""
    argspec = inspect.getfullargspec(func)
    defaults = argspec.defaults
    if defaults is None:
        return []
    return argspec.args[-len(defaults):]
