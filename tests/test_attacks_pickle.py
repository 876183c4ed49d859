"""Issue 29, items 3, 4 and 15: crafted pickles against the restricted unpickler.

A pickle cannot call anything but the allow-listed globals, and before this
round it could still take unbounded memory or time *within* them:

* ``str()`` of a list that holds itself twice, 40 levels deep, prints as
  2**40 items (a 0.7 KB file, gigabytes of text);
* ``list(x)`` / ``_codecs.encode(s)`` called again and again on one memoised
  object: each call copies it (reference amplification);
* dict and set keys that share one hash (the integers ``k * (2**61 - 1)``)
  make every insertion probe all the earlier ones: quadratic time;
* memo indices that share one hash, the same for the memo;
* the state of a dtype applied again after an array used it.

Every case must end in one :class:`~lasres.errors.LasresError` line, within a
few seconds, without the memory the file asks for: the loads run in a
subprocess under ``RLIMIT_AS`` (:mod:`_memlimit`) with a wall-clock limit.
"""
import gzip
import io
import pickle
import re
import struct
import time

import numpy as np
import pytest

from _memlimit import run_limited
from lasres.errors import WeightFileError
from lasres.io import safepickle
from lasres.io.safepickle import restricted_load
from lasres.weights import load_pklz

MiB = 1024 ** 2
#: Address space a load may take beyond the interpreter's (with NumPy, h5py,
#: lasres imported); the crafted files ask for gigabytes.
HEADROOM = 400 * MiB
#: Wall-clock seconds a refusal may take (the subprocess gets a few more to start).
SECONDS = 5.0
COLLIDE = 2 ** 61 - 1  # hash(k * COLLIDE) == 0 for every integer k


# --------------------------------------------------------------------------
# a small assembler of protocol-2 opcodes
# --------------------------------------------------------------------------
def _put(i):
    return b"r" + struct.pack("<I", i)  # LONG_BINPUT


def _get(i):
    return b"j" + struct.pack("<I", i)  # LONG_BINGET


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _unicode(s):
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    if 0 <= i < 2 ** 31:
        return b"J" + struct.pack("<i", i)
    enc = pickle.encode_long(i)
    return b"\x8a" + bytes([len(enc)]) + enc  # LONG1


def nested_str_bomb(levels=40):
    """``str(a)`` where ``a = [a_, a_]`` nested ``levels`` deep: 2**levels items."""
    ops = [b"\x80\x02", _global("builtins", "str"), b"]", _put(0), b"0"]
    for i in range(1, levels):
        ops += [b"(", _get(i - 1), _get(i - 1), b"l", _put(i), b"0"]
    ops += [_get(levels - 1), b"\x85R\x85."]  # str(the last), wrapped in a tuple
    return b"".join(ops)


def list_copy_bomb(items=100_000, copies=2000):
    """``[list(x)] * copies`` as separate copies of one memoised list of
    ``items`` references: ~200 KB that ask for items * copies * 8 bytes."""
    # build: outer list (memo 0) gets list(x) appended `copies` times
    ops = [b"\x80\x02]", _put(0), _unicode("w"), _put(1), b"]", _put(2), b"("]
    ops += [_get(1)] * items
    ops += [b"e0", _global("builtins", "list"), _put(3), b"0", _get(0)]
    for _ in range(copies):
        ops += [_get(3), _get(2), b"\x85R", b"a"]
    ops += [b"."]
    return b"".join(ops)


def encode_copy_bomb(chars=1 << 20, copies=2000):
    """``_codecs.encode(s, 'latin1')`` ``copies`` times on one memoised 1 MiB
    string: 1 MiB of file asking for 2 GiB."""
    ops = [b"\x80\x02]", _put(0), _unicode("x" * chars), _put(1), b"0",
           _global("_codecs", "encode"), _put(2), b"0", _unicode("latin1"), _put(3), b"0"]
    for _ in range(copies):
        ops += [_get(2), _get(1), _get(3), b"\x86R", b"a"]
    ops += [b"."]
    return b"".join(ops)


def colliding_dict(n=30_000, kind="dict"):
    """A dict (or set) of ``n`` integer keys that all hash to 0."""
    keys = [k * COLLIDE for k in range(1, n + 1)]
    if kind == "dict":
        body = [b"\x80\x02}"]
        for start in range(0, n, 1000):
            body.append(b"(" + b"".join(_int(k) + b"N" for k in keys[start:start + 1000]) + b"u")
    else:  # a protocol-4 set
        body = [b"\x80\x04\x8f"]
        for start in range(0, n, 1000):
            body.append(b"(" + b"".join(_int(k) for k in keys[start:start + 1000]) + b"\x90")
    return b"".join(body) + b"."


def colliding_memo(n=30_000):
    """Protocol-0 PUT indices that all hash to 0 (the memo is a dict)."""
    ops = [b"(l"]
    for k in range(1, n + 1):
        ops.append(b"I1\np" + str(k * COLLIDE).encode() + b"\na")
    return b"".join(ops) + b"."


def dtype_state_after_use():
    """A float64 dtype used by an array, then its state set again to big-endian
    (NumPy's pickles set a dtype's state once, right after creating it)."""
    raw = np.arange(4, dtype="<f8").tobytes()
    dt = [_global("numpy", "dtype"), _unicode("f8"), b"K\x00K\x01\x87R", _put(1),
          b"(K\x03", _unicode("<"), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"]
    arr = [_global("numpy.core.multiarray", "_reconstruct"), _global("numpy", "ndarray"),
           b"K\x00\x85", _unicode("b"), b"\x87R", b"(K\x01K\x04\x85", _get(1), b"\x89",
           b"C" + bytes([len(raw)]) + raw, b"tb"]
    again = [_get(1), b"(K\x03", _unicode(">"), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
             b"a"]
    return b"".join([b"\x80\x03]("] + dt + [b"0"] + arr + [b"e"] + again + [b"."])


def _gz(raw):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(raw)
    return buf.getvalue()


# --------------------------------------------------------------------------
# running a load under a memory and a time limit
# --------------------------------------------------------------------------
LOAD_WEIGHTS = """
import time
from lasres.models import build
net = build('normal', 1, 1)
t0 = time.perf_counter()
try:
    lasres.cli.load_network_weights(net, PATH)
    _report(outcome='loaded', seconds=time.perf_counter() - t0)
except lasres.errors.LasresError as e:
    _report(outcome=type(e).__name__, msg=str(e), seconds=time.perf_counter() - t0)
"""

LOAD_CIFAR = """
import time
from lasres.data.cifar import _read_py_batch
t0 = time.perf_counter()
try:
    _read_py_batch(PATH)
    _report(outcome='loaded', seconds=time.perf_counter() - t0)
except lasres.errors.LasresError as e:
    _report(outcome=type(e).__name__, msg=str(e), seconds=time.perf_counter() - t0)
"""


def _refused(path, code=LOAD_WEIGHTS, headroom=HEADROOM, timeout=30):
    """Load ``path`` in a limited subprocess; return its report (asserting the
    refusal: one short line, in time, no MemoryError)."""
    try:
        rc, rep, err = run_limited(code.replace("PATH", repr(str(path))), headroom,
                                   timeout=timeout)
    except Exception as exc:  # subprocess.TimeoutExpired: the old quadratic loads
        pytest.fail(f"no answer within {timeout} s ({type(exc).__name__})")
    assert rc == 0 and rep is not None, err[-2000:]
    assert rep["outcome"] in ("WeightFileError", "DataError"), rep
    assert "\n" not in rep["msg"] and len(rep["msg"]) < 400, rep["msg"]
    assert "MemoryError" not in rep["msg"] and "out of memory" not in rep["msg"], rep["msg"]
    assert rep["seconds"] < SECONDS, rep
    rep["peak_mib"] = (rep["vm_peak"] - rep["vm_base"]) / MiB
    print(f"{path.name}: {rep['seconds']:.2f} s, peak +{rep['peak_mib']:.0f} MiB: {rep['msg']}")
    return rep


# --------------------------------------------------------------------------
# item 3: amplification
# --------------------------------------------------------------------------
def test_str_of_a_self_doubling_list_is_refused(tmp_path):
    raw = nested_str_bomb()
    p = tmp_path / "str_bomb.pklz"
    p.write_bytes(_gz(raw))
    assert p.stat().st_size < 300
    rep = _refused(p)
    assert "builtins.str is only allowed" in rep["msg"], rep


def test_str_bomb_as_a_cifar_batch(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(nested_str_bomb())
    rep = _refused(p, LOAD_CIFAR)
    assert rep["outcome"] == "DataError", rep


@pytest.mark.parametrize("maker", [list_copy_bomb, encode_copy_bomb],
                         ids=["list_copies", "encode_copies"])
def test_reference_amplification_is_charged(tmp_path, maker):
    raw = maker()
    p = tmp_path / f"{maker.__name__}.pklz"
    p.write_bytes(_gz(raw))
    rep = _refused(p)
    assert "would create more than" in rep["msg"], rep
    # the network's budget (normal 1: ~2.2 MiB, twice that for the stream) and
    # the interpreter's own allocations: far below what the file asks for
    assert rep["peak_mib"] < 64, rep


def test_reference_amplification_in_a_cifar_batch_stops_at_its_cap(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(encode_copy_bomb(copies=4000))  # 1 MiB asking for 4 GiB
    rep = _refused(p, LOAD_CIFAR, headroom=1536 * MiB)
    # 4 times the file's size plus 64 MiB (the data-file cap, 1 GiB, for large files)
    assert re.search(r"would create more than 68\.\d MiB", rep["msg"]), rep
    assert rep["peak_mib"] < 96, rep


# --------------------------------------------------------------------------
# item 4: colliding keys
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dict", "set"])
def test_colliding_keys_cannot_make_a_load_quadratic(tmp_path, kind):
    p = tmp_path / f"collide_{kind}.pkl"
    p.write_bytes(colliding_dict(30_000, kind))
    rep = _refused(p, timeout=20)
    assert "hash-table probes" in rep["msg"], rep


def test_colliding_keys_in_a_cifar_batch_give_a_short_line(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(colliding_dict(30_000))
    rep = _refused(p, LOAD_CIFAR, timeout=20)
    assert rep["outcome"] == "DataError" and "hash-table probes" in rep["msg"], rep


def test_colliding_memo_indices_are_refused(tmp_path):
    p = tmp_path / "memo.pkl"
    p.write_bytes(colliding_memo())
    rep = _refused(p, timeout=20)
    assert "memo index" in rep["msg"], rep


def test_string_keys_and_few_number_keys_still_load():
    d = {f"k{i}": i for i in range(50_000)}
    d.update({i * COLLIDE: i for i in range(1, 200)})  # colliding, but few
    out = restricted_load(io.BytesIO(pickle.dumps(d, protocol=2)), max_bytes=64 * MiB)
    assert out == d


# --------------------------------------------------------------------------
# item 15: a dtype's state only on fresh dtypes
# --------------------------------------------------------------------------
def test_dtype_state_after_use_is_refused(tmp_path):
    raw = dtype_state_after_use()
    with pytest.raises(pickle.UnpicklingError, match="not new"):
        restricted_load(io.BytesIO(raw), max_bytes=MiB)
    p = tmp_path / "dtype.pkl"
    p.write_bytes(raw)
    with pytest.raises(WeightFileError, match="not new") as info:
        load_pklz(p)
    assert "\n" not in str(info.value)


def test_dtype_state_is_set_once_per_dtype():
    # the legitimate form: numpy.dtype(...) then BUILD, before any array uses it
    vals = [np.arange(4, dtype=">f8"), np.arange(3, dtype="<i4")]
    for proto in range(6):
        raw = pickle.dumps(vals, protocol=proto)
        out = restricted_load(io.BytesIO(raw), max_bytes=MiB)
        ref = pickle.loads(raw)  # (NumPy itself gives native byte order below protocol 5)
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(ref, out))


# --------------------------------------------------------------------------
# bounded messages, opcodes and good files
# --------------------------------------------------------------------------
def test_error_lines_are_bounded(tmp_path):
    long_codec = (b"\x80\x02" + _global("_codecs", "encode") + _unicode("a")
                  + _unicode("z" * 100_000) + b"\x86R.")
    forbidden = b"\x80\x02c" + b"m" * 50_000 + b"\n" + b"n" * 50_000 + b"\n."
    for name, raw in (("codec", long_codec), ("forbidden", forbidden)):
        p = tmp_path / f"{name}.pkl"
        p.write_bytes(raw)
        with pytest.raises(WeightFileError) as info:
            load_pklz(p)
        assert len(str(info.value)) < 400 and "\n" not in str(info.value), name


def test_opcode_count_is_bounded():
    raw = b"\x80\x02" + b"N0" * 1_100_000 + b"N."
    t0 = time.perf_counter()
    with pytest.raises(safepickle.PickleLimitError, match="opcodes"):
        restricted_load(io.BytesIO(raw), max_bytes=64 * MiB, max_ops=2_000_000)
    assert time.perf_counter() - t0 < SECONDS


@pytest.mark.parametrize("op", [b"2", b"\x81", b"\x92", b"i", b"o"])
def test_opcodes_no_pickler_writes_are_refused(op):
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        restricted_load(io.BytesIO(b"\x80\x02]" + op + b"."), max_bytes=MiB)


@pytest.mark.parametrize("proto", range(6))
def test_good_pickles_load_as_before(tmp_path, proto):
    vals = [np.random.RandomState(proto).randn(16, 3, 3, 3).astype("float32"),
            np.arange(10.0), np.zeros((0, 4), np.int64)]
    p = tmp_path / "w.pkl"
    p.write_bytes(pickle.dumps(vals, protocol=proto))
    out = load_pklz(p)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(vals, out))
    d = {b"data": np.zeros((5, 3072), np.uint8), b"labels": [1, 2, 3, 4, 5],
         b"filenames": [b"a.png"] * 5, b"set": {1.5, 2}, b"fs": frozenset({"a"})}
    out = restricted_load(io.BytesIO(pickle.dumps(d, protocol=proto)), encoding="bytes",
                          max_bytes=MiB)
    assert out[b"labels"] == [1, 2, 3, 4, 5] and out[b"set"] == {1.5, 2}
    assert out[b"data"].shape == (5, 3072)


def test_float64_file_for_a_float32_network_still_fits(tmp_path):
    """The tightest good case: every value in float64 (twice the network's
    float32 size), protocol 2, through the network's budget."""
    from lasres import layers as L
    from lasres.cli import load_network_weights
    from lasres.models import build
    from lasres.weights import save_pklz
    net = build("normal", 1, 1)
    vals = [v.astype(np.float64) + 0.5 for v in L.get_all_param_values(net)]
    for proto in (2, 4, 5):
        p = tmp_path / f"f64_{proto}.pklz"
        save_pklz(p, vals, protocol=proto)
        load_network_weights(net, str(p))
        assert np.allclose(L.get_all_param_values(net)[0], vals[0].astype(np.float32))
