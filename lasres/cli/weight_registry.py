"""What ``test_model.py`` (and ``train_nn.py``) learn from the weights
registry and the checkpoints: which preprocessing a weight file needs, where
that came from, and whether the architecture asked for is the file's."""
import sys
from typing import NamedTuple, Optional

from ..data.preprocessing import parse_preprocess, Preprocess, PRESETS
from ..errors import LasresError
from ..models import get_spec
from ..recipes import recipe_for_layout
from ..weights.registry import entries, identify, named_like, SHARED_DATA
from .options import parse_options
from .weight_search import find_weights

__all__ = ["PreprocessChoice", "registered_entry", "check_registered_arch", "choose_preprocess",
           "format_weight_list", "cli_preprocess", "apply_registered_options",
           "training_preprocess", "check_resume_preprocess"]


class PreprocessChoice(NamedTuple):
    """A preprocessing and where it came from (for the banner)."""

    preprocess: object  # lasres.data.preprocessing.Preprocess
    source: str  # 'registry (NAME)', 'checkpoint', '--preprocess', 'recipe (...)'


def cli_preprocess(text: Optional[str]):
    """``--preprocess TEXT`` as a :class:`~lasres.data.preprocessing.Preprocess`
    (None when not given); a bad text is one :class:`LasresError` line."""
    if text is None:
        return None
    return parse_preprocess(text)


def registered_entry(path, warn=True):
    """The :class:`lasres.weights.registry.WeightEntry` of the file at
    ``path`` (recognised by content), or None; a file named as a registered
    one whose content is not gets a warning (it is then read as an
    unregistered file)."""

    entry = identify(path)
    like = named_like(path) if entry is None and warn else None
    if like is not None and (like.sha256 or like.git_blob_sha1):
        print(f"warning: {path} is named as the registered {like.name} but does not hold it "
              f"(expected {like.checksum}): read as an unregistered file", file=sys.stderr)
    return entry


def apply_registered_options(args, log=print):
    """Before the network is built: when the weights ``test_model.py`` will
    read are a registered file for the ``type depth width`` asked for, add
    the entry's architecture options (e.g. ``shortcut=subsample`` for the
    Lasagne Recipes' ResNets) that were not given, with a note."""
    try:
        spec = get_spec(args.type)
        depth = spec.default_depth if args.depth is None else args.depth
        width = spec.default_width if args.width is None else args.width
        path = find_weights(spec.name, depth, width, args.weights)
    except LasresError:
        return  # the regular path reports it
    entry = registered_entry(path, warn=False)
    if entry is None or (spec.name, depth, width) != (entry.arch["type"], entry.arch["depth"],
                                                      entry.arch.get("width", 1)):
        return
    given = parse_options(args.option)
    extra = [f"{k}={v}" for k, v in (entry.arch.get("options") or {}).items() if k not in given]
    if extra:
        args.option = list(args.option) + extra
        log(f"note: {path} is the registered {entry.name}: building it with "
            f"{', '.join(extra)}")


def check_registered_arch(entry, type: str, depth: int, width: int, options: dict,
                          path) -> None:
    """Refuse (one line naming the right arguments) a registered file asked
    for with another architecture than its own."""
    if entry is None or entry.matches_arch(type, depth, width, options):
        return
    ours = f"{type} {depth}" + (f" {width}" if width != 1 else "") + "".join(
        f" --option {k}={v}" for k, v in (options or {}).items())
    a = entry.arch
    right = f"{a['type']} {a['depth']}" + (f" {a['width']}" if a.get("width", 1) != 1 else "")
    raise LasresError(f"{path} is the registered {entry.name} ({entry.title}): its network is "
                      f"'{entry.args}', not '{ours}' (run test_model.py {right} --weights "
                      f"{path})")


def choose_preprocess(given, entry, ckpt, options: Optional[dict]) -> PreprocessChoice:
    """The preprocessing of a weight file: ``--preprocess`` (``given``) if
    given; else the registry entry's; else the one the lasres checkpoint
    recorded; else the recipe's (the RoR seed's ``x / 255`` for
    ``layout=keras``, the Lasagne seed's otherwise: today's behaviour)."""
    if given is not None:
        return PreprocessChoice(given, "--preprocess")
    if entry is not None:
        return PreprocessChoice(entry.preprocess, f"registry ({entry.name})")
    recorded = None
    if ckpt is not None:  # train_nn records it with the architecture
        for record in (ckpt.arch, ckpt.extra):
            if isinstance(record, dict) and record.get("preprocess") is not None:
                recorded = record["preprocess"]
                break
    if recorded is not None:
        try:
            return PreprocessChoice(Preprocess.from_dict(recorded), "checkpoint")
        except LasresError as exc:
            raise LasresError(f"the checkpoint's preprocessing is unreadable ({exc})") from None
    name = recipe_for_layout(options).preprocess
    return PreprocessChoice(PRESETS[name], f"recipe ({name})")


def training_preprocess(text: Optional[str], options: Optional[dict]):
    """``train_nn.py``'s preprocessing: ``--preprocess`` if given, else the
    recipe's (``keras-seed`` for ``layout=keras``, ``legacy`` otherwise)."""
    given = cli_preprocess(text)
    return given if given is not None else choose_preprocess(None, None, None, options)[0]


def check_resume_preprocess(ckpt, prep, path) -> None:
    """Refuse to resume a run recorded with another preprocessing than ``prep``
    (its run folder's mean is that preprocessing's); checkpoints that record
    none are not compared."""
    recorded = (ckpt.arch or {}).get("preprocess") if isinstance(ckpt.arch, dict) else None
    if recorded is None:
        return
    try:
        theirs = Preprocess.from_dict(recorded)
    except LasresError as exc:
        raise LasresError(f"{path}: the recorded preprocessing is unreadable ({exc})") from None
    if theirs != prep:
        raise LasresError(f"--resume: {path} was trained with --preprocess {theirs.spec}, not "
                          f"{prep.spec}: give the same")


def format_weight_list() -> str:
    """The registered files, one line each, for ``test_model.py --list-weights``."""
    lines = [f"{'name':24s} {'test_model.py arguments':36s} {'CIFAR-10 error':23s} "
             f"{'':13s} preprocessing"]
    for e in entries():
        lines.append(e.summary())
        lines.append(f"{'':24s} file {e.file_name}, {e.checksum}")
    lines.append(f"(shared JPEG data: {SHARED_DATA}; docs/RESULTS.md says what the JPEG "
                 f"copies cost a published net)")
    return "\n".join(lines)
