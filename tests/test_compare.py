"""compare.py end to end on a real CIFAR-10 subset: two tiny models, one
epoch each, one plot and one JSON record holding both runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _datasets import cifar10_subset, write_mnist
from lasres.cli import main_wrapper
from lasres.cli import compare_main
from lasres.compare import parse_model
from lasres.errors import LasresError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cifar():
    return cifar10_subset(5000, 1000)  # the size test_scripts.py builds: shared per session


@pytest.mark.slow
def test_compare_two_models_end_to_end(cifar, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main_wrapper(compare_main, ["resnet:1", "plain:1", "--epochs", "1", "--limit", "300",
                                     "--data", str(cifar), "--out", str(out),
                                     "--lr-schedule", "0.05", "--seed", "1"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert stdout.count("lasres | ") == 2  # one banner per model
    assert "=== [1/2] resnet:1:1 ===" in stdout and "=== [2/2] plain:1:1 ===" in stdout
    table = stdout[stdout.index("model "):]
    assert "resnet:1:1" in table and "plain:1:1" in table

    png = out / "compare.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    record = json.loads((out / "compare.json").read_text())
    assert record["epochs"] == 1 and record["limit"] == 300
    assert record["train_images"] + record["valid_images"] == 300
    runs = {r["label"]: r for r in record["runs"]}
    assert set(runs) == {"resnet:1:1", "plain:1:1"}
    for label, r in runs.items():
        assert r["layers"] == 8
        assert r["params"] == 75770  # option A: ResNet and plain net of equal size
        assert r["history"]["epoch"] == [1]
        assert len(r["history"]["train_loss"]) == 1 and r["history"]["train_loss"][0] > 0
        assert 0.0 <= r["test_acc"] <= 1.0
        assert os.path.exists(os.path.join(r["run_dir"], "history.json"))


def test_compare_on_an_mnist_format_dataset(tmp_path, capsys):
    """--dataset: the nets are built for 1 x 28 x 28 input, the dataset's
    default augmentation (none) is used and recorded with the dataset."""
    write_mnist(tmp_path / "fashion-mnist", n_train=40, n_test=8)
    out = tmp_path / "cmp"
    rc = main_wrapper(compare_main, ["cnn:8:1", "rir:8:1", "--dataset", "fashion-mnist",
                                     "--epochs", "1", "--data", str(tmp_path), "--out", str(out),
                                     "--lr-schedule", "0.05", "--batch-size", "8"])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert "36 training, 4 validation, 8 test images" in stdout
    record = json.loads((out / "compare.json").read_text())
    assert record["dataset"] == "fashion-mnist" and record["augment"] == "none"
    assert record["title"].startswith("Fashion-MNIST, 36 training images")
    runs = {r["label"]: r for r in record["runs"]}
    assert set(runs) == {"cnn:8:1", "rir:8:1"}
    assert runs["cnn:8:1"]["params"] == runs["rir:8:1"]["params"]  # same size, as the paper says
    # the stem reads one channel instead of three: 2 x 3 x 3 x 32 weights fewer
    from lasres.layers import count_params
    assert runs["cnn:8:1"]["params"] == count_params(parse_model("cnn:8:1").build()) - 2 * 9 * 32
    assert all(len(r["history"]["train_loss"]) == 1 for r in runs.values())
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_resumes_in_pieces(tmp_path, capsys):
    """--resume: 1 epoch then 1 more gives the 2-epoch comparison made in one
    go (same weights, batches and history); a finished run is not retrained."""
    write_mnist(tmp_path / "mnist", n_train=40, n_test=8)
    args = ["cnn:8:1", "--dataset", "mnist", "--data", str(tmp_path), "--lr-schedule",
            "0:0.05,1:0.01", "--batch-size", "8", "--seed", "3"]

    def run(out, epochs, *extra):
        assert main_wrapper(compare_main, args + ["--out", str(out), "--epochs", str(epochs),
                                                  *extra]) == 0
        return json.loads((out / "compare.json").read_text())["runs"][0]

    whole = run(tmp_path / "whole", 2)
    run(tmp_path / "pieces", 1)
    capsys.readouterr()
    pieces = run(tmp_path / "pieces", 2, "--resume")
    assert "1 of 2 epochs done" in capsys.readouterr().out
    for key in ("train_loss", "val_loss", "val_acc", "learning_rate"):
        np.testing.assert_allclose(pieces["history"][key], whole["history"][key], rtol=1e-5)
    assert pieces["test_acc"] == whole["test_acc"]
    again = run(tmp_path / "pieces", 2, "--resume")  # nothing left: kept as it was
    assert again["history"] == pieces["history"] and again["test_acc"] == pieces["test_acc"]
    # another net's checkpoint in a run's folder is refused, not loaded
    (tmp_path / "pieces" / "rir_n8_k1").mkdir()
    (tmp_path / "pieces" / "rir_n8_k1" / "last.h5").write_bytes(
        (tmp_path / "pieces" / "cnn_n8_k1" / "last.h5").read_bytes())
    with pytest.raises(LasresError):
        compare_main(["rir:8:1"] + args[1:] + ["--out", str(tmp_path / "pieces"), "--epochs", "2",
                                                 "--resume"])

def test_model_specs():
    r = parse_model("rir")
    assert (r.type, r.depth, r.width) == ("rir", 18, 3)
    r = parse_model("resnet:3:1:preact=1")
    assert (r.type, r.depth, r.width, r.options) == ("resnet", 3, 1, {"preact": 1})
    assert parse_model("ror-wrn:6:2").label == "ror-wrn:6:2"
    for bad in ("nope:3", "resnet:x", "resnet:3:2", "resnet:1:1:1", "resnet:1:foo=2",
                "resnet:preact=1:3"):
        with pytest.raises(LasresError):
            parse_model(bad)
    # too shallow for any block size: the depths of the default two-layer blocks are named
    with pytest.raises(LasresError, match=r"depth in 8, 10, 12, 14, \.\.\. \(got 4\)"):
        parse_model("rir:4")


def test_script_reports_bad_models_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "compare.py"), "resnet:3",
                        "rir:7", "--data", str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert "depth" in p.stderr


class _Built(Exception):
    """Raised by the stand-in trainers: which class compare built, with what."""


def _stand_in(monkeypatch, module, name, log):
    import importlib
    mod = importlib.import_module(module)

    class StandIn(getattr(mod, name)):
        def __init__(self, network, **kwargs):
            log.append((name, kwargs))
            raise _Built(name)

    monkeypatch.setattr(mod, name, StandIn)


@pytest.mark.parametrize("backend, expected", [("jax", "JaxTrainer"), ("c", "Trainer")])
def test_compare_builds_the_trainer_train_nn_builds(tmp_path, monkeypatch, backend, expected):
    """--backend jax trains with lasres.train.jax_trainer.JaxTrainer (through
    cli.make_trainer, as train_nn.py), the C backend with lasres.train.trainer.Trainer."""
    write_mnist(tmp_path / "mnist", n_train=40, n_test=8)
    log = []
    _stand_in(monkeypatch, "lasres.train.jax_trainer", "JaxTrainer", log)
    _stand_in(monkeypatch, "lasres.train.trainer", "Trainer", log)
    with pytest.raises(_Built, match=expected):
        compare_main(["cnn:8:1", "--dataset", "mnist", "--data", str(tmp_path), "--epochs", "1",
                      "--out", str(tmp_path / "cmp"), "--backend", backend, "--l2", "0.001",
                      "--momentum", "0.8", "--seed", "7"])
    (name, kwargs), = log
    assert name == expected
    assert kwargs["l2"] == 0.001 and kwargs["momentum"] == 0.8
    if backend == "jax":
        assert kwargs["seed"] == 7 and kwargs["devices"] is None


def test_compare_preprocesses_each_net_as_train_nn_does(cifar, tmp_path, monkeypatch):
    """A layout=keras net gets the Keras seed's x / 255 (as train_nn.py gives
    it), the others the legacy mean subtraction: one preparation each."""
    import lasres.data
    calls = []
    real = lasres.data.prepare_dataset

    def recording(*args, **kwargs):
        calls.append(kwargs.get("preprocessing"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lasres.data, "prepare_dataset", recording)
    log = []
    _stand_in(monkeypatch, "lasres.train.trainer", "Trainer", log)
    with pytest.raises(_Built):
        compare_main(["ror:1:layout=keras", "cnn:8:1", "ror:1", "--data", str(cifar),
                      "--limit", "50", "--epochs", "1", "--out", str(tmp_path / "cmp")])
    assert calls == ["keras-seed", "legacy"]


def test_compare_trains_with_the_jax_trainer_end_to_end(tmp_path, monkeypatch, capsys):
    """A whole --backend jax comparison runs on lasres.train.jax_trainer.JaxTrainer."""
    pytest.importorskip("jax")
    import lasres.train.jax_trainer
    write_mnist(tmp_path / "mnist", n_train=40, n_test=8)
    built = []

    class Recording(lasres.train.jax_trainer.JaxTrainer):
        def __init__(self, network, **kwargs):
            built.append(kwargs)
            super().__init__(network, **kwargs)

    monkeypatch.setattr(lasres.train.jax_trainer, "JaxTrainer", Recording)
    out = tmp_path / "cmp"
    assert main_wrapper(compare_main, ["cnn:8:1", "--dataset", "mnist", "--data", str(tmp_path),
                                       "--epochs", "1", "--batch-size", "8", "--out", str(out),
                                       "--backend", "jax"]) == 0
    assert len(built) == 1
    run, = json.loads((out / "compare.json").read_text())["runs"]
    assert run["history"]["epoch"] == [1] and run["history"]["train_loss"][0] > 0
    assert "backend jax" in capsys.readouterr().out



def test_train_and_compare_share_one_set_up(tmp_path, monkeypatch):
    """train_nn.py and compare.py go through one set-up (lasres.cli.run_setup):
    the same flags give the same plan (recipe, batch, schedule, augmentation),
    the same data preparation and the same trainer arguments."""
    from lasres.cli import run_setup, train_main
    write_mnist(tmp_path / "mnist", n_train=40, n_test=8)
    plans, preps, trainers = [], [], []
    real_plan, real_prepare = run_setup.plan_run, run_setup.prepare_run_data

    def plan_run(*args, **kwargs):
        plans.append(real_plan(*args, **kwargs))
        return plans[-1]

    def prepare_run_data(args, preprocessing, pixel_mean_path=None):
        preps.append(preprocessing)
        return real_prepare(args, preprocessing, pixel_mean_path)

    def start_trainer(network, args, learning_rate, backend=None, ckpt=None):
        trainers.append((args.l2, args.momentum, args.seed, learning_rate, ckpt))
        raise _Built("start_trainer")

    monkeypatch.setattr(run_setup, "plan_run", plan_run)
    monkeypatch.setattr(run_setup, "prepare_run_data", prepare_run_data)
    monkeypatch.setattr(run_setup, "start_trainer", start_trainer)
    flags = ["--dataset", "mnist", "--data", str(tmp_path), "--epochs", "1", "--seed", "3",
             "--l2", "0.002", "--momentum", "0.7", "--lr-schedule", "0:0.05",
             "--batch-size", "16"]
    with pytest.raises(_Built):
        train_main(["cnn", "8", "1", "--out", str(tmp_path / "train")] + flags)
    with pytest.raises(_Built):
        compare_main(["cnn:8:1", "--out", str(tmp_path / "cmp")] + flags)
    assert len(plans) == 2 and plans[0] == plans[1]
    assert (plans[0].batch_size, plans[0].schedule, plans[0].augment, plans[0].fit_augment) \
        == (16, ((0, 0.05),), "none", None)
    from lasres.data.preprocessing import as_preprocess
    assert [as_preprocess(p) for p in preps] == [as_preprocess("legacy")] * 2
    assert trainers == [(0.002, 0.7, 3, 0.05, None)] * 2
