"""The weights registry (lasres.weights.registry) and preprocessing as data
(lasres.data.preprocessing), issue 31: registered files recognised by content,
their architecture and preprocessing used by test_model.py, fetch over
file:// URLs, the preprocessing recorded in checkpoints, and the Lasagne
Recipes' published ResNet-32 against the real Lasagne on the shared images."""
import hashlib
import json
import re

import numpy as np
import pytest

import lasres
from conftest import SHARED
from lasres import cli
from lasres.cli import main_wrapper
from lasres.data import prepare_dataset, scale255
from lasres.data.preprocessing import (MEAN_KINDS, PRESETS, Preprocess, compute_mean,
                                    mean_cache_path, parse_preprocess)
from lasres.errors import DataError, WeightFileError
from lasres.weights import fetch, identify, load_weights, registry

RECIPES = SHARED / "fixtures" / "recipes"
N5 = RECIPES / "cifar_model_n5.npz"


# --- the registry's entries ------------------------------------------------------
def test_every_entry_names_a_buildable_net_and_a_round_tripping_preprocessing():
    from lasres.models import get_spec
    names = [e.name for e in registry.entries()]
    assert len(names) == len(set(names))
    for e in registry.entries():
        assert e.sha256 or e.git_blob_sha1, e.name
        if e.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        if e.git_blob_sha1:
            assert re.fullmatch(r"[0-9a-f]{40}", e.git_blob_sha1), e.name
        spec = get_spec(e.arch["type"])
        spec.validate(e.arch["depth"], e.arch["width"])
        assert set(e.arch["options"]) <= set(spec.options), e.name
        assert e.source_url.startswith("https://") and e.source_url.endswith(e.file_name)
        assert e.published_error and e.published_where and e.licence
        p = e.preprocess
        assert Preprocess.from_dict(json.loads(json.dumps(p.to_dict()))) == p
        assert parse_preprocess(p.spec) == p
        assert registry.get(e.name) is e and registry.get(e.file_name) is e


def test_registered_files_of_the_seeds():
    by_file = {e.file_name: e for e in registry.entries()}
    for f, arch in (("resnet110_fullpreactivation_638.pklz", ("normal", 18, 1)),
                    ("resnet164_fullpreactivation.pklz", ("bottleneck", 18, 1)),
                    ("RoR-WRN-40-2-Weights.h5", ("ror-wrn", 6, 2)),
                    ("cifar_model_n5.npz", ("resnet", 5, 1)),
                    ("cifar_model_n9.npz", ("resnet", 9, 1))):
        e = by_file[f]
        assert (e.arch["type"], e.arch["depth"], e.arch["width"]) == arch
    assert by_file["RoR-WRN-40-2-Weights.h5"].preprocess == PRESETS["keras-seed"]
    assert by_file["resnet164_fullpreactivation.pklz"].preprocess == PRESETS["legacy"]
    n9 = by_file["cifar_model_n9.npz"]
    assert n9.size == 3_477_436 and n9.sha256.startswith("fb32bb04") \
        and n9.sha256.endswith("73845")
    assert n9.preprocess == PRESETS["recipes"] == Preprocess(1 / 255, "pixel-all")
    assert n9.arch["options"] == {"shortcut": "subsample"}


def test_the_shared_resnet32_file_is_recognised_by_content(tmp_path):
    e = registry.get("resnet32-recipes")
    raw = N5.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == e.sha256 and len(raw) == e.size
    assert hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest() == e.git_blob_sha1
    renamed = tmp_path / "my_weights.bin"
    renamed.write_bytes(raw)
    assert identify(renamed) is e and identify(N5) is e
    damaged = tmp_path / "cifar_model_n5.npz"
    damaged.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert identify(damaged) is None


def test_load_weights_checks_the_architecture_of_a_registered_file():
    right = {"type": "resnet", "depth": 5, "width": 1, "options": {"shortcut": "subsample"}}
    values = load_weights(N5, arch=right)
    assert len(values) == len(load_weights(N5))
    flat = {"type": "resnet", "depth": 5, "width": 1, "shortcut": "subsample"}  # checkpoints'
    assert len(load_weights(N5, arch=flat)) == len(values)
    with pytest.raises(WeightFileError, match=r"resnet32-recipes .*'resnet 5 --option "
                       r"shortcut=subsample', not 'resnet 9'"):
        load_weights(N5, arch={"type": "resnet", "depth": 9, "width": 1})


def test_available_pretrained_and_list_weights(capsys):
    listed = lasres.models.available(pretrained=True)
    assert [e.name for e in listed] == [e.name for e in registry.entries()]
    assert "resnet" in lasres.models.available()
    assert main_wrapper(cli.test_main, ["--list-weights"]) == 0
    out = capsys.readouterr().out
    for e in registry.entries():
        assert e.name in out and e.file_name in out and e.checksum in out
    line = next(x for x in out.splitlines() if x.startswith("resnet32-recipes"))
    assert "resnet 5" in line and "7.42%" in line and "20.30%" in line \
        and "scale=1/255,mean=pixel-all" in line


# --- fetch over file:// ------------------------------------------------------------
def test_fetch_downloads_checks_and_caches(tmp_path):
    cache = tmp_path / "cache"
    got = fetch("resnet32-recipes", cache, url=N5.as_uri())
    assert got == str(cache / "cifar_model_n5.npz")
    assert registry.sha256_file(got) == registry.get("resnet32-recipes").sha256
    assert fetch("resnet32-recipes", cache) == got  # a verified copy: no download


def test_fetch_refuses_a_damaged_file_and_says_where_to_put_it_offline(tmp_path):
    raw = bytearray(N5.read_bytes())
    raw[1000] ^= 1
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    expected = registry.get("resnet32-recipes").sha256
    with pytest.raises(WeightFileError) as exc:
        fetch("resnet32-recipes", cache, url=bad.as_uri())
    msg = str(exc.value)
    assert "\n" not in msg and expected in msg and "mismatch" in msg
    assert not (cache / "cifar_model_n5.npz").exists() and list(cache.iterdir()) == []
    with pytest.raises(WeightFileError) as exc:
        fetch("resnet32-recipes", cache, url=(tmp_path / "missing.npz").as_uri())
    msg = str(exc.value)
    assert "\n" not in msg and f"put cifar_model_n5.npz" in msg and str(cache) in msg
    (cache / "cifar_model_n5.npz").write_bytes(bytes(raw))  # a damaged copy in the cache
    with pytest.raises(WeightFileError, match=expected):
        fetch("resnet32-recipes", cache)
    with pytest.raises(WeightFileError, match="no registered weight file"):
        fetch("resnet-1000", cache)


# --- preprocessing as data ---------------------------------------------------------
def test_preprocess_specs_and_presets():
    assert parse_preprocess("legacy") == Preprocess(1.0, "pixel-split")
    assert parse_preprocess("keras-seed") == Preprocess(1 / 255, "none")
    assert parse_preprocess("scale=1/255,mean=pixel-all") == PRESETS["recipes"]
    assert parse_preprocess("mean") == PRESETS["legacy"]  # the old names
    assert parse_preprocess("scale255") == PRESETS["keras-seed"]
    p = parse_preprocess("recipes,std=0.25:0.5:1")
    assert p == Preprocess(1 / 255, "pixel-all", (0.25, 0.5, 1.0))
    assert parse_preprocess(p.spec) == p and p.preset is None and "std" in p.spec
    assert parse_preprocess("mean=channel").scale == 1.0
    for bad in ("", "scale=abc", "scale=1/0", "scale=-1", "mean=median", "foo=1", "nonsense",
                "std=0", "std=a:b"):
        with pytest.raises(DataError) as exc:
            parse_preprocess(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(DataError):
        Preprocess.from_dict({"scale": 1, "mean": "none", "extra": 1})
    assert set(MEAN_KINDS) == {"pixel-split", "pixel-all", "channel", "none"}


def test_pixel_all_mean_is_the_recipes_float32_mean():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (3000, 3, 8, 8)).astype(np.uint8)
    # the Recipes' load_data: rows / float32(255), dstack, reshape, transpose, np.mean(axis=0)
    rows = X.reshape(len(X), 3, -1).reshape(len(X), -1)
    x = rows / np.float32(255)
    n = 64
    x = np.dstack((x[:, :n], x[:, n:2 * n], x[:, 2 * n:]))
    x = x.reshape((x.shape[0], 8, 8, 3)).transpose(0, 3, 1, 2)
    ref = np.mean(x, axis=0)
    got = compute_mean(PRESETS["recipes"], X)
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    ch = compute_mean(Preprocess(1.0, "channel"), X)
    assert ch.shape == (3, 1, 1)
    np.testing.assert_allclose(ch[:, 0, 0], X.mean(axis=(0, 2, 3)), rtol=1e-6)
    out = PRESETS["recipes"].apply(X[:5], got)
    assert np.array_equal(out, (X[:5] / np.float32(255) - ref).astype(np.float32))
    assert np.array_equal(PRESETS["keras-seed"].apply(X[:5]), scale255(X[:5]))


@pytest.fixture(scope="module")
def small_cifar():
    from _datasets import cifar10_subset
    return cifar10_subset(500, 100)


def test_prepare_dataset_takes_a_preprocess_and_caches_the_whole_mean(small_cifar, tmp_path):
    old = prepare_dataset("cifar10", small_cifar, preprocessing="mean", seed=3)
    new = prepare_dataset("cifar10", small_cifar, preprocessing=PRESETS["legacy"], seed=3)
    assert np.array_equal(old.X_test, new.X_test) and np.array_equal(old.X_train, new.X_train)
    cache = tmp_path / "cache"
    cache.mkdir()
    d = prepare_dataset("cifar10", small_cifar, preprocessing="scale=1/255,mean=pixel-all",
                        test_only=True, mean_cache=cache)
    assert d.pixel_mean_computed and d.pixel_mean.shape == (3, 32, 32)
    path = mean_cache_path(PRESETS["recipes"], cache, "cifar10", 500)
    assert d.pixel_mean_file == path and np.array_equal(np.load(path), d.pixel_mean)
    again = prepare_dataset("cifar10", small_cifar, preprocessing=PRESETS["recipes"],
                            test_only=True, mean_cache=cache)
    assert not again.pixel_mean_computed and np.array_equal(again.X_test, d.X_test)
    with pytest.raises(ValueError):
        prepare_dataset("cifar10", small_cifar, preprocessing="bogus")


# --- test_model.py and train_nn.py -------------------------------------------------
def _error_line(capsys, argv):
    assert main_wrapper(cli.test_main, argv) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_test_model_one_line_errors(capsys, small_cifar):
    line = _error_line(capsys, ["resnet", "9", "--weights", str(N5), "--data", str(small_cifar)])
    assert "resnet32-recipes" in line and "'resnet 5 --option shortcut=subsample'" in line \
        and "test_model.py resnet 5 " in line
    line = _error_line(capsys, ["resnet", "5", "--weights", str(N5), "--option", "preact=1",
                                "--data", str(small_cifar)])
    assert "resnet32-recipes" in line
    line = _error_line(capsys, ["resnet", "5", "--preprocess", "scale=1/255,mean=median"])
    assert "--preprocess" in line and "pixel-all" in line


def test_train_records_the_preprocessing_and_test_model_uses_it(small_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["resnet", "1", "--data", str(small_cifar), "--epochs", "1", "--limit", "100",
            "--out", str(out), "--no-plot", "--preprocess", "scale=1/255,mean=channel"]
    assert main_wrapper(cli.train_main, argv) == 0
    assert "per-channel mean" in capsys.readouterr().out
    from lasres.weights import load_checkpoint
    ckpt = load_checkpoint(out / "best.h5")
    assert Preprocess.from_dict(ckpt.arch["preprocess"]) == Preprocess(1 / 255, "channel")
    assert ckpt.pixel_mean.shape == (3, 1, 1)
    assert main_wrapper(cli.train_main, argv[:-1] + ["legacy", "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained with --preprocess scale=1/255,mean=channel" in err[0]
    assert main_wrapper(cli.test_main, ["resnet", "1", "--weights", str(out / "best.h5"),
                                        "--data", str(small_cifar), "--limit", "100"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"prep   \| .*per-channel mean.*from the checkpoint", text), text
    # an unregistered file without a record: the recipe's, said in the banner
    lasres.random.set_rng(np.random.RandomState(0))
    net = lasres.models.build("resnet", 1)
    from lasres.weights import save_pklz
    save_pklz(tmp_path / "plain.pklz", lasres.layers.get_all_param_values(net))
    assert main_wrapper(cli.test_main, ["resnet", "1", "--weights", str(tmp_path / "plain.pklz"),
                                        "--data", str(small_cifar), "--limit", "100"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"prep   \| no scaling, per-pixel mean subtracted over the training "
                     r"split.*from the recipe \(legacy\)", text), text


# --- the published ResNet-32 on the shared images, against the real Lasagne ----------
@pytest.mark.slow
def test_recipes_resnet32_gives_the_real_lasagnes_predictions(tmp_path, capsys):
    """``test_model.py resnet 5 --weights cifar_model_n5.npz`` with no other flag:
    the registry supplies shortcut=subsample and x/255 minus the mean of all
    50,000 training images; on the 10,000 shared test images that is the real
    Lasagne's 20.30% error, prediction for prediction."""
    from _datasets import cifar10_subset
    data = cifar10_subset(50000, 10000)  # the whole set (what test_export_zoo builds too)
    probs = tmp_path / "p.npy"
    assert main_wrapper(cli.test_main, ["resnet", "5", "--weights", str(N5), "--data", str(data),
                                        "--save-predictions", str(probs),
                                        "--batch-size", "500"]) == 0
    out = capsys.readouterr().out
    assert "registered: resnet32-recipes" in out
    assert re.search(r"prep   \| x / 255, per-pixel mean subtracted over all training "
                     r"images .*from the registry \(resnet32-recipes\)", out), out
    assert "test error 20.30%" in out
    got = np.load(probs)
    ref = np.load(RECIPES / "cifar_model_n5_lasagne_test_prob.npy")
    assert got.shape == ref.shape == (10000, 10)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.999
    assert np.abs(got - ref).max() <= 1e-4


def test_test_model_finds_the_recipes_files_in_weights(tmp_path):
    from lasres.cli import find_weights
    (tmp_path / "cifar_model_n9.npz").write_bytes(b"x")
    assert find_weights("resnet", 9, 1, search=(str(tmp_path),)) == \
        str(tmp_path / "cifar_model_n9.npz")
