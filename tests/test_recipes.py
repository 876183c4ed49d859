"""lasres.recipes: the legacy and Keras-seed recipes, each written once, and
every default of the trainers, fit, prepare_dataset and the command lines
read from them."""
import dataclasses
import inspect

import pytest

from lasres.recipes import KERAS_SEED, LEGACY, LEGACY_SCHEDULE, RECIPES, Recipe, recipe_for_layout


def test_the_legacy_recipe_is_the_lasagne_seeds():
    assert (LEGACY.batch_size, LEGACY.epochs, LEGACY.lr_schedule, LEGACY.l2, LEGACY.optimizer,
            LEGACY.momentum, LEGACY.bn_update_averages, LEGACY.valid_fraction,
            LEGACY.preprocess, LEGACY.augment) == \
        (64, 200, "legacy", 1e-4, "nesterov", 0.9, True, 0.1, "legacy", None)
    assert LEGACY_SCHEDULE == ((0, 0.01), (10, 0.1), (80, 0.01), (120, 0.001))
    with pytest.raises(dataclasses.FrozenInstanceError):
        LEGACY.l2 = 0.0


def test_the_keras_seed_recipe_and_what_it_overrides():
    assert RECIPES == {"legacy": LEGACY, "keras-seed": KERAS_SEED}
    assert KERAS_SEED.overrides() == {"optimizer": "adam", "lr_schedule": "0.001", "l2": 0.0,
                                      "augment": "keras-seed", "epochs": 300}
    assert LEGACY.overrides() == {}
    assert KERAS_SEED.batch_size == 64 and KERAS_SEED.preprocess == "keras-seed"
    from lasres.cli import RECIPES as CLI_RECIPES
    assert CLI_RECIPES == {name: r.overrides() for name, r in RECIPES.items()}
    assert recipe_for_layout({"layout": "keras"}) is KERAS_SEED
    assert recipe_for_layout({}) is LEGACY and recipe_for_layout(None) is LEGACY


def test_presets_are_the_data_modules():
    from lasres.data.preprocessing import PRESETS
    for r in RECIPES.values():
        assert r.preprocess in PRESETS


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_every_default_reads_the_legacy_recipe():
    """The library's defaults are the recipe's (so one line changes them)."""
    from lasres.cli import run_comparison
    from lasres.data import legacy_split, prepare_cifar10, prepare_dataset
    from lasres.train.jax_trainer import JaxTrainer
    from lasres.train.recipe import legacy_objective
    from lasres.train import Trainer, fit, optimizer_updates
    for fn in (Trainer.__init__, JaxTrainer.__init__):
        d = _defaults(fn)
        assert (d["l2"], d["momentum"], d["optimizer"], d["learning_rate"]) == \
            (LEGACY.l2, LEGACY.momentum, LEGACY.optimizer, LEGACY_SCHEDULE[0][1])
    assert _defaults(optimizer_updates)["momentum"] == LEGACY.momentum
    assert _defaults(legacy_objective) == {"l2": LEGACY.l2,
                                           "bn_update_averages": LEGACY.bn_update_averages}
    assert _defaults(fit)["batch_size"] == LEGACY.batch_size
    assert _defaults(fit)["schedule"] is LEGACY_SCHEDULE
    for fn in (prepare_dataset, prepare_cifar10):
        assert _defaults(fn)["valid_fraction"] == LEGACY.valid_fraction
        assert _defaults(fn)["preprocessing"] == LEGACY.preprocess
    assert _defaults(legacy_split)["valid_fraction"] == LEGACY.valid_fraction
    d = _defaults(run_comparison)
    assert (d["batch_size"], d["l2"], d["momentum"]) == \
        (LEGACY.batch_size, LEGACY.l2, LEGACY.momentum)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_command_line_defaults_are_the_recipes(name):
    from lasres.cli import train_parser
    from lasres.cli import compare_parser
    recipe = RECIPES[name]
    p = train_parser()
    p.set_defaults(**recipe.overrides())
    args = p.parse_args(["normal"])
    for key, value in recipe.flag_defaults().items():
        assert getattr(args, key) == value, key
    c = compare_parser().parse_args(["resnet:1"])
    for key in ("lr_schedule", "batch_size", "momentum", "l2", "valid_fraction", "augment"):
        assert getattr(c, key) == getattr(LEGACY, key), key


def test_bn_update_averages_off_leaves_the_running_averages():
    import numpy as np
    import pytensor
    from lasres import layers as L
    from lasres.nonlinearities import softmax
    from lasres.train.recipe import legacy_objective
    net = L.DenseLayer(L.BatchNormLayer(L.InputLayer((None, 4))), 3, nonlinearity=softmax)
    X = np.random.RandomState(0).randn(8, 4).astype("float32") + 3
    y = np.zeros(8, "int32")
    bn = L.get_all_layers(net)[1]
    for update, changed in ((False, False), (True, True)):
        bn.mean.set_value(np.zeros(4, "float32"))
        obj = legacy_objective(net, bn_update_averages=update)
        pytensor.function([obj.inputs, obj.targets], obj.loss)(X, y)
        assert np.any(bn.mean.get_value() != 0) == changed


def test_a_recipe_is_a_value():
    r = Recipe("mine", batch_size=128)
    assert r == dataclasses.replace(LEGACY, name="mine", batch_size=128)
    assert r.overrides() == {}  # batch size is not one of train_nn.py's recipe flags
    assert hash(r) == hash(Recipe("mine", batch_size=128))
