"""The Lasagne Recipes' model code (``../shared/fixtures/recipes/code/``) as
lasres users run it: each file's imports and function definitions, read out
of the file with ``lasagne`` renamed to ``lasres`` and ``theano`` to
``pytensor`` (the files' Python-2-only statements and their script parts
are left out; imports of packages lasres does not need, such as skimage,
are skipped). ``input_shape`` replaces the builder's InputLayer shape (the
nets' convolutions and pools take smaller images; their dense layers are
sized by the input as Lasagne sizes them)."""
import re

from conftest import SHARED

CODE = SHARED / "fixtures" / "recipes" / "code"

#: name -> (file, builder, kwargs, small input shape or None, batch)
ZOO = {
    "vgg16": ("modelzoo/vgg16.py", "build_model", {}, (None, 3, 32, 32)),
    "vgg19": ("modelzoo/vgg19.py", "build_model", {}, (None, 3, 32, 32)),
    "vgg_cnn_s": ("modelzoo/vgg_cnn_s.py", "build_model", {}, (None, 3, 64, 64)),
    "caffe_reference": ("modelzoo/caffe_reference.py", "build_model", {}, (None, 3, 67, 67)),
    "googlenet": ("modelzoo/googlenet.py", "build_model", {}, (None, 3, 64, 64)),
    "inception_v3": ("modelzoo/inception_v3.py", "build_network", {}, (None, 3, 75, 75)),
    "resnet50": ("modelzoo/resnet50.py", "build_model", {}, None),
    "cifar10_nin": ("modelzoo/cifar10_nin.py", "build_model", {}, None),
    "c3d": ("modelzoo/c3d.py", "build_model", {}, (None, 3, 16, 32, 32)),
    "unet": ("modelzoo/Unet.py", "build_UNet", dict(input_dim=(64, 64), base_n_filters=4), None),
    "deep_residual_learning": ("papers/deep_residual_learning/Deep_Residual_Learning_CIFAR-10.py",
                               "build_cnn", dict(n=1), None),
}


def port(source):
    source = re.sub(r"\blasagne\b", "lasres", source)
    return re.sub(r"\btheano\b", "pytensor", source)


def _chunks(source):
    """Top-level statements (a line at column 0 starts one)."""
    chunk = []
    for line in source.splitlines():
        if line and not line[0].isspace() and not line.startswith(
                ("#", ")", "]", "}", "except", "else:", "finally:", "elif ")) \
                and chunk:
            yield "\n".join(chunk)
            chunk = []
        chunk.append(line)
    if chunk:
        yield "\n".join(chunk)


def load(path):
    """The imports and function definitions of a Recipes file, ported."""
    ns = {"__name__": "recipes_" + re.sub(r"\W", "_", str(path))}
    for chunk in _chunks(port((CODE / path).read_text())):
        head = chunk.lstrip()
        if not head.startswith(("import ", "from ", "def ", "try:")):
            continue
        try:
            code = compile(chunk, str(CODE / path), "exec")
        except SyntaxError:  # Python 2 only (print statements, backticks)
            continue
        try:
            exec(code, ns)
        except ImportError:
            if head.startswith("def "):
                raise
    return ns


def build(name, input_shape=None):
    """The net's output layer and layer dict of a Recipes builder."""
    path, builder, kwargs, small = ZOO[name]
    ns = load(path)
    shape = input_shape or small
    if shape is not None:
        real = ns["InputLayer"]

        def InputLayer(*args, **kw):  # noqa: N802 -- the builders' name
            kw.pop("shape", None)
            return real(shape, *args[1:], **kw)
        ns["InputLayer"] = InputLayer
    out = ns[builder](**kwargs)
    if isinstance(out, dict):  # the model zoo returns a dict of layers
        from lasres.layers import get_all_layers
        layers = list(out.values())
        every = set()
        for layer in layers:
            every.update(l for l in get_all_layers(layer) if l is not layer)
        tops = [l for l in layers if l not in every]
        return tops[0] if len(tops) == 1 else tops, out
    return out, {}
