"""Fuzzing the weight readers with mutated real files (issue 12).

A seeded mutation loop, bounded in time, mutates real files: the Lasagne
``normal_n1_k1.pklz`` of the shared fixtures (raw gzip bytes and the pickle
inside it), its ``.npz``, a lasres HDF5 checkpoint of the same weights and
the Keras 1.2.2 weight files of ``fixtures/keras`` (raw bytes, and
structural edits made with h5py: attributes, dataset shapes and types,
missing or extra members). Each mutant is loaded by
:func:`lasres.weights.load_weights` (Keras mutants mostly by
:func:`lasres.weights.keras_h5.read_keras_h5`) in a worker subprocess whose address
space is capped (``RLIMIT_AS`` = what it maps after its imports + 768 MiB;
the HDF5 readers fork their own, more tightly capped, reader processes).
Every load must end in a clean :class:`WeightFileError` or a correct load
(a list of numeric arrays within the byte cap); any other exception, a
MemoryError, a crash or a hang fails the test, and the mutant is kept.
The mutants kept in ``tests/fuzz_cases`` (e.g. the HDF5 file on which
libhdf5 loops forever) are the seed corpus: every run reads them first.

``LASRES_FUZZ_SECONDS`` sets the time (default 45 s, for CI);
``LASRES_FUZZ_SEED`` the seed (default 12); ``LASRES_FUZZ_REPORT`` a JSON
file for the figures (mutants, outcomes by kind, peak memory).
"""
import collections
import gzip
import io
import json
import os
import pathlib
import random
import re
import queue
import shutil
import threading
import time
import zipfile

import h5py
import numpy as np
import pytest

from _memlimit import start_limited
from lasres.weights import load_pklz, save_checkpoint

MiB = 1024 ** 2
HEADROOM = 768 * MiB
CAP = 64 * MiB  # max_bytes given to load_weights: 150 times the fixture's arrays
PER_FILE_TIMEOUT = 60

WORKER = r"""
import resource, traceback
from lasres.errors import WeightFileError
from lasres.weights.keras_h5 import read_keras_h5
cap = int(sys.argv[2])
_report(outcome='ready')
for line in sys.stdin:
    mode, path = line.rstrip('\n').split('\t', 1)
    out = {}
    try:
        if mode == 'keras':
            vals = [v for layer in read_keras_h5(path, max_bytes=cap) for v in layer.values]
            ok = all(isinstance(v, np.ndarray) and v.dtype.kind in 'biufc' for v in vals)
        else:
            vals = lasres.weights.load_weights(path, max_bytes=cap)
            ok = isinstance(vals, list) and len(vals) > 0 and all(
                isinstance(v, np.ndarray) and v.dtype.kind in 'biufc' for v in vals)
        out = {'outcome': 'loaded' if ok else 'bad-load',
               'nbytes': int(sum(getattr(v, 'nbytes', 0) for v in vals))}
    except WeightFileError as e:
        out = {'outcome': 'WeightFileError', 'msg': str(e)[:200]}
    except MemoryError:
        out = {'outcome': 'MemoryError', 'tb': traceback.format_exc()[-2000:]}
    except BaseException as e:
        out = {'outcome': 'other', 'type': type(e).__name__, 'tb': traceback.format_exc()[-2000:]}
    # the readers run in forked children: their peak resident memory counts too
    out['children_rss_peak'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    _report(**out)
"""


# --------------------------------------------------------------------------
# mutations
# --------------------------------------------------------------------------
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2 ** 40,
               2 ** 62, 2 ** 64 - 1]


def mutate_bytes(rng, b):
    b = bytearray(b)
    kind = rng.choice(["bitflip", "bitflip", "truncate", "overwrite", "integer", "delete",
                       "duplicate"])
    if not b:
        return bytes(b), kind
    if kind == "bitflip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[:rng.randrange(len(b))]
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        n = rng.randint(1, 64)
        b[i:i + n] = bytes(rng.randrange(256) for _ in range(n))
    elif kind == "integer":
        v = rng.choice(INTERESTING)
        size = rng.choice([1, 2, 4, 8])
        i = rng.randrange(len(b))
        b[i:i + size] = (v % 256 ** size).to_bytes(size, rng.choice(["little", "big"]))
    elif kind == "delete":
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 256)]
    else:
        i = rng.randrange(len(b))
        n = rng.randint(1, 4096)
        b[i:i] = b[i:i + n]
    return bytes(b), kind


def mutate_pickle_text(rng, p):
    """Protocol-0 specific: change a number (shapes, lengths) or a global name."""
    kind = rng.choice(["shape-int", "shape-int", "global"])
    if kind == "shape-int":
        hits = [m for m in re.finditer(rb"\nI(\d+)\n", p)]
        if hits:
            m = rng.choice(hits)
            new = str(rng.choice([0, 1, 3, 10 ** 5, 10 ** 9, 2 ** 31, 2 ** 63, -1])).encode()
            return p[:m.start(1)] + new + p[m.end(1):], kind
    names = [b"cnumpy\nndarray\n", b"cnumpy\ndtype\n", b"cnumpy.core.multiarray\n_reconstruct\n",
             b"c_codecs\nencode\n", b"c__builtin__\nbytearray\n", b"cnumpy\nzeros\n",
             b"cnumpy.core.multiarray\nscalar\n", b"cos\nsystem\n"]
    a, c = rng.choice(names), rng.choice(names)
    return p.replace(a, c, 1), "global"


def mutate_pklz(rng, raw, pickled):
    if rng.random() < 0.3:
        b, kind = mutate_bytes(rng, raw)
        return b, "pklz-raw-" + kind
    if rng.random() < 0.4:
        p, kind = mutate_pickle_text(rng, pickled)
    else:
        p, kind = mutate_bytes(rng, pickled)
    return gzip.compress(p, compresslevel=1, mtime=0), "pklz-pickle-" + kind


def mutate_npz(rng, raw):
    if rng.random() < 0.5:
        b, kind = mutate_bytes(rng, raw)
        return b, "npz-raw-" + kind
    # rewrite one member's .npy header with another shape / dtype
    from numpy.lib import format as npformat
    src = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    names = src.namelist()
    victim = rng.choice(names)
    with zipfile.ZipFile(out, "w") as dst:
        for name in names:
            data = src.read(name)
            if name == victim:
                f = io.BytesIO(data)
                version = npformat.read_magic(f)
                read = (npformat.read_array_header_1_0 if version == (1, 0)
                        else npformat.read_array_header_2_0)
                read(f)
                body = data[f.tell():]
                shape = tuple(rng.choice([0, 1, 7, 10 ** 5, 10 ** 9, 2 ** 40]) for _ in
                              range(rng.randint(0, 4)))
                dtype = rng.choice(["<f4", "<f8", "|u1", "<c16", "|V8", "<U10", "|b1"])
                h = io.BytesIO()
                try:
                    npformat.write_array_header_1_0(h, {"descr": dtype, "fortran_order": False,
                                                        "shape": shape})
                except ValueError:
                    npformat.write_array_header_2_0(h, {"descr": dtype, "fortran_order": False,
                                                        "shape": shape})
                data = h.getvalue() + body
            dst.writestr(name, data)
    return out.getvalue(), "npz-header"


ATTR_VALUES = [-5, -1, 0, 10 ** 9, 2 ** 62, 3.5, "x", "", "[1, 2]", "{", '{"a": 1}', "null",
               '"s"', np.arange(1000), np.zeros((2, 2)), b"\xff\xfe", True]


def _replace_dataset(rng, grp, key):
    """Replace dataset ``grp[key]`` by one of another form (keeping its attributes);
    returns the form's name."""
    old_attrs = dict(grp[key].attrs)
    del grp[key]
    form = rng.choice(["huge-chunked", "huge-chunked", "shape", "string", "compound",
                       "group", "scalar", "vlen", "2d"])
    if form == "huge-chunked":
        shape = tuple(rng.choice([200000, 10 ** 6, 2 ** 31]) for _ in range(rng.randint(1, 3)))
        ds = grp.create_dataset(key, shape=shape, dtype="f4", chunks=(1,) * len(shape))
    elif form == "shape":
        ds = grp.create_dataset(key, data=np.zeros(tuple(rng.randint(0, 9) for _ in
                                                           range(rng.randint(0, 4)))))
    elif form == "string":
        ds = grp.create_dataset(key, data=np.array([b"abc", b"de"]))
    elif form == "compound":
        ds = grp.create_dataset(key, data=np.zeros(3, dtype=[("a", "f4"), ("b", "i2")]))
    elif form == "group":
        grp.create_group(key)
        return form
    elif form == "scalar":
        ds = grp.create_dataset(key, data=np.float32(1.5))
    elif form == "vlen":
        dt = h5py.vlen_dtype(np.dtype("f4"))
        ds = grp.create_dataset(key, shape=(2,), dtype=dt)
    else:
        ds = grp.create_dataset(key, data=np.zeros((3, 4)))
    for k, v in old_attrs.items():
        ds.attrs[k] = v
    return form


def _h5_edit(rng, f):
    """One structural edit of an open checkpoint; returns its name."""
    kind = rng.choice(["attr", "attr", "dataset", "dataset", "delete", "pixel_mean", "history"])
    if kind == "attr":
        target = rng.choice(["/", "/", "params", "optimizer"])
        name = rng.choice(["count", "epoch", "lasres_format_version", "arch_json",
                           "extra_json", "names_json", "created", "lasres_format"])
        f[target].attrs[name] = rng.choice(ATTR_VALUES)
        return f"h5-attr-{name}"
    if kind in ("dataset", "pixel_mean", "history"):
        if kind == "dataset":
            grp = f[rng.choice(["params", "optimizer"])]
            key = rng.choice(sorted(grp.keys()))
        elif kind == "pixel_mean":
            grp, key = f, "pixel_mean"
        else:
            grp = f["history"]
            key = rng.choice(sorted(grp.keys()))
        return f"h5-{kind}-{_replace_dataset(rng, grp, key)}"
    victim = rng.choice(["params", "optimizer", "pixel_mean", "history", "params/00000",
                         "history/00000"])
    if victim in f:
        del f[victim]
    return f"h5-delete-{victim.split('/')[0]}"


def _keras_edit(rng, f):
    """One structural edit of an open Keras 1.x weight file; returns its name."""
    layers = [n for n in f if isinstance(f[n], h5py.Group) and len(f[n].attrs["weight_names"])]
    layer = f[rng.choice(layers)]
    kind = rng.choice(["attr", "attr", "dataset", "dataset", "delete"])
    if kind == "attr":
        target, name = rng.choice([(f, "layer_names"), (layer, "weight_names")])
        value = rng.choice(ATTR_VALUES + [np.array([b"x" * 100] * 500),
                                          np.array([b"missing", b"names"])])
        target.attrs[name] = value
        return f"keras-attr-{name}"
    if kind == "dataset":
        return "keras-dataset-" + _replace_dataset(rng, layer, rng.choice(sorted(layer.keys())))
    victim = rng.choice([layer.name, layer.name + "/" + rng.choice(sorted(layer.keys()))])
    del f[victim]
    return "keras-delete-" + ("layer" if "/" not in victim.strip("/") else "dataset")


def mutate_h5(rng, raw, path, edit=None, prefix="h5"):
    """A mutant of an HDF5 file: raw byte mutations, or structural edits made
    with h5py by ``edit`` (default: checkpoint edits), then perhaps raw ones."""
    edit = edit or _h5_edit
    if rng.random() < 0.4:
        b, kind = mutate_bytes(rng, raw)
        return b, f"{prefix}-raw-" + kind
    with open(path, "wb") as fh:
        fh.write(raw)
    with h5py.File(path, "r+") as f:
        kind = edit(rng, f)
        if rng.random() < 0.3:
            try:
                kind += "+" + edit(rng, f)
            except (KeyError, ValueError, TypeError, IndexError, OSError):  # target gone
                pass
    with open(path, "rb") as fh:
        b = fh.read()
    if rng.random() < 0.2:
        b, k2 = mutate_bytes(rng, b)
        kind += "+raw-" + k2
    return b, kind


# --------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------
class Worker:
    def __init__(self):
        self.proc = start_limited(WORKER, HEADROOM, args=(CAP,))
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.last = self._read(120)
        assert self.last and self.last.get("outcome") == "ready", self.last

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read(self, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.time(), 0.001))
            except queue.Empty:
                return {"outcome": "hang"}
            if line is None:
                return {"outcome": "crash", "rc": self.proc.wait()}
            if line.startswith("@@"):
                return json.loads(line[2:])

    def load(self, path, mode="weights"):
        try:
            self.proc.stdin.write(f"{mode}\t{path}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "crash", "rc": self.proc.wait()}
        rep = self._read(PER_FILE_TIMEOUT)
        if rep["outcome"] not in ("crash", "hang"):
            self.last = rep
        return rep

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


#: Mutants kept because they once broke a reader: the seed corpus, loaded first in every run.
CASES = sorted((pathlib.Path(__file__).resolve().parent / "fuzz_cases").iterdir())


@pytest.fixture(scope="module")
def sources(tmp_path_factory, legacy_dir, shared_dir):
    d = tmp_path_factory.mktemp("fuzz-src")
    pklz = (legacy_dir / "normal_n1_k1.pklz").read_bytes()
    npz = (legacy_dir / "normal_n1_k1.npz").read_bytes()
    values = load_pklz(legacy_dir / "normal_n1_k1.pklz")
    h5 = d / "last.h5"
    save_checkpoint(h5, values, arch={"type": "normal", "depth": 1, "width": 1},
                    param_names=[f"p{i}" for i in range(len(values))],
                    pixel_mean=np.zeros((3, 32, 32), np.float32), epoch=3,
                    optimizer_state=[np.zeros_like(v) for v in values[:5]],
                    history={"train_loss": [2.1, 1.9, 1.7], "val_acc": [0.2, 0.3, 0.4]},
                    extra={"completed": True, "seed": 1})
    keras = shared_dir / "fixtures" / "keras"
    return {"pklz": pklz, "pickle": gzip.decompress(pklz), "npz": npz, "h5": h5.read_bytes(),
            "keras": (keras / "ror_wrn_N1_k1.h5").read_bytes(),
            "keras-big": (keras / "ror_N1.h5").read_bytes()}


def test_fuzz_weight_readers(sources, tmp_path):
    seconds = float(os.environ.get("LASRES_FUZZ_SECONDS", "45"))
    seed = int(os.environ.get("LASRES_FUZZ_SEED", "12"))
    rng = random.Random(seed)
    keep = tmp_path / "failures"
    keep.mkdir()
    outcomes = collections.Counter()
    by_kind = collections.defaultdict(collections.Counter)
    failures = []
    worker = Worker()
    base = dict(worker.last)
    peak = {"rss": 0, "vm": 0, "children_rss": 0}
    stopped = collections.Counter()
    n = 0

    def run(path, kind, src, mode="weights"):
        nonlocal worker
        rep = worker.load(path, mode)
        out = rep["outcome"]
        outcomes[out] += 1
        for what in ("did not finish reading", "crashed the reader", "needed more than"):
            if what in rep.get("msg", ""):
                stopped[what] += 1  # the reader process stopped a hang, a crash, a memory hog
        by_kind[kind.split("+")[0]][out] += 1
        if "rss_peak" in rep:
            peak["rss"] = max(peak["rss"], rep["rss_peak"])
            peak["vm"] = max(peak["vm"], rep["vm_peak"])
            peak["children_rss"] = max(peak["children_rss"], rep["children_rss_peak"])
        if out not in ("WeightFileError", "loaded") or (out == "loaded" and rep["nbytes"] > CAP):
            kept = keep / f"{n:05d}-{kind.replace('/', '_')}.{src}"
            shutil.copy(path, kept)
            failures.append((str(kept), kind, rep))
            if out in ("crash", "hang"):
                worker.close()
                worker = Worker()

    try:
        t0 = time.time()
        for case in CASES:  # the seed corpus: each kept case is read by both readers
            run(str(case), "seed-" + case.stem, "seed")
            run(str(case), "seed-keras-" + case.stem, "seed", "keras")
        seed_seconds = time.time() - t0
        t0 = time.time()  # the mutation loop gets its full time
        while time.time() - t0 < seconds:
            n += 1
            src = rng.choice(["pklz", "pklz", "npz", "h5", "h5", "h5", "keras", "keras"])
            path = str(tmp_path / f"mutant.{src}")
            mode = "weights"
            if src == "pklz":
                data, kind = mutate_pklz(rng, sources["pklz"], sources["pickle"])
            elif src == "npz":
                data, kind = mutate_npz(rng, sources["npz"])
            elif src == "h5":
                data, kind = mutate_h5(rng, sources["h5"], path)
            else:
                raw = sources["keras-big" if rng.random() < 0.1 else "keras"]
                data, kind = mutate_h5(rng, raw, path, _keras_edit, "keras")
                mode = rng.choice(["keras", "keras", "weights"])  # the reader, or detection
            with open(path, "wb") as fh:
                fh.write(data)
            run(path, kind, src, mode)
    finally:
        worker.close()
    figures = {
        "seconds": round(time.time() - t0, 1), "seed": seed, "mutants": n,
        "outcomes": dict(outcomes), "stopped_by_the_reader_process": dict(stopped),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "byte_cap": CAP, "address_space_limit": base["limit"],
        "vm_after_imports": base["vm_base"], "rss_after_imports": base["rss_peak"],
        "seed_cases": [c.name for c in CASES], "seed_seconds": round(seed_seconds, 1),
        "peak_rss": peak["rss"], "peak_vm": peak["vm"],
        "peak_rss_over_start_MiB": round((peak["rss"] - base["rss_peak"]) / MiB, 1),
        "peak_rss_of_reader_children_MiB": round(peak["children_rss"] / MiB, 1),
        "failures": failures[:20],
    }
    print("\nfuzz figures: " + json.dumps(figures, indent=1))
    if os.environ.get("LASRES_FUZZ_REPORT"):
        with open(os.environ["LASRES_FUZZ_REPORT"], "w") as fh:
            json.dump(figures, fh, indent=1)
    assert n >= 20, figures  # the loop did run
    assert outcomes["WeightFileError"] > 0, figures
    assert not failures, json.dumps(figures, indent=1)[:6000]
