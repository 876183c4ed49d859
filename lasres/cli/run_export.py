"""The export scripts: ``scripts/export_onnx.py`` (:func:`export_main`) and
``scripts/export_torch.py`` (:func:`export_torch_main`), over
:func:`lasres.export.to_onnx` and :func:`lasres.export.to_torch`."""
import argparse
import os

from .. import layers as L
from ..errors import LasresError
from ..export.onnx_graph import OPSET, _onnx, to_onnx
from ..export.torch_codegen import _torch, to_torch
from .network import add_model_arguments, build_network
from .weight_search import find_weights, load_network_weights, pixel_mean_for

__all__ = ["export_parser", "export_main", "export_torch_parser", "export_torch_main"]

# --- scripts/export_onnx.py ---------------------------------------------------------
def export_parser() -> argparse.ArgumentParser:
    """The argument parser of ``export_onnx.py``."""
    p = argparse.ArgumentParser(
        prog="export_onnx.py", description="Export a network with its weights to ONNX (the "
        "deterministic inference graph), checked with onnx.checker.",
        epilog="--batch-size fixes the model's batch size (default: a dynamic batch axis); "
        "--data is where a pixel_mean.npy is looked for; --backend, --limit and --seed play "
        "no part in an export.")
    add_model_arguments(p)
    p.add_argument("--weights", default=None,
                   help="weight file (.pklz, .npz or lasres .h5); default: the seed's file in "
                        "weights/ or runs/TYPE_nN_kK/best.h5")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--pixel-mean", default=None,
                   help="pixel_mean.npy to subtract inside the model (default: the one in the "
                        "checkpoint, next to the weights or in --data, as test_model.py finds it)")
    p.add_argument("--no-pixel-mean", action="store_true",
                   help="export the bare network (inputs already mean-subtracted)")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold batch normalisations into the preceding convolutions")
    return p


def export_main(argv=None):
    """``export_onnx.py TYPE DEPTH WIDTH --weights FILE --out model.onnx``;
    returns an exit status."""
    args = export_parser().parse_args(argv)
    if args.pixel_mean and args.no_pixel_mean:
        raise LasresError("give --pixel-mean or --no-pixel-mean, not both")
    _onnx()  # a clear error before any work when onnx is missing
    spec, depth, width, options, network = model = build_network(args)
    path = find_weights(spec.name, depth, width, args.weights)
    ckpt = load_network_weights(network, path, model.arch(args.dataset))
    mean, mean_from = (None, None) if args.no_pixel_mean else pixel_mean_for(args, path, ckpt)
    input_shape = None
    if args.batch_size:
        input_shape = (args.batch_size,) + tuple(_input_shape(network)[1:])
    model = to_onnx(network, args.out, input_shape=input_shape, pixel_mean=mean,
                    fold_bn=args.fold_bn)
    shape = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    print(f"export | {spec.name} {depth} {width}: {spec.title}; weights {path}")
    if mean is not None:
        print(f"input  | raw images {tuple(shape)} float32 (pixel values 0..255); the model "
              f"subtracts the pixel mean from {mean_from}")
    else:
        print(f"input  | mean-subtracted images {tuple(shape)} float32"
              + ("" if args.no_pixel_mean else " (no pixel mean found: give --pixel-mean to "
                 "embed one)"))
    size = os.path.getsize(args.out)
    print(f"wrote  | {args.out}: {size / 1e6:.1f} MB, {len(model.graph.node)} nodes, opset "
          f"{OPSET}{', batch norms folded' if args.fold_bn else ''}; output 'output' = class "
          f"probabilities")
    return 0


def _input_shape(network):
    return next(layer for layer in L.get_all_layers(network)
                if isinstance(layer, L.InputLayer)).shape


# --- scripts/export_torch.py ---------------------------------------------------------------
def export_torch_parser() -> argparse.ArgumentParser:
    """The argument parser of ``export_torch.py``."""
    p = argparse.ArgumentParser(
        prog="export_torch.py", description="Export a network with its weights to PyTorch: "
        "DIR/model.py (a self-contained torch.nn.Module with Lasagne's semantics, in training "
        "too) and DIR/weights.pt (its state_dict), checked by loading them back.",
        epilog="--backend, --limit, --batch-size and --seed play no part in an export.")
    add_model_arguments(p)
    p.add_argument("--weights", default=None,
                   help="weight file (.pklz, .npz or lasres .h5); default: the seed's file in "
                        "weights/ or runs/TYPE_nN_kK/best.h5")
    p.add_argument("--out", required=True, help="the folder to write (model.py, weights.pt)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p


def export_torch_main(argv=None):
    """``export_torch.py TYPE DEPTH WIDTH --weights FILE --out DIR [--force]``;
    returns an exit status."""
    args = export_torch_parser().parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise LasresError(f"{args.out} exists (give --force to replace it)")
    _torch()  # a clear error before any work when torch is missing
    spec, depth, width, options, network = model = build_network(args)
    path = find_weights(spec.name, depth, width, args.weights)
    load_network_weights(network, path, model.arch(args.dataset))
    module = to_torch(network, args.out, force=args.force)
    n = sum(p.numel() for p in module.parameters())
    print(f"export | {spec.name} {depth} {width}: {spec.title}; weights {path}")
    print(f"wrote  | {args.out}/model.py (class Net, {len(list(module.children()))} layers), "
          f"{args.out}/weights.pt ({n:,} parameters); input: mean-subtracted images")
    return 0
