"""Export a lasres (Lasagne) network: to ONNX (:func:`to_onnx`, the
deterministic inference graph) and to PyTorch (:func:`to_torch`, a readable
``torch.nn.Module`` that keeps Lasagne's semantics in training too).

Modules: :mod:`.onnx_graph` (layer converters, the ONNX model),
:mod:`.pytensor_graph` (walking a layer's PyTensor graph op by op, for the
layers without a dedicated converter), :mod:`.pytensor_onnx` (those ops as
ONNX nodes), :mod:`.torch_codegen` (the PyTorch module's source) and
:mod:`.cli` (``scripts/export_onnx.py``, ``scripts/export_torch.py``).
Neither onnx nor torch is imported until an export needs it.
"""
from ..errors import ExportError
from .onnx_graph import OPSET, build_model, to_onnx
from .torch_codegen import regularizable_parameters, to_torch, torch_source

__all__ = ["to_onnx", "build_model", "OPSET", "to_torch", "torch_source",
           "regularizable_parameters", "ExportError"]
