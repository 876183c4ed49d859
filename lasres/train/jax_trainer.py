"""A training step that lives on the JAX device.

:class:`JaxTrainer` has the interface of :class:`lasres.train.Trainer`
(so :func:`lasres.train.fit` drives it unchanged) but keeps the whole
optimiser state on the JAX device(s) between steps:

* The PyTensor graph of the legacy step — mean cross-entropy + L2 penalty,
  Nesterov momentum (:func:`lasres.updates.nesterov_momentum`), the
  batch-norm running averages (the default updates of the BN layers'
  statistic clones) — is built exactly as :class:`~lasres.train.Trainer`
  builds it, with every shared variable replaced by an explicit input. It is
  rewritten by PyTensor's JAX mode and turned into one pure Python/JAX
  function with ``jax_funcify`` (``fgraph_to_python``), which this module
  wraps in its own :func:`jax.jit` with the state buffers donated. Per step
  only the batch goes to the device and only two scalars (loss, accuracy)
  come back, lazily.
* ``devices=N`` shards the batch over the first N JAX devices (a 1-d
  :class:`jax.sharding.Mesh` with axis ``'batch'``); parameters, velocities
  and BN statistics are replicated. XLA's SPMD partitioner inserts the
  all-reduces of the gradients and of the BN batch statistics, so one step
  computes exactly the single-device step on the global batch.
* Several processes (:mod:`lasres.train.distributed`, one per host, after
  :func:`jax.distributed.initialize`): the mesh spans every device of every
  process; every process calls ``train_fn`` with the same global batch and
  places only its own rows of it on its own devices; the state starts from
  process 0's values (broadcast by :meth:`~JaxTrainer.sync_to_device`) and
  stays replicated, so each process can checkpoint it
  (:func:`~lasres.train.fit` lets process 0 alone write).
* ``precision='bf16'``: float32 master weights, velocities and BN statistics;
  the forward and backward passes run in bfloat16 (convolutions and matrix
  products take bfloat16 operands), with float32 islands for the BN
  statistics, the softmax / log-softmax and the L2 penalty. The loss and the
  update are float32.
* ``device_augment=True``: the legacy pad-4 random crop + flip (one offset
  and one flip per batch, as :func:`lasres.data.augment_batch` in ``'batch'``
  mode) is done inside the jitted step from a :func:`jax.random` key kept on
  the device. Train with ``fit(..., augment=None)`` then, or the batches are
  augmented twice.

Host and device copies of the state
-----------------------------------
The device state is the truth while training. The network's shared
variables (and :attr:`JaxTrainer.velocities`) are only brought up to date by
:meth:`JaxTrainer.sync_to_host`, which runs

* in :meth:`JaxTrainer.optimizer_state`,
* in ``predict_fn`` when training steps ran since the last sync (so the
  validation pass of :func:`~lasres.train.fit` leaves the shared
  variables current before it writes its checkpoints),
* whenever you call it — do so before reading parameters yourself
  (``get_all_param_values``, ``save_weights``, a checkpoint written by hand).

Values set on the host (``set_all_param_values`` after the trainer was
built, :meth:`JaxTrainer.set_optimizer_state`) reach the device through
:meth:`JaxTrainer.sync_to_device` (called by ``set_optimizer_state``).

.. note::
   :func:`~lasres.train.fit` reads the parameter values of its checkpoint
   before it calls ``optimizer_state()``; without a validation set (no
   ``predict_fn`` call in the epoch) the parameters in its checkpoint are
   those of the last sync. Call :meth:`~JaxTrainer.sync_to_host` in such a
   loop yourself, or give ``fit`` validation data.
"""
import time
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.replace import clone_replace
from pytensor.graph.traversal import graph_inputs
from pytensor.link.utils import fgraph_to_python
from pytensor.tensor.blas import Dot22
from pytensor.tensor.math import Dot
from pytensor.tensor.random.type import RandomType
from pytensor.tensor.special import LogSoftmax, Softmax

from .. import updates as lupdates
from ..config import get_mode
from ..errors import LasresError
from ..layers import get_all_params
from ..ops.bn import BatchNormInfer, BatchNormTrain, BatchNormTrainGrad
from ..ops.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from ..ops.fused import SumOfSquares
from ..recipes import LEGACY, LEGACY_SCHEDULE
from .distributed import broadcast, put
from .recipe import inference_output, legacy_objective
from .trainer import TrainerBase

__all__ = ["JaxTrainer", "HostScalar", "device_crop_flip", "PRECISIONS"]

#: Accepted values of ``precision``.
PRECISIONS = ("float32", "bf16")


class HostScalar(object):
    """A float on the host with the ``get_value``/``set_value`` interface of
    a scalar shared variable; :class:`JaxTrainer` reads it at every step and
    passes it to the device as an argument (no recompilation).

    Parameters
    ----------
    value : float
    name : str or None
    dtype : str
    """

    def __init__(self, value, name=None, dtype="float32"):
        self.name = name
        self.dtype = dtype
        self.set_value(value)

    def get_value(self, borrow=False):
        return np.asarray(self._value, dtype=self.dtype)[()]

    def set_value(self, value, borrow=False):
        self._value = np.asarray(value, dtype=self.dtype)[()]

    def __repr__(self):
        return f"HostScalar({float(self._value)!r}, name={self.name!r})"


def device_crop_flip(X, key, pad=4):
    """The legacy batch augmentation as a JAX function.

    Zero-pads ``X`` by ``pad`` pixels on each side, crops it back to its size
    at one random offset ``(dy, dx)``, each uniform on ``0 .. 2 * pad``, and
    flips the whole batch left-right with probability 1/2 — one offset and one
    flip decision for the batch, like :func:`lasres.data.augment_batch` in
    ``'batch'`` mode (the random numbers differ, of course).

    Parameters
    ----------
    X : jax.Array
        Batch ``(B, C, H, W)``.
    key : jax.Array
        A :func:`jax.random.key` / ``PRNGKey``.
    pad : int

    Returns
    -------
    jax.Array
        Same shape and dtype as ``X``.
    """
    import jax

    kdy, kdx, kflip = jax.random.split(key, 3)
    dy = jax.random.randint(kdy, (), 0, 2 * pad + 1)
    dx = jax.random.randint(kdx, (), 0, 2 * pad + 1)
    flip = jax.random.randint(kflip, (), 0, 2)
    return _crop_flip_at(X, dy, dx, flip, pad)


def _crop_flip_at(X, dy, dx, flip, pad):
    """:func:`lasres.data.crop_flip` with scalar (traced) offsets, in JAX."""
    import jax
    import jax.numpy as jnp

    if pad:
        X_pad = jnp.pad(X, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    else:
        X_pad = X
    zero = jnp.zeros((), jnp.int32)
    out = jax.lax.dynamic_slice(X_pad, (zero, zero, jnp.asarray(dy, jnp.int32),
                                        jnp.asarray(dx, jnp.int32)), X.shape)
    return jnp.where(jnp.asarray(flip) != 0, out[..., ::-1], out)


def _as_input(a, dtype):
    """A NumPy array of ``dtype``, or a JAX array left on its device."""
    import jax
    if isinstance(a, jax.Array):
        return a if a.dtype == dtype else a.astype(dtype)
    return np.asarray(a, dtype=dtype)


def _shared_inputs(outputs):
    """The shared variables the graphs of ``outputs`` depend on, in a stable order."""
    return [v for v in graph_inputs(outputs) if isinstance(v, SharedVariable)]


# --- mixed precision -------------------------------------------------------

def _mixed_precision_funcify(compute_dtype):
    """An ``op_conversion_fn`` for ``fgraph_to_python``: ``jax_funcify`` with
    casts around the ops whose precision matters in bfloat16 training.

    * convolutions and matrix products: float operands cast to
      ``compute_dtype`` (XLA needs equal operand dtypes, and the point is to
      run them in bfloat16);
    * batch-norm statistics, softmax / log-softmax, the
      L2 sum of squares: computed in float32; the normalised activations and
      the input gradient go back to the dtype they came in.
    """
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify


    low_ops = (Conv2d, Conv2dGradInputs, Conv2dGradWeights, Dot, Dot22)
    f32_ops = (Softmax, LogSoftmax, SumOfSquares)
    # which outputs of the BN ops are activations / input gradients (these
    # keep the dtype of the activations they came from)
    bn_ops = {BatchNormTrain: (0,), BatchNormTrainGrad: (0,), BatchNormInfer: (0,)}

    def is_float(a):
        return jnp.issubdtype(jnp.result_type(a), jnp.floating)

    def cast_all(args, dtype):
        return [a.astype(dtype) if is_float(a) else a for a in args]

    def convert(op, node=None, **kwargs):
        fn = jax_funcify(op, node=node, **kwargs)
        if isinstance(op, low_ops):
            def low(*args):
                return fn(*cast_all(args, compute_dtype))
            return low
        if isinstance(op, f32_ops):
            def high(*args):
                return fn(*cast_all(args, jnp.float32))
            return high
        for cls, act_outputs in bn_ops.items():
            if isinstance(op, cls):
                def bn(*args, _act=act_outputs):
                    act_dtype = jnp.result_type(args[0])
                    outs = fn(*cast_all(args, jnp.float32))
                    return tuple(o.astype(act_dtype) if i in _act else o
                                 for i, o in enumerate(outs)) if isinstance(outs, tuple) \
                        else outs.astype(act_dtype)
                return bn
        return fn

    return convert


def _rewritten_fgraph(inputs, outputs):
    """The FunctionGraph of ``pytensor.function(inputs, outputs)`` in lasres's
    JAX mode, after PyTensor's rewrites (the function itself is not used)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping Assert")
        f = pytensor.function(inputs, outputs, mode=get_mode("jax"), on_unused_input="ignore")
    return f.maker.fgraph


def _to_jax_function(fgraph, precision, name):
    """A pure JAX function of a rewritten FunctionGraph (positional inputs,
    tuple of outputs), as PyTensor's JAX linker builds it."""
    from pytensor.link.jax.dispatch import jax_funcify, jax_typify

    if any(isinstance(v.type, RandomType) for v in fgraph.inputs):
        raise LasresError("JaxTrainer does not support random variables in the graph "
                          "(dropout/noise layers); use Trainer(backend='jax')")
    with warnings.catch_warnings():
        # Shapes are static under jit, so XLA itself rejects what these
        # broadcast assertions would catch; PyTensor warns that it drops them.
        warnings.filterwarnings("ignore", message="Skipping Assert")
        if precision == "float32":
            return jax_funcify(fgraph, fgraph_name=name)
        import jax.numpy as jnp
        return fgraph_to_python(fgraph, _mixed_precision_funcify(jnp.bfloat16),
                                type_conversion_fn=jax_typify, fgraph_name=name)


# --- the trainer -------------------------------------------------------------

class JaxTrainer(TrainerBase):
    """The legacy training step as one jitted JAX function with the state on
    the device.

    Parameters
    ----------
    network, l2, momentum, learning_rate
        As for :class:`lasres.train.trainer.Trainer`.
    optimizer : {'nesterov'}
        The recipe's optimizer; only Nesterov momentum runs here.
    devices : int or None
        Data-parallel over the first ``devices`` JAX devices (the batch size
        must be divisible by it). ``None``: one device, no sharding. In a
        multi-process run: ``None`` (or the total) means every device of
        every process.
    precision : {'float32', 'bf16'}
        ``'bf16'``: bfloat16 forward/backward with float32 master weights,
        optimiser state, BN statistics, loss and update.
    device_augment : bool
        Pad-crop-flip each training batch on the device (legacy ``'batch'``
        mode: one offset and one flip per batch). Pass unaugmented batches
        (``fit(..., augment=None)``).
    augment_pad : int
        Padding of the device augmentation.
    seed : int
        Seed of the device augmentation's key.

    Attributes
    ----------
    train_fn : callable
        ``train_fn(X, y) -> (loss, accuracy)``, one Nesterov step; the two
        are 0-d JAX arrays (``float()`` waits for the step). ``X`` and ``y``
        may be NumPy arrays or JAX arrays already on the device(s).
    predict_fn : callable
        ``predict_fn(X) -> probabilities`` (NumPy float32) from the current
        device state, with the stored BN statistics.
    learning_rate : HostScalar
        ``get_value()``/``set_value()``; read at every step.
    params : list of shared variables
        The trainable parameters.
    velocities : list of shared variables
        The host copies of the optimiser state, in parameter order (as
        :attr:`lasres.train.Trainer.velocities`); current after
        :meth:`sync_to_host`.
    compile_seconds : dict
        ``'train'``/``'predict'``: building and rewriting the PyTensor graphs;
        ``'train_xla'``/``'predict_xla'``: XLA compilation (summed over the
        batch shapes met so far).
    mesh : jax.sharding.Mesh
        The devices used (one for ``devices=None`` in a single process).
    process_index : int
        :func:`jax.process_index` (0 in a single process).
    """

    backend = "jax"

    def __init__(self, network, l2=LEGACY.l2, momentum=LEGACY.momentum,
                 learning_rate=LEGACY_SCHEDULE[0][1], devices=None, precision="float32", device_augment=False, augment_pad=4, seed=0,
                 optimizer=LEGACY.optimizer):
        if optimizer != "nesterov":
            raise LasresError(f"the jax trainer has Nesterov momentum only, not {optimizer!r}: "
                              f"use the c backend")
        get_mode("jax")  # a clear error without jax; registers our ops' JAX implementations
        import jax

        if precision in ("bfloat16",):
            precision = "bf16"
        if precision not in PRECISIONS:
            raise LasresError(f"unknown precision {precision!r}: choose one of "
                              f"{', '.join(PRECISIONS)}")
        self.network = network
        self.precision = precision
        self.device_augment = bool(device_augment)
        self.augment_pad = int(augment_pad)
        self.learning_rate = HostScalar(learning_rate, name="learning_rate",
                                        dtype=pytensor.config.floatX)
        self.compile_seconds = {}
        self._setup_devices(devices)

        t0 = time.perf_counter()
        self._build_train_graph(network, l2, momentum)
        self.compile_seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._build_predict_graph(network)
        self.compile_seconds["predict"] = time.perf_counter() - t0

        self._compiled = {}
        self._dirty = False
        self._state = None
        self.sync_to_device()
        self._key = put(jax.random.PRNGKey(seed), self._replicated)
        self.train_fn = self._train_step
        self.predict_fn = self._predict

    # -- setup ---------------------------------------------------------------

    def _setup_devices(self, devices):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        available = jax.devices()
        self.process_index = jax.process_index()
        self._multi_process = jax.process_count() > 1
        n = 1 if devices is None else int(devices)
        if n < 1:
            raise LasresError(f"devices must be a positive integer or None, got {devices!r}")
        if jax.process_count() > 1:
            # several processes (lasres.train.distributed): the mesh spans every device of every one
            if devices is not None and n != len(available):
                raise LasresError(f"asked for {n} devices, but a run of {jax.process_count()} "
                                  f"processes uses all of their {len(available)} devices "
                                  f"(leave out --devices)")
            n = len(available)
        if n > len(available):
            raise LasresError(f"asked for {n} devices, JAX sees {len(available)} "
                              f"({available[0].platform}); on CPU set "
                              f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before "
                              "importing jax")
        self.num_devices = n
        self.mesh = Mesh(np.array(available[:n]), ("batch",))
        self._replicated = NamedSharding(self.mesh, P())
        self._batch_sharded = NamedSharding(self.mesh, P("batch"))

    def _build_train_graph(self, network, l2, momentum):
        """The symbolic step of :class:`~lasres.train.Trainer` with every
        shared variable replaced by an explicit input, rewritten for JAX."""

        obj = legacy_objective(network, l2)
        x, y, loss, accuracy = obj.inputs, obj.targets, obj.loss, obj.accuracy
        lr = pt.scalar("learning_rate", dtype=pytensor.config.floatX)
        self.params = obj.params
        grads = pytensor.grad(loss, self.params)

        # The BN layers' statistic clones (memory-aliased with the stored
        # statistics) and their default updates, the running averages.
        shared = _shared_inputs([loss, accuracy])
        default_updated = [v for v in shared if v.default_update is not None]
        stat_updates = [v.default_update for v in default_updated]

        # State slots, keyed by storage container (a clone shares its
        # original's container): trainable params, then the other shared
        # variables (BN statistics, ...) in get_all_params order.
        param_containers = [p.container for p in self.params]
        pid = {id(c): i for i, c in enumerate(param_containers)}
        det_shared = _shared_inputs([inference_output(network)[1]])
        others = {}
        for v in get_all_params(network) + shared + _shared_inputs(stat_updates) + det_shared:
            if id(v.container) not in pid and id(v.container) not in others:
                others[id(v.container)] = v
        self._stat_vars = list(others.values())  # host-side shared variable per slot
        sid = {c: i for i, c in enumerate(others)}

        self._p_compute = [p.type(name=f"{p.name or 'param'}_compute") for p in self.params]
        self._p_master = [p.type(name=f"{p.name or 'param'}_master") for p in self.params]
        self._s_in = [s.type(name=f"{s.name or 'state'}_in") for s in self._stat_vars]

        def slot_var(v):
            c = id(v.container)
            return self._p_compute[pid[c]] if c in pid else self._s_in[sid[c]]

        # 1. forward + backward on the compute copies of the params
        fwd_shared = _shared_inputs([loss, accuracy] + grads + stat_updates)
        fwd = clone_replace([loss, accuracy] + grads + stat_updates,
                            replace={v: slot_var(v) for v in fwd_shared})
        n_p = len(self.params)
        loss_c, acc_c, grads_c = fwd[0], fwd[1], fwd[2:2 + n_p]
        stat_upd_c = fwd[2 + n_p:]
        # 2. the Nesterov update of the master params, exactly lasres.updates'
        upd = lupdates.nesterov_momentum(list(grads_c), self.params, lr, momentum)
        param_set = set(self.params)
        self.velocities = [v for v in upd if v not in param_set]
        self._v_in = [v.type(name=f"velocity{i}") for i, v in enumerate(self.velocities)]
        new_p = [upd[p] for p in self.params]
        new_v = [upd[v] for v in self.velocities]
        repl = dict(zip(self.params, self._p_master))
        repl.update(zip(self.velocities, self._v_in))
        outs = clone_replace([loss_c, acc_c] + new_p + new_v + list(stat_upd_c), replace=repl)
        if _shared_inputs(outs):
            raise LasresError(f"JaxTrainer: shared variables left in the step graph: "
                              f"{_shared_inputs(outs)}")
        # which state slot each running average updates
        self._stat_update_slots = [sid[id(v.container)] for v in default_updated]

        inputs = [x, y, lr] + self._p_compute + self._p_master + self._v_in + self._s_in
        fgraph = _rewritten_fgraph(inputs, outs)
        if len(fgraph.inputs) != len(inputs) or len(fgraph.outputs) != len(outs):
            raise LasresError("JaxTrainer: unexpected inputs/outputs in the compiled graph")
        self._step_graph_fn = _to_jax_function(fgraph, self.precision, "lasres_train_step")

    def _build_predict_graph(self, network):

        x, out = inference_output(network)
        pid = {id(p.container): i for i, p in enumerate(self.params)}
        sid = {id(s.container): i for i, s in enumerate(self._stat_vars)}

        def slot_var(v):
            c = id(v.container)
            if c in pid:
                return self._p_compute[pid[c]]
            if c in sid:
                return self._s_in[sid[c]]
            raise LasresError(f"JaxTrainer: the inference graph uses an unknown shared "
                              f"variable {v}")

        (out,) = clone_replace([out], replace={v: slot_var(v) for v in _shared_inputs([out])})
        inputs = [x] + self._p_compute + self._s_in
        self._predict_graph_fn = _to_jax_function(_rewritten_fgraph(inputs, [out]),
                                                  self.precision, "lasres_predict")

    # -- the jitted functions ------------------------------------------------

    @property
    def compute_dtype(self):
        import jax.numpy as jnp
        return jnp.bfloat16 if self.precision == "bf16" else jnp.float32

    def _step(self, state, key, X, y, lr):
        """The pure step: ``(state, key, X, y, lr) -> (state, key, loss, acc)``."""
        import jax
        import jax.numpy as jnp

        params, vels, stats = state
        if self.device_augment:
            key, sub = jax.random.split(key)
            X = device_crop_flip(X, sub, self.augment_pad)
        cdt = self.compute_dtype
        p_c = [p.astype(cdt) for p in params]
        outs = self._step_graph_fn(X.astype(cdt), y, lr, *p_c, *params, *vels, *stats)
        n_p = len(params)
        loss, acc = outs[0], outs[1]
        new_p = [o.astype(p.dtype) for o, p in zip(outs[2:2 + n_p], params)]
        new_v = [o.astype(v.dtype) for o, v in zip(outs[2 + n_p:2 + 2 * n_p], vels)]
        new_s = list(stats)
        for slot, o in zip(self._stat_update_slots, outs[2 + 2 * n_p:]):
            new_s[slot] = o.astype(stats[slot].dtype)
        return (new_p, new_v, new_s), key, loss.astype(jnp.float32), acc.astype(jnp.float32)

    def _predict_pure(self, state, X):
        import jax.numpy as jnp

        params, _, stats = state
        cdt = self.compute_dtype
        (out,) = self._predict_graph_fn(X.astype(cdt), *[p.astype(cdt) for p in params],
                                        *stats)
        return out.astype(jnp.float32)

    def _state_sharding(self):
        r = self._replicated
        params, vels, stats = self._state
        return ([r] * len(params), [r] * len(vels), [r] * len(stats))

    def _get_compiled(self, kind, X, y=None):
        """The AOT-compiled step or predict function for this batch shape."""
        sharded = self.num_devices > 1 and X.shape[0] % self.num_devices == 0
        key = (kind, X.shape, str(X.dtype), sharded)
        fn = self._compiled.get(key)
        if fn is not None:
            return fn, sharded
        xs = self._batch_sharded if sharded else self._replicated
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # PyTensor's JAX dispatch asks for int64/float64 (shape arithmetic,
            # float64 accumulators); JAX without x64 truncates them, as meant.
            warnings.filterwarnings("ignore", message="Explicitly requested dtype")
            fn = self._lower(kind, X, y, xs).compile()
        name = f"{kind}_xla"
        self.compile_seconds[name] = self.compile_seconds.get(name, 0.0) + \
            time.perf_counter() - t0
        self._compiled[key] = fn
        return fn, sharded

    def _lower(self, kind, X, y, xs):
        import jax

        r = self._replicated
        # lower from shapes (numpy batches of several processes have no layout yet)
        X = jax.ShapeDtypeStruct(X.shape, X.dtype, sharding=xs)
        if y is not None:
            y = jax.ShapeDtypeStruct(y.shape, y.dtype, sharding=xs)
        if kind == "train":
            jitted = jax.jit(self._step, donate_argnums=(0, 1),
                             in_shardings=(self._state_sharding(), r, xs, xs, r),
                             out_shardings=(self._state_sharding(), r, r, r))
            return jitted.lower(self._state, self._key, X, y,
                                np.float32(self.learning_rate.get_value()))
        # several processes: the probabilities are gathered on every process
        out = r if jax.process_count() > 1 else xs
        jitted = jax.jit(self._predict_pure, in_shardings=(self._state_sharding(), xs),
                         out_shardings=out)
        return jitted.lower(self._state, X)

    def _train_step(self, X, y):
        """One training step; see :attr:`train_fn`."""
        X, y = _as_input(X, pytensor.config.floatX), _as_input(y, np.int32)
        if X.shape[0] != y.shape[0]:
            raise LasresError(f"{X.shape[0]} images but {y.shape[0]} labels")
        if X.shape[0] % self.num_devices:
            raise LasresError(f"batch of {X.shape[0]} images does not split over "
                              f"{self.num_devices} devices: the batch size (and an epoch's "
                              f"last, partial batch) must be divisible by {self.num_devices}")
        fn, sharded = self._get_compiled("train", X, y)
        if sharded:
            # with several processes, each places only its own rows of the global batch
            X, y = put((X, y), self._batch_sharded)
        lr = np.float32(self.learning_rate.get_value())
        self._state, self._key, loss, acc = fn(self._state, self._key, X, y, lr)
        self._dirty = True
        return loss, acc

    def _predict(self, X):
        """Probabilities from the current device state; see :attr:`predict_fn`."""
        if self._dirty:
            self.sync_to_host()
        X = _as_input(X, pytensor.config.floatX)
        fn, sharded = self._get_compiled("predict", X)
        X = put(X, self._batch_sharded if sharded else self._replicated)
        return np.asarray(fn(self._state, X))

    # -- host <-> device -------------------------------------------------------

    def sync_to_host(self):
        """Copy the device state (parameters, velocities, BN statistics) into
        the network's shared variables and :attr:`velocities`.

        Called by :meth:`optimizer_state` and, when steps ran since the last
        sync, by ``predict_fn``; call it yourself before reading parameter
        values any other way (``get_all_param_values``, ``save_weights``,
        a checkpoint written by hand).
        """
        import jax

        params, vels, stats = jax.device_get(self._state)
        for var, value in zip(self.params, params):
            var.set_value(np.array(value, dtype=var.dtype), borrow=True)
        for var, value in zip(self.velocities, vels):
            var.set_value(np.array(value, dtype=var.dtype), borrow=True)
        for var, value in zip(self._stat_vars, stats):
            var.set_value(np.array(value, dtype=var.dtype), borrow=True)
        self._dirty = False

    def sync_to_device(self):
        """Replace the device state by the values of the shared variables.

        Done when the trainer is built and by :meth:`set_optimizer_state`;
        call it after setting parameter values on the host (e.g.
        ``set_all_param_values``) once the trainer exists. Steps taken since
        the last :meth:`sync_to_host` are lost.
        """
        import jax

        host = ([p.get_value() for p in self.params], [v.get_value() for v in self.velocities],
                [s.get_value() for s in self._stat_vars])
        if self._multi_process:
            # process 0's values everywhere, host copies included
            host = broadcast(host)
            for var, value in zip(self.params + self.velocities + self._stat_vars,
                                  host[0] + host[1] + host[2]):
                var.set_value(np.array(value, dtype=var.dtype), borrow=True)
        if self._state is not None:
            jax.tree_util.tree_map(lambda a: a.delete(), self._state)
        self._state = put(host, self._replicated)
        self._dirty = False

    def state(self):
        """The device state ``(params, velocities, bn_and_other_state)``:
        three lists of JAX arrays (replaced, not mutated, by each step; the
        previous ones are donated to it and deleted)."""
        return self._state

    def set_optimizer_state(self, values):
        """Set the velocities (e.g. from a checkpoint), on host and device."""
        super().set_optimizer_state(values)
        params, old_vels, stats = self._state
        if self._multi_process:
            for v, val in zip(self.velocities, broadcast([v.get_value() for v in self.velocities])):
                v.set_value(np.array(val, dtype=v.dtype))
        vels = put([v.get_value() for v in self.velocities], self._replicated)
        for a in old_vels:
            a.delete()
        self._state = (params, vels, stats)
