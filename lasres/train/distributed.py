"""Several processes, one training run: data parallelism over hosts with
:mod:`jax.distributed`.

One process per host (or per group of devices) runs the same command; the
processes find each other through a coordinator (process 0's address and a
free port), and from then on JAX sees the devices of every process.
:class:`lasres.train.jax_trainer.JaxTrainer` lays its mesh over all of them: each
process places only its own rows of each global batch on its own devices,
and XLA's collectives (NCCL on GPUs, gloo on CPUs) all-reduce the gradients
and the batch-norm statistics across processes, so a step is the
single-process step on the global batch.

What this module provides:

* :class:`Settings`: where a process stands in the run (the command line
  reads them from its flags and the environment,
  :func:`lasres.cli.processes.settings_from_args`).
* :func:`initialize`: :func:`jax.distributed.initialize`, to be called
  before anything touches a JAX device (gloo collectives for CPU devices).
* :func:`in_worker`: whether this process is the child that the command
  line's supervisor (:func:`lasres.cli.processes.supervise`) started.
* :func:`put`, :func:`broadcast`, :func:`barrier`, :func:`all_agree`,
  :func:`check_same`: the few collective helpers the trainer and the command
  line need; with one process they are :func:`jax.device_put`, the local
  value or no-ops.

Only process 0 writes checkpoints, histories and plots and prints progress;
every process reads the run folder (``--resume`` and the final test of the
best checkpoint), so it must be on a filesystem all hosts share.
"""
import os
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import LasresError

__all__ = ["Settings", "WORKER_ENV", "JOINED_FD_ENV", "DEFAULT_TIMEOUT", "MIN_STARTUP_TIMEOUT",
           "initialize", "in_worker", "process_index", "process_count", "is_primary",
           "silence_stdout", "put", "broadcast", "check_same", "barrier", "all_agree"]

#: Set in the child process that :func:`lasres.cli.processes.supervise` starts.
WORKER_ENV = "LASRES_DIST_WORKER"
#: The file descriptor on which the child tells the supervisor it joined.
JOINED_FD_ENV = "LASRES_DIST_JOINED_FD"
#: Heartbeat timeout (seconds) when none is given.
DEFAULT_TIMEOUT = 60
#: At start-up every process has at least this long to connect.
MIN_STARTUP_TIMEOUT = 300


@dataclass(frozen=True)
class Settings:
    """Where a process stands in a multi-process run.

    Attributes
    ----------
    coordinator : str or None
        ``HOST:PORT`` of process 0's coordinator; ``None`` with ``slurm``.
    num_processes : int or None
    process_id : int or None
    timeout : int
        Seconds without a heartbeat after which a process counts as dead
        (and at most how long the last process waits for the others to
        finish); at start-up the processes have ``max(timeout, 300)``
        seconds to connect.
    slurm : bool
        Let JAX read the coordinator and the ids from SLURM.
    """

    coordinator: str = None
    num_processes: int = None
    process_id: int = None
    timeout: int = DEFAULT_TIMEOUT
    slurm: bool = False

    def describe(self):
        if self.slurm:
            return "process ids from SLURM"
        return f"process {self.process_id} of {self.num_processes}"


def in_worker():
    """True in the child process started by :func:`lasres.cli.processes.supervise`."""
    return os.environ.get(WORKER_ENV) == "1"


def initialize(settings):
    """Join the multi-process run: :func:`jax.distributed.initialize`.

    Call it before anything touches a JAX device (``jax.devices()``, an
    array, a compilation). CPU devices talk through gloo.

    Raises
    ------
    LasresError
        When JAX is already in use, or the processes cannot connect.
    """
    try:
        import jax
    except ImportError:
        raise LasresError("multi-process training needs jax: pip install 'lasres[jax]'") from None
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = dict(initialization_timeout=max(settings.timeout, MIN_STARTUP_TIMEOUT),
                  heartbeat_timeout_seconds=settings.timeout,
                  shutdown_timeout_seconds=settings.timeout)
    if not settings.slurm:
        kwargs.update(coordinator_address=settings.coordinator,
                      num_processes=settings.num_processes, process_id=settings.process_id)
    try:
        jax.distributed.initialize(**kwargs)
        _report_joined()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "already initialized" in first or "should only be called once" in first:
            raise LasresError("jax.distributed must be initialized before JAX uses a device "
                              f"({first})") from None
        raise LasresError(f"{settings.describe()} could not join the run at "
                          f"{settings.coordinator or 'the SLURM coordinator'}: {first}") from None


def _report_joined():
    """Tell the supervisor (if any) that this process joined the run."""
    fd = os.environ.pop(JOINED_FD_ENV, None)
    if fd:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except (OSError, ValueError):
            pass


def process_index():
    """This process's index (0 without :mod:`jax.distributed`)."""
    jax = sys.modules.get("jax")
    return jax.process_index() if jax is not None and jax.distributed.is_initialized() else 0


def process_count():
    """The number of processes of the run (1 without :mod:`jax.distributed`)."""
    jax = sys.modules.get("jax")
    return jax.process_count() if jax is not None and jax.distributed.is_initialized() else 1


def is_primary():
    """True in process 0, the one that writes files and reports progress."""
    return process_index() == 0


def silence_stdout():
    """Send this process's standard output (Python's and the C libraries')
    to the null device: the other processes of a run leave the reporting
    to process 0. Errors still reach standard error."""
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)


def put(tree, sharding):
    """:func:`jax.device_put` of host values that every process holds whole
    (a global batch, the replicated training state) onto ``sharding``; with
    several processes each one transfers only the parts its own devices
    hold. JAX arrays already laid out as ``sharding`` are kept."""
    import jax

    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def one(x):
        if isinstance(x, jax.Array):
            if x.sharding == sharding:
                return x
            if not x.is_fully_addressable and not x.is_fully_replicated:
                return jax.device_put(x, sharding)  # a resharding between global arrays
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(one, tree)


def barrier(name):
    """Wait until every process reaches the barrier ``name`` (no-op with one
    process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def broadcast(tree):
    """Process 0's values of ``tree`` (NumPy arrays) on every process: the
    training state starts from process 0's parameters even where the
    others initialised theirs differently."""
    if process_count() == 1:
        return tree
    from jax.experimental import multihost_utils
    return multihost_utils.broadcast_one_to_all(tree)


def check_same(**values):
    """Check that every process has the same integer ``values`` (sizes,
    settings, checksums); a process that disagrees would run a different
    number of steps and leave the others waiting in a collective forever.

    Raises
    ------
    LasresError
        On every process, naming the values that differ.
    """
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils
    names = list(values)
    mine = np.array([int(values[k]) for k in names], np.int64)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(names))
    differ = [f"{name.replace('_', ' ')} ({', '.join(str(v) for v in every[:, i])} in processes "
              f"0..{len(every) - 1})" for i, name in enumerate(names)
              if np.any(every[:, i] != every[0, i])]
    if differ:
        raise LasresError("the processes of the run disagree on " + "; ".join(differ) +
                          ": start every process with the same command and data")


def all_agree(flag):
    """``flag`` (a bool) of every process, as a list indexed by process."""
    if process_count() == 1:
        return [bool(flag)]
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.array([int(bool(flag))], np.int32))
    return [bool(f) for f in np.asarray(flags).ravel()]
