"""Smoke runs of the other seed architectures through train_nn on the
rebuilt CIFAR-10 subset, at the seeds' named configurations, and the
dataset plumbing for MNIST (gzip IDX) and CIFAR-100 (python layout)."""
import json
import pickle

import numpy as np
import pytest

from _datasets import cifar10_subset, write_mnist
from lasres.cli import main_wrapper, train_main


@pytest.fixture(scope="module")
def cifar():
    return cifar10_subset(5000, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("args,title", [
    (["ror-wrn", "6", "2"], "RoR-3"),          # RoR-3-WRN-40-2
    (["rir", "18", "3"], "ResNet in ResNet"),  # the paper's 18-layer + wide RiR
    (["resnet", "3"], "ResNet"),               # ResNet-20
    (["plain", "3"], "plain"),                 # plain-20
])
def test_architectures_start_and_train(args, title, cifar, tmp_path, capsys):
    rc = main_wrapper(train_main, args + ["--data", str(cifar), "--epochs", "1", "--limit", "192",
                                          "--batch-size", "32", "--out", str(tmp_path),
                                          "--no-plot"])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, captured.err
    assert out.startswith("lasres | ") and title.lower() in out.splitlines()[0].lower()
    assert "parameters" in out and "backend c" in out
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["epoch"]) == 1 and np.isfinite(hist["train_loss"][0])


def test_mnist_plumbing(tmp_path, capsys):
    write_mnist(tmp_path, 120, 40)
    rc = main_wrapper(train_main, ["cnn", "8", "1", "--dataset", "mnist", "--data", str(tmp_path),
                                   "--epochs", "1", "--batch-size", "32",
                                   "--out", str(tmp_path / "run"), "--no-plot"])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, captured.err
    assert "108 training, 12 validation, 40 test images" in out


def test_cifar100_plumbing(tmp_path, capsys):
    rng = np.random.RandomState(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 96), ("test", 32)):
        d = {b"data": (rng.rand(n, 3072) * 255).astype(np.uint8),
             b"fine_labels": list(rng.randint(0, 100, n)),
             b"coarse_labels": list(rng.randint(0, 20, n))}
        (folder / split).write_bytes(pickle.dumps(d, protocol=2))
    rc = main_wrapper(train_main, ["resnet", "1", "--dataset", "cifar100", "--data",
                                   str(tmp_path), "--epochs", "1", "--batch-size", "32",
                                   "--out", str(tmp_path / "run"), "--no-plot"])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, captured.err
    assert "parameters" in out and "86 training, 10 validation, 32 test" in out
