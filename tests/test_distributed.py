"""Multi-process data parallelism (lasres.train.distributed): two processes on the
loopback address, each with two forced CPU devices and gloo collectives,
against one process with four devices; a killed process; the README's
launch commands, run as written on a real CIFAR-10 subset."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from _datasets import cifar10_subset

pytest.importorskip("jax")

from lasres.train import distributed  # noqa: E402
from lasres.cli import processes  # noqa: E402
from lasres.errors import LasresError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=os.pathsep.join([REPO] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p]),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for var in list(processes.ENVIRONMENT.values()) + [distributed.WORKER_ENV]:
        env.pop(var, None)
    return env


# --- settings ------------------------------------------------------------------

def _args(**kw):
    base = dict(coordinator=None, num_processes=None, process_id=None, dist_timeout=None,
                backend="jax")
    base.update(kw)
    return SimpleNamespace(**base)


def test_settings_from_flags_and_environment():
    assert processes.settings_from_args(_args(), {}) is None
    s = processes.settings_from_args(
        _args(coordinator="10.0.0.1:29500", num_processes=2, process_id=1), {})
    assert (s.coordinator, s.num_processes, s.process_id, s.timeout, s.slurm) == \
        ("10.0.0.1:29500", 2, 1, distributed.DEFAULT_TIMEOUT, False)
    env = {"LASRES_COORDINATOR": "host:1234", "LASRES_NUM_PROCESSES": "4",
           "LASRES_PROCESS_ID": "3", "LASRES_DIST_TIMEOUT": "15"}
    s = processes.settings_from_args(_args(), env)
    assert (s.coordinator, s.num_processes, s.process_id, s.timeout) == ("host:1234", 4, 3, 15)
    s = processes.settings_from_args(_args(process_id=0), env)  # flags win
    assert s.process_id == 0
    slurm = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_ID": "7"}
    assert processes.settings_from_args(_args(), slurm).slurm
    assert processes.settings_from_args(_args(backend="c"), slurm) is None
    assert processes.settings_from_args(_args(), dict(slurm, SLURM_NTASKS="1")) is None


@pytest.mark.parametrize("kw, env, match", [
    (dict(coordinator="h:1"), {}, "without --num-processes P, --process-id I"),
    (dict(num_processes=2, process_id=0), {}, "without --coordinator"),
    (dict(coordinator="h", num_processes=2, process_id=0), {}, "HOST:PORT"),
    (dict(coordinator="h:99999", num_processes=2, process_id=0), {}, "HOST:PORT"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), {}, r"0\.\.1"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), {}, "at least 1"),
    ({}, {"LASRES_COORDINATOR": "h:1", "LASRES_NUM_PROCESSES": "two",
          "LASRES_PROCESS_ID": "0"}, r"\$LASRES_NUM_PROCESSES must be an integer"),
    (dict(coordinator="h:1", num_processes=2, process_id=0, dist_timeout=0), {}, "1 second"),
])
def test_settings_errors(kw, env, match):
    with pytest.raises(LasresError, match=match):
        processes.settings_from_args(_args(**kw), env)


def test_cli_errors_are_one_line(tmp_path):
    """A multi-process run needs the jax backend and all three settings."""
    cmd = [sys.executable, os.path.join(REPO, "scripts", "train_nn.py"), "normal", "1",
           "--data", str(tmp_path)]
    for extra, match in [(["--coordinator", "127.0.0.1:1", "--num-processes", "2",
                           "--process-id", "0"], "needs --backend jax"),
                         (["--backend", "jax", "--process-id", "0"], "without --coordinator")]:
        p = subprocess.run(cmd + extra, capture_output=True, text=True, env=_env(1),
                           timeout=120)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().splitlines() == [p.stderr.strip()]
        assert p.stderr.startswith("error: ") and match in p.stderr


# --- two processes against one ---------------------------------------------------

EQUIVALENCE_SCRIPT = textwrap.dedent("""
    import json, os, sys, warnings
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")
    from lasres.train import distributed
    mode, out, result = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "multi":
        distributed.initialize(distributed.Settings(
            coordinator="127.0.0.1:" + sys.argv[5], num_processes=2,
            process_id=int(sys.argv[4]), timeout=30))
    from types import SimpleNamespace
    import numpy as np, jax
    from lasres.train.jax_trainer import JaxTrainer
    from lasres.layers import get_all_param_values
    from lasres.models import build
    from lasres.random import set_rng
    from lasres.train import fit

    # process 1 initialises its network differently: the trainer starts
    # every process from process 0's values
    set_rng(np.random.RandomState(0 if mode == "single" else 7 * int(sys.argv[4])))
    net = build("normal", 1, input_shape=(None, 3, 16, 16))
    start0 = get_all_param_values(net)[0].copy()
    from lasres.errors import LasresError
    if mode == "multi":
        try:
            JaxTrainer(net, devices=2)
            raise AssertionError("devices=2 accepted in a run of 4 devices")
        except LasresError as exc:
            assert "leave out --devices" in str(exc), exc
    tr = JaxTrainer(net, devices=4 if mode == "single" else None)  # None: all devices
    disagree, agree = None, distributed.all_agree(jax.process_index() == 0)
    try:
        distributed.check_same(epochs=3, training_images=100 + jax.process_index())
    except LasresError as exc:
        disagree = str(exc)
    start_broadcast = bool(np.array_equal(get_all_param_values(net)[0], start0))
    rng = np.random.RandomState(1)
    X = rng.randn(8, 3, 16, 16).astype("float32")
    y = rng.randint(0, 10, 8).astype("int32")
    step = [float(v) for v in tr.train_fn(X, y)]
    tr.sync_to_host()
    after_step = get_all_param_values(net)
    rows = sorted({(s.index[0].start, s.index[0].stop)
                   for s in distributed.put(X, tr._batch_sharded).addressable_shards})
    data = SimpleNamespace(X_train=rng.randn(36, 3, 16, 16).astype("float32"),
                           y_train=rng.randint(0, 10, 36).astype("int32"),
                           X_valid=rng.randn(10, 3, 16, 16).astype("float32"),
                           y_valid=rng.randint(0, 10, 10).astype("int32"),
                           pixel_mean=np.zeros((3, 16, 16), "float32"))
    hist = fit(tr, data, epochs=1, out_dir=out, batch_size=8, augment="batch", seed=3,
               schedule=((0, 0.05),), progress=False, plot=False)
    tr.sync_to_host()
    final = get_all_param_values(net)
    probs = tr.predict_fn(data.X_valid)
    np.savez(result + ".npz", probs=probs,
             **{f"step{i}": a for i, a in enumerate(after_step)},
             **{f"final{i}": a for i, a in enumerate(final)})
    with open(result + ".json", "w") as f:
        json.dump(dict(process=jax.process_index(), processes=jax.process_count(),
                       devices=len(jax.devices()), local=len(jax.local_devices()),
                       mesh=int(tr.mesh.size), rows=rows, own_start=start_broadcast,
                       disagree=disagree, agree=agree, step=step, n_params=len(final),
                       history={k: v for k, v in hist.as_dict().items() if k != "seconds"},
                       files=sorted(os.listdir(out)) if os.path.isdir(out) else None), f)
""")


def _close(a, b, rtol=1e-4, atol=1e-6):
    """Equal to within ``rtol`` of the array's largest magnitude: float32
    noise (the all-reduce over processes sums in another order)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b), initial=0)) <= \
        rtol * float(np.max(np.abs(a), initial=0)) + atol


@pytest.mark.slow
def test_two_processes_equal_one_process_with_four_devices(tmp_path):
    port = _free_port()
    procs = {}
    for name, argv, devices in [("single", ["single"], 4),
                                ("p0", ["multi", "0", str(port)], 2),
                                ("p1", ["multi", "1", str(port)], 2)]:
        out, result = str(tmp_path / f"out_{name}"), str(tmp_path / name)
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", EQUIVALENCE_SCRIPT, argv[0], out, result] + argv[1:],
            env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {}
    try:
        for name, p in procs.items():
            outputs[name] = p.communicate(timeout=300)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {outputs[name][1][-3000:]}"
    r = {name: json.load(open(tmp_path / f"{name}.json")) for name in procs}
    a = {name: np.load(tmp_path / f"{name}.npz") for name in procs}
    assert (r["single"]["processes"], r["single"]["devices"], r["single"]["mesh"]) == (1, 4, 4)
    for i, name in enumerate(("p0", "p1")):
        assert (r[name]["process"], r[name]["processes"], r[name]["devices"],
                r[name]["local"], r[name]["mesh"]) == (i, 2, 4, 2, 4)
    assert r["single"]["disagree"] is None and r["single"]["agree"] == [True]
    for name in ("p0", "p1"):
        assert r[name]["agree"] == [True, False]
        assert r[name]["disagree"] == ("the processes of the run disagree on training images "
                                       "(100, 101 in processes 0..1): start every process with "
                                       "the same command and data")
    # process 1's own initial values were replaced by process 0's
    assert r["p0"]["own_start"] and not r["p1"]["own_start"]
    # each process holds only its own half of the global batch of 8
    assert r["p0"]["rows"] == [[0, 2], [2, 4]] and r["p1"]["rows"] == [[4, 6], [6, 8]]
    assert r["single"]["rows"] == [[0, 2], [2, 4], [4, 6], [6, 8]]
    n = r["single"]["n_params"]
    for name in ("p0", "p1"):
        # one step: the same loss, accuracy and parameters (BN statistics included)
        np.testing.assert_allclose(r[name]["step"][0], r["single"]["step"][0], rtol=1e-5)
        assert r[name]["step"][1] == r["single"]["step"][1]
        for i in range(n):
            assert _close(a["single"][f"step{i}"], a[name][f"step{i}"]), f"step, array {i}"
        # one epoch of fit (5 batches, host augmentation, validation)
        hs, hm = r["single"]["history"], r[name]["history"]
        assert hs["epoch"] == hm["epoch"] == [1]
        for key in ("train_loss", "val_loss"):
            np.testing.assert_allclose(hm[key], hs[key], rtol=1e-5)
        for key in ("train_acc", "val_acc"):
            np.testing.assert_allclose(hm[key], hs[key], atol=1e-6)
        for i in range(n):
            assert _close(a["single"][f"final{i}"], a[name][f"final{i}"]), f"epoch, array {i}"
        np.testing.assert_allclose(a[name]["probs"], a["single"]["probs"], atol=1e-5)
    # the step changed the parameters and the epoch changed them again
    assert not np.allclose(a["single"]["final0"], a["single"]["step0"])
    # only process 0 writes the run folder
    assert r["p0"]["files"] == r["single"]["files"] and "last.h5" in r["p0"]["files"]
    assert r["p1"]["files"] is None
    assert "epoch   1/1" in outputs["p0"][0] and "epoch" not in outputs["p1"][0]


# --- the command line: a killed process, the README's commands ----------------

@pytest.fixture(scope="module")
def cifar_data():
    return cifar10_subset(5000, 1000)  # the size test_scripts.py builds: shared per session


def _reader(stream, lines, event=None, pattern=None):
    def run():
        for line in stream:
            lines.append(line)
            if event is not None and pattern in line:
                event.set()
        if event is not None:
            event.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_a_dead_process_stops_the_other_with_an_error(tmp_path, cifar_data, victim):
    """Kill one process (its whole process group: the host goes away) in the
    middle of training; the survivor ends with an ``error:`` line: at once
    when process 0 (the coordinator) died, else within the heartbeat timeout."""
    timeout = 10
    port = _free_port()
    procs, outs, errs, threads = [], [], [], []
    started = threading.Event()
    for pid in (0, 1):
        cmd = [sys.executable, os.path.join(REPO, "scripts", "train_nn.py"), "normal", "1",
               "--backend", "jax", "--data", str(cifar_data), "--limit", "400",
               "--epochs", "100", "--batch-size", "8", "--no-plot", "--out", str(tmp_path),
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
               "--process-id", str(pid), "--dist-timeout", str(timeout)]
        p = subprocess.Popen(cmd, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        procs.append(p)
        outs.append([])
        errs.append([])
        threads.append(_reader(p.stdout, outs[-1], *((started, "first training step")
                                                     if pid == 0 else ())))
        threads.append(_reader(p.stderr, errs[-1]))
    survivor = procs[1 - victim]
    try:
        assert started.wait(240), "".join(errs[0])[-3000:]
        assert procs[0].poll() is None and procs[1].poll() is None, "".join(errs[0])[-3000:]
        time.sleep(1)
        os.killpg(procs[victim].pid, signal.SIGKILL)
        t0 = time.time()
        status = survivor.wait(timeout=2 * timeout + 30)
        elapsed = time.time() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for t in threads:
        t.join(10)
    stderr = "".join(errs[1 - victim])
    last = stderr.strip().splitlines()[-1]
    assert status == 1, stderr[-3000:]
    assert last.startswith(f"error: process {1 - victim} of 2 stopped"), stderr[-3000:]
    assert "lost a process" in last and f"{timeout} s" in last
    assert "Traceback" not in stderr
    assert elapsed < (10 if victim == 0 else 2 * timeout + 10), elapsed
    # no worker left behind
    assert subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True).stdout == b""


# The launch commands proposed for README.md ("Several hosts (JAX)"); the
# test below runs them as written, on one host, adding only the data, a
# tiny --limit and --epochs and the run folder (and a free port).
README_TWO_HOSTS = """\
# on the host 10.0.0.1
python scripts/train_nn.py normal 3 --backend jax --coordinator 10.0.0.1:29500 --num-processes 2 --process-id 0
# on the other host
python scripts/train_nn.py normal 3 --backend jax --coordinator 10.0.0.1:29500 --num-processes 2 --process-id 1
"""
README_ONE_HOST = """\
export XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu
export LASRES_COORDINATOR=127.0.0.1:29500 LASRES_NUM_PROCESSES=2
LASRES_PROCESS_ID=1 python scripts/train_nn.py normal 3 --backend jax &
LASRES_PROCESS_ID=0 python scripts/train_nn.py normal 3 --backend jax
wait
"""


def test_readme_shows_the_tested_launch_commands():
    """README.md gives the commands the next test runs, verbatim (as
    indented code blocks)."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    for block in (README_TWO_HOSTS, README_ONE_HOST):
        indented = "".join("    " + line + "\n" for line in block.splitlines())
        assert indented in readme, f"README.md lacks the block:\n{indented}"


def _with_extras(line, port, extras):
    line = line.replace("10.0.0.1:29500", f"127.0.0.1:{port}")
    line = line.replace("127.0.0.1:29500", f"127.0.0.1:{port}")
    if "scripts/train_nn.py" not in line:
        return line
    background = line.endswith(" &")
    line = line[:-2] if background else line
    return line + " " + " ".join(extras) + (" &" if background else "")


@pytest.mark.slow
def test_readme_launch_commands_as_written(tmp_path, cifar_data):
    """The two-host commands (both processes on this host), then the one-host
    commands resuming that run for a second epoch: process 0 writes the run
    folder and reports, process 1 stays quiet, both resume from it."""
    out = tmp_path / "run"
    # 143 images: 128 training (two global batches of 64), 15 validation, 143 test
    extras = ["--data", str(cifar_data), "--limit", "143", "--out", str(out)]
    env = _env(2)  # these CPU "hosts" have two devices each
    port = _free_port()
    lines = [l for l in README_TWO_HOSTS.splitlines() if l.startswith("python ")]
    assert len(lines) == 2
    procs = [subprocess.Popen(["bash", "-c", _with_extras(l, port, extras + ["--epochs", "1"])],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for l in lines]
    try:
        results = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (o, e) in zip(procs, results):
        assert p.returncode == 0, e[-3000:]
    out0, out1 = results[0][0], results[1][0]
    assert "4 x cpu (cpu) in 2 processes" in out0, out0
    assert "data   | 128 training, 15 validation, 143 test images" in out0
    assert re.search(r"epoch   1/1  train loss \d", out0), out0
    assert "test accuracy" in out0
    assert out1.strip() == "", out1  # process 1 prints nothing
    assert {"last.h5", "best.h5", "history.csv", "history.json", "curves.png",
            "pixel_mean.npy"} <= set(os.listdir(out))
    hist1 = json.load(open(out / "history.json"))
    assert hist1["epoch"] == [1]

    port = _free_port()
    script = "\n".join(_with_extras(l, port, extras + ["--epochs", "2", "--resume"])
                       for l in README_ONE_HOST.splitlines())
    env = {k: v for k, v in env.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    p = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resume | from" in p.stdout and "epoch 1" in p.stdout, p.stdout
    assert p.stdout.count("lasres | ") == 1  # one banner: process 0's
    assert re.search(r"epoch   2/2  train loss \d", p.stdout), p.stdout
    assert "epoch   1/2" not in p.stdout
    hist2 = json.load(open(out / "history.json"))
    assert hist2["epoch"] == [1, 2] and hist2["train_loss"][0] == hist1["train_loss"][0]
