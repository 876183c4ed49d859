"""End to end through the scripts on a real CIFAR-10 subset (rebuilt from
../shared): train -> checkpoint -> test_model round trip, resume, and the
one-line errors for bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _datasets import cifar10_subset
from lasres import cli
from lasres.cli import main_wrapper, train_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")


def run_script(name, *args, cwd=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def cifar():
    return cifar10_subset(5000, 1000)


@pytest.fixture(scope="module")
def trained(cifar, tmp_path_factory):
    """One epoch of `normal 1` on 4,500 real training images, through the script."""
    out = tmp_path_factory.mktemp("run")
    rc, stdout, stderr = run_script("train_nn.py", "normal", 1, "--data", cifar, "--epochs", 1,
                                    "--lr-schedule", "0.05", "--out", out, "--seed", 1)
    assert rc == 0, stderr[-3000:]
    return out, stdout


@pytest.mark.slow
def test_train_one_epoch_beats_chance(trained):
    out, stdout = trained
    assert "lasres | pre-activation ResNet" in stdout
    assert "78,442 parameters" in stdout
    for f in ("best.h5", "last.h5", "history.csv", "history.json", "curves.png",
              "pixel_mean.npy"):
        assert (out / f).exists(), f
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["epoch"]) == 1
    # 10 balanced classes: chance is 10%; one epoch on 4,500 images clears 20%.
    assert hist["val_acc"][0] > 0.2, hist
    assert "test accuracy" in stdout


@pytest.mark.slow
def test_checkpoint_round_trips_into_test_model(trained, cifar):
    out, stdout = trained
    reported = float(stdout.split("test accuracy ")[1].split("%")[0])
    rc, tstdout, stderr = run_script("test_model.py", "normal", 1, "--data", cifar,
                                     "--weights", out / "best.h5")
    assert rc == 0, stderr[-3000:]
    acc = float(tstdout.split("test accuracy ")[1].split("%")[0])
    assert acc == pytest.approx(reported, abs=1e-6)
    assert acc > 20.0
    assert "confusion matrix" in tstdout and "per-class accuracy" in tstdout


@pytest.mark.slow
def test_resume_continues_the_run(trained, cifar, tmp_path):
    out, _ = trained
    run = tmp_path / "run"
    run.mkdir()
    for f in ("last.h5", "best.h5", "pixel_mean.npy", "history.json"):
        (run / f).write_bytes((out / f).read_bytes())
    rc = main_wrapper(train_main, ["normal", "1", "--data", str(cifar), "--epochs", "2",
                                   "--lr-schedule", "0.05", "--out", str(run), "--seed", "1",
                                   "--resume", "--no-plot"])
    assert rc == 0
    hist = json.loads((run / "history.json").read_text())
    assert hist["epoch"] == [1, 2]
    first = json.loads((out / "history.json").read_text())
    assert hist["val_acc"][0] == first["val_acc"][0]


@pytest.mark.parametrize("argv,message", [
    (["bogus"], "unknown model type 'bogus'"),
    (["normal", "0"], "depth must be a positive integer"),
    (["normal", "3", "2"], "normal has no width argument"),
    (["normal", "1", "--data", "/nonexistent/cifar"], "CIFAR-10 data directory not found"),
    (["normal", "1", "--lr-schedule", "10:0.1"], "must start at epoch 0"),
])
def test_bad_training_input_is_one_line(argv, message, capsys):
    assert main_wrapper(train_main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_bad_weights_are_one_line(cifar, tmp_path, capsys, legacy_dir):
    corrupt = tmp_path / "corrupt.pklz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00garbage")
    cases = [
        (["normal", "1", "--weights", str(tmp_path / "missing.pklz")], "does not exist"),
        (["normal", "1", "--weights", str(corrupt)], "corrupt.pklz"),
        # a weight list of another architecture
        (["bottleneck", "1", "--weights", str(legacy_dir / "normal_n1_k1.pklz")],
         "got 42 values to set 58 parameters"),
        (["wide", "1", "2", "--weights", str(legacy_dir / "bottleneck_n1_k1.pklz")],
         "does not fit this network"),
    ]
    for argv, message in cases:
        assert main_wrapper(cli.test_main, argv + ["--data", str(cifar)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_script_error_has_no_traceback():
    rc, out, err = run_script("test_model.py", "resnet-9000")
    assert rc == 2
    assert "Traceback" not in err and err.strip().startswith("error: unknown model type")


def test_depth_hint_for_total_depths(capsys):
    from lasres.cli import depth_hint
    assert "'normal 18'" in depth_hint("normal", 110, 1)
    assert "'bottleneck 18'" in depth_hint("bottleneck", 164, 1)
    hint = depth_hint("wide", 16, 4)
    assert "WRN-16-4" in hint and "'wide 2 4'" in hint
    assert depth_hint("normal", 3, 1) is None


@pytest.mark.slow
def test_jax_data_parallel_through_the_script(cifar, tmp_path):
    """train_nn.py --backend jax --devices 4 on 4 (forced) host devices."""
    pytest.importorskip("jax")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONUNBUFFERED="1")
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, "train_nn.py"), "normal", "1",
                        "--data", str(cifar), "--epochs", "1", "--limit", "650", "--backend",
                        "jax", "--devices", "4", "--device-augment", "--out", str(tmp_path),
                        "--no-plot"], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "backend jax, device 4 x cpu" in p.stdout
    hist = json.loads((tmp_path / "history.json").read_text())
    assert np.isfinite(hist["train_loss"][0])


def test_jax_only_flags_need_the_jax_backend(capsys):
    assert main_wrapper(train_main, ["normal", "1", "--devices", "2"]) == 2
    assert "need(s) --backend jax" in capsys.readouterr().err


ENTRY_POINTS = {"lasres-train": ("train_nn.py", "train"), "lasres-test": ("test_model.py", "test"),
                "lasres-compare": ("compare.py", "compare"),
                "lasres-export": ("export_onnx.py", "export_onnx"),
                "lasres-export-torch": ("export_torch.py", "export_torch")}


def _setup_entry_points():
    """setup.py's console_scripts, read without running setup()."""
    import ast
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict((s.strip() for s in line.split("=")) for line in scripts)
    return {}


def test_scripts_need_no_sys_path_patching():
    for name, _ in ENTRY_POINTS.values():
        text = open(os.path.join(SCRIPTS, name)).read()
        assert "sys.path" not in text, name


def test_entry_points_are_the_scripts_mains():
    """Each console entry point of setup.py runs its script's main."""
    from lasres.cli import entry_points
    declared = _setup_entry_points()
    assert declared == {ep: f"lasres.cli.entry_points:{fn}"
                        for ep, (_, fn) in ENTRY_POINTS.items()}
    for _, fn in ENTRY_POINTS.values():
        assert callable(getattr(entry_points, fn))
    code = ("import sys; from lasres.cli.entry_points import train; "
            "sys.argv = ['lasres-train', '--help']; sys.exit(train())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "usage: train_nn.py" in p.stdout
    code = ("import sys; from lasres.cli.entry_points import test; "
            "sys.argv = ['lasres-test', 'nosuchtype']; sys.exit(test())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:"), p.stderr[-2000:]


def test_installed_entry_points_run(tmp_path):
    """After ``pip install -e .`` the commands sit beside the interpreter."""
    bindir = os.path.dirname(sys.executable)
    missing = [ep for ep in ENTRY_POINTS if not os.path.exists(os.path.join(bindir, ep))]
    if missing:
        pytest.skip(f"not installed here (run pip install -e .): {', '.join(missing)}")
    for ep in ("lasres-train", "lasres-compare"):
        p = subprocess.run([os.path.join(bindir, ep), "--help"], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
        assert p.returncode == 0 and "usage:" in p.stdout, p.stderr[-2000:]
