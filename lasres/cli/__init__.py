"""Command-line front ends: ``scripts/train_nn.py``, ``scripts/test_model.py``,
``scripts/compare.py``, ``scripts/export_onnx.py`` and ``scripts/export_torch.py``
are thin wrappers over :func:`train_main`, :func:`test_main`,
:func:`compare_main`, :func:`export_main` and :func:`export_torch_main`.

train and test keep the Lasagne seed's positional interface ``[type] [depth] [width]``
(defaults ``normal 18 1``; depth is the per-stage block multiplier n). Every
user mistake ends with a one-line ``error: ...`` and exit status 2, never a
traceback.

One module per job:

``runner``
    :func:`main_wrapper` (errors to one line, the scripts' start time).
``options``
    ``--option KEY=VALUE``, the recipes, the preprocessing, the backend and
    the numeric ranges.
``network``
    The positional arguments, the network they build, the banner.
``weight_search``
    Where the weights and the pixel mean are found, and loading them.
``weight_registry``
    What the weights registry and the checkpoints say about a weight file:
    its preprocessing (and where that came from), its architecture.
``factory``
    The trainer of a run (:class:`~lasres.train.Trainer` or
    :class:`~lasres.train.jax_trainer.JaxTrainer`).
``files``
    Run folders and saved predictions.
``run_setup``
    The set-up ``train_nn.py`` and ``compare.py`` share: arguments ->
    recipe + model -> data -> trainer.
``processes``
    The flags of a multi-process run and the supervisor of its processes.
``run_train``, ``run_test``, ``run_compare``, ``run_export``
    The mains of the scripts (``run_export``: ``export_onnx.py`` and
    ``export_torch.py``).
``entry_points``
    The console commands ``pip install`` makes (``lasres-train``,
    ``lasres-test``, ``lasres-compare``, ``lasres-export``,
    ``lasres-export-torch``), each what its script runs.
"""
from .factory import make_trainer
from .files import check_output_folder, check_output_path, make_output_folder, save_predictions
from .network import (ModelChoice, add_dataset_argument, add_model_arguments, banner,
                      build_network, depth_hint)
from .options import (PREPROCESSING_TEXT, RECIPES, check_backend, check_common_numbers,
                      parse_options, preprocessing_for)
from .run_compare import compare_main, compare_parser, run_comparison
from .run_export import export_main, export_parser, export_torch_main, export_torch_parser
from .run_test import test_main, test_parser
from .run_train import train_main, train_parser
from .runner import main_wrapper, start_time
from .weight_search import (REPO_WEIGHTS, auto_layout, checkpoint_layout, find_weights,
                            load_network_weights, pixel_mean_for)

__all__ = ["train_main", "test_main", "compare_main", "compare_parser", "run_comparison",
           "export_main", "export_parser", "export_torch_main", "export_torch_parser", "banner",
           "depth_hint",
           "find_weights", "load_network_weights", "main_wrapper", "RECIPES",
           "preprocessing_for", "save_predictions", "check_output_folder", "make_output_folder",
           "make_trainer", "train_parser", "test_parser", "PREPROCESSING_TEXT", "REPO_WEIGHTS",
           "parse_options", "check_common_numbers", "check_backend", "check_output_path",
           "add_model_arguments", "add_dataset_argument", "build_network", "ModelChoice",
           "pixel_mean_for",
           "auto_layout", "checkpoint_layout", "start_time"]
