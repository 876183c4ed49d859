"""A restricted unpickler: pickles of NumPy arrays and builtin containers, nothing else.

Legacy weight files (``.pklz``) and the CIFAR batches are pickles, and a
pickle can call any importable function. :func:`restricted_load` admits
only the globals a list of arrays (or a dict of arrays, strings and
numbers) is made of, in the forms NumPy itself writes, with sizes checked
against the data actually present, so that a crafted file can neither run
code nor allocate more than it holds.

This module depends on :mod:`lasres.io.sizecheck` and :mod:`lasres.errors`
only: readers of weight files (:mod:`lasres.weights`) and of data sets
(:mod:`lasres.data`) both use it.
"""
from __future__ import annotations

import _compat_pickle
import pickle
import re
import struct
import sys
from typing import Any, BinaryIO

import numpy as np

from ..errors import LasresError
from .sizecheck import CappedReader, declared_nbytes, format_bytes, short_repr

__all__ = ["restricted_load", "ForbiddenPickleError", "PickleLimitError", "forbidden_message",
           "MAX_OPS", "MAX_HASH_WORK"]

#: Most opcodes one pickle may run (a CIFAR-100 batch runs about 350,000, a
#: weight file about 30 an array): the time of a load is bounded whatever the
#: file, about a second per million opcodes.
MAX_OPS = 2_000_000
#: Most hash-table probes that keys whose hash a file can choose (numbers,
#: None) may cost, counted at their worst (every key of a container colliding):
#: colliding keys cannot make a load quadratic. Strings and bytes have
#: randomised hashes and cost nothing here.
MAX_HASH_WORK = 20_000_000
#: The key types a dict or set of a pickle may hold (exact types).
_KEY_TYPES = (str, bytes, int, float, bool, type(None))
#: Codecs ``str(bytes, codec)`` may name.
_TEXT_CODECS = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1", "ascii", "us-ascii",
                "utf-8", "utf8")


def _numpy_core():
    """Return the module holding ``_reconstruct`` / ``scalar`` for this NumPy."""
    try:  # NumPy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray, numeric
    return multiarray, numeric


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` restricted to what pickles of bytes need (latin-1 text)."""
    name = encoding.lower().replace("_", "-") if isinstance(encoding, str) else None
    if name not in ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1") \
            or not isinstance(obj, str) or errors not in ("strict", "ignore", "replace"):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {short_repr(encoding, 40)} "
                                     f"is not allowed")
    return obj.encode("latin1", errors)


def _empty_bytes(*args):
    """``bytes()`` as Python 3 pickles an empty ``bytes`` below protocol 3; nothing else."""
    if args:
        raise pickle.UnpicklingError("builtins.bytes with arguments is not allowed")
    return b""


class _NdarrayName(object):
    """What ``numpy.ndarray`` resolves to inside a pickle: a name, not a callable.

    NumPy's pickles only pass ``numpy.ndarray`` as the first argument of
    ``_reconstruct``; calling it (``numpy.ndarray(shape, dtype)``) would
    allocate an uninitialised array of any size, so it is not callable here.
    """

    __slots__ = ()

    def __repr__(self):
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("calling numpy.ndarray(...) is not allowed (it would "
                                     "allocate an uninitialised array of any size; NumPy's "
                                     "pickles never do it)")


_NDARRAY = _NdarrayName()
#: dtype codes NumPy writes for plain numeric arrays: b1, i1..i8, u1..u8, f2..f16, c8..c32
_DTYPE_CODE = re.compile(r"[<>|=]?(b1|[iu][1248]|f(2|4|8|10|12|16)|c(8|16|20|24|32)|\?)")


def _check_plain_dtype(dt, what):
    if not isinstance(dt, np.dtype) or dt.kind not in "biufc" or dt.names is not None \
            or dt.subdtype is not None or dt.hasobject:
        raise pickle.UnpicklingError(f"{what}: only plain numeric dtypes are allowed, got "
                                     f"{short_repr(dt, 60)}")
    return dt


def _safe_reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` in the one form NumPy writes:
    ``_reconstruct(numpy.ndarray, (0,), b'b')`` (an empty array that BUILD fills)."""
    if subtype is not _NDARRAY or shape != (0,) or dtype not in ("b", b"b"):
        raise pickle.UnpicklingError("_reconstruct is only allowed as "
                                     "_reconstruct(numpy.ndarray, (0,), b'b')")
    multiarray, _ = _numpy_core()
    return multiarray._reconstruct(np.ndarray, (0,), b"b")


def _safe_dtype(code, align=False, copy=True):
    """``numpy.dtype(code, align, copy)`` for plain numeric codes only, always a copy
    (BUILD then sets its byte order; it must never alter NumPy's shared dtypes)."""
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str) or not _DTYPE_CODE.fullmatch(code) \
            or align not in (0, 1, False, True) or copy not in (0, 1, False, True):
        raise pickle.UnpicklingError(f"numpy.dtype({short_repr(code, 40)}) is not allowed "
                                     f"(only plain numeric dtypes)")
    return _check_plain_dtype(np.dtype(code, align=False, copy=True), "numpy.dtype")


def _safe_scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar(dtype, bytes)`` for plain numeric dtypes."""
    _check_plain_dtype(dtype, "numpy scalar")
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar: data does not match its dtype")
    multiarray, _ = _numpy_core()
    return multiarray.scalar(dtype, bytes(data))


def _safe_frombuffer(buf, dtype, shape, order="C"):
    """``numpy.core.numeric._frombuffer`` (NumPy's protocol-5 form) with checked sizes."""
    _check_plain_dtype(dtype, "numpy _frombuffer")
    if isinstance(buf, pickle.PickleBuffer):
        buf = buf.raw()
    if not isinstance(buf, (bytes, bytearray, memoryview)) or order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy _frombuffer: bad arguments")
    try:
        n = declared_nbytes(tuple(shape), dtype, "numpy _frombuffer")
    except (LasresError, TypeError) as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    if n != memoryview(buf).nbytes:
        raise pickle.UnpicklingError("numpy _frombuffer: buffer size does not match the shape")
    _, numeric = _numpy_core()
    return numeric._frombuffer(buf, dtype, tuple(shape), order)


def _check_array_state(inst, state):
    """The state NumPy writes for a plain array: ``(1, shape, dtype, is_fortran, rawdata)``
    (or without the leading version), rawdata exactly ``prod(shape) * itemsize`` bytes."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise pickle.UnpicklingError("array state: expected a 4- or 5-tuple")
    if len(state) == 5:
        if state[0] != 1:
            raise pickle.UnpicklingError("array state: unsupported version")
        state = state[1:]
    shape, dtype, fortran, raw = state
    _check_plain_dtype(dtype, "array state")
    if fortran not in (0, 1, False, True):
        raise pickle.UnpicklingError("array state: bad order flag")
    try:
        n = declared_nbytes(shape, dtype, "array state")
    except LasresError as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    if not isinstance(raw, (bytes, str, bytearray)) or len(raw) != n:
        raise pickle.UnpicklingError(f"array state: data of {len(raw) if hasattr(raw, '__len__') else '?'} "
                                     f"bytes for an array of {n} bytes")
    if not (isinstance(inst, np.ndarray) and inst.shape == (0,) and inst.dtype == np.int8):
        raise pickle.UnpicklingError("array state applied to something else than a new array")


def _check_dtype_state(inst, state):
    """The state NumPy writes for a plain dtype: ``(3, '<', None, None, None, -1, -1, 0)``."""
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4) \
            or state[1] not in ("<", ">", "|", "=", b"<", b">", b"|", b"=") \
            or state[2:5] != (None, None, None) or state[5:7] != (-1, -1) \
            or not isinstance(state[7], int) or (len(state) == 9 and state[8] is not None):
        raise pickle.UnpicklingError("dtype state: only plain numeric dtypes are allowed")
    _check_plain_dtype(inst, "dtype state")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    _, numeric = _numpy_core()
    allowed: dict[tuple[str, str], Any] = {}
    # Array reconstruction only in the forms NumPy writes; nothing here can
    # allocate more than the bytes present in the stream.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _safe_reconstruct
        allowed[(mod, "scalar")] = _safe_scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        if hasattr(numeric, "_frombuffer"):
            allowed[(mod, "_frombuffer")] = _safe_frombuffer
    allowed[("numpy", "ndarray")] = _NDARRAY
    allowed[("numpy", "dtype")] = _safe_dtype
    # Protocol-2 pickles written by Python 3 encode ``bytes`` through
    # ``_codecs.encode(text, 'latin1')``; only that codec is let through.
    allowed[("_codecs", "encode")] = _latin1_encode
    # Plain containers and scalars. ``bytes`` only as ``bytes()`` (how an
    # empty array's data is pickled below protocol 3) and no ``bytearray``:
    # ``bytes(10**12)`` would be a memory bomb. Python-2 names such as
    # ``__builtin__`` are mapped to ``builtins`` before this table is consulted.
    allowed[("builtins", "bytes")] = _empty_bytes
    for name, obj in (("list", list), ("tuple", tuple), ("dict", dict), ("set", set),
                      ("frozenset", frozenset), ("int", int), ("float", float),
                      ("complex", complex), ("bool", bool), ("str", str)):
        allowed[("builtins", name)] = obj
    return allowed


_ALLOWED = _allowed_globals()


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (never executed)."""

    def __init__(self, module: str, name: str):
        module, name = short_repr(module, 60).strip("'\""), short_repr(name, 60).strip("'\"")
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class PickleLimitError(pickle.UnpicklingError):
    """A pickle would create more objects, run more opcodes or cost more
    hash-table work than its limit (stopped before doing so)."""


_OP = {name: getattr(pickle, name)[0] for name in (
    "BUILD", "BYTEARRAY8", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "INST", "OBJ", "DUP", "PUT",
    "BINPUT", "LONG_BINPUT", "MEMOIZE", "APPEND", "APPENDS", "SETITEM", "SETITEMS",
    "ADDITEMS", "DICT", "FROZENSET", "NEXT_BUFFER", "READONLY_BUFFER")}
#: Opcodes no pickle of arrays and containers needs (Python's and NumPy's
#: picklers never write them for such data): refused.
_REFUSED_OPS = {
    _OP["NEWOBJ"]: "NEWOBJ", _OP["NEWOBJ_EX"]: "NEWOBJ_EX", _OP["INST"]: "INST",
    _OP["OBJ"]: "OBJ", _OP["DUP"]: "DUP", _OP["NEXT_BUFFER"]: "NEXT_BUFFER",
    _OP["READONLY_BUFFER"]: "READONLY_BUFFER"}
#: Opcodes that push one new object on the stack: charged its size.
_NEW_OBJECT_OPS = frozenset(getattr(pickle, name)[0] for name in (
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "UNICODE", "BINUNICODE",
    "SHORT_BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT", "EMPTY_LIST", "EMPTY_DICT",
    "EMPTY_SET", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "LIST", "DICT", "FROZENSET"))
#: What every opcode is charged at least: a stack slot and its bookkeeping.
_OP_BYTES = 16
#: What a memo entry is charged.
_MEMO_BYTES = 112


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickler admitting only NumPy array reconstruction and builtin containers,
    within a bound on the memory and the time it may take.

    ``find_class`` is the only way a pickle can reach a callable; refusing
    every global outside the allow-list means a malicious file can build
    nothing but arrays, dtypes and plain containers, and the allowed entry
    points check their arguments (the forms NumPy writes, sizes that match
    the data present; ``str()``, ``list()``, ``dict()``... only of values that
    cannot expand). ``BUILD`` is only applied to new arrays and dtypes, once
    each, before they are used, with states of the form NumPy writes.
    Persistent ids and the opcodes no pickler writes for such data (``DUP``,
    ``INST``, ``OBJ``, ``NEWOBJ``, out-of-band buffers) are refused, and so
    is overwriting a memo entry.

    The resource bound: every object the unpickler creates (strings, numbers,
    containers and their growth, memo entries, array copies, results of the
    allowed calls) is charged its size *before* anything large is allocated,
    and the load stops with :class:`PickleLimitError` as soon as the total
    passes ``max_created`` bytes (the raw data a ``BUILD`` consumes is given
    back when nothing else holds it), more than ``max_ops`` opcodes run, or
    keys whose hash a file can choose cost more than :data:`MAX_HASH_WORK`
    probes. It is the pure-Python unpickler (``pickle._Unpickler``) so that
    each opcode can be checked; weight files hold few, large opcodes.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    max_bytes = None
    max_created = None
    max_ops = MAX_OPS
    max_hash_work = MAX_HASH_WORK

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.created = 0
        self.ops = 0
        self.hash_work = 0
        self._fresh = {}  # id -> array or dtype made here whose state is not yet set or used
        self._calls = {
            _safe_reconstruct: self._call_reconstruct, _safe_dtype: self._call_dtype,
            _safe_scalar: self._call_scalar, _safe_frombuffer: self._call_frombuffer,
            _latin1_encode: self._call_encode, _empty_bytes: self._call_plain,
            str: self._call_str, int: self._call_number,
            float: self._call_number, complex: self._call_number, bool: self._call_number,
            list: self._call_container, tuple: self._call_container,
            set: self._call_container, frozenset: self._call_container,
            dict: self._call_container}

    # --- the bound ----------------------------------------------------------
    def _charge(self, nbytes):
        self.created += int(nbytes)
        if self.max_created is not None and self.created > self.max_created:
            raise PickleLimitError(
                f"refusing to load: the pickle would create more than "
                f"{format_bytes(self.max_created)} of objects (its data, containers, copies "
                f"and references; at opcode {self.ops:,})")

    def _hash_work(self, keys, size):
        """Check the types of ``keys`` entering a hashed container of ``size``
        entries and charge their worst-case probes."""
        chosen = 0
        for k in keys:
            t = type(k)
            if t not in _KEY_TYPES:
                raise pickle.UnpicklingError(f"a dict or set key of type {t.__name__} is not "
                                             f"allowed (only strings, bytes, numbers, None)")
            if t is not str and t is not bytes:
                chosen += 1
        if chosen:
            self.hash_work += chosen * (size + chosen)
            if self.hash_work > self.max_hash_work:
                raise PickleLimitError(
                    f"refusing to load: the pickle's numeric dict or set keys would cost more "
                    f"than {self.max_hash_work:,} hash-table probes if they collided (at "
                    f"opcode {self.ops:,})")

    def load(self):
        """``pickle._Unpickler.load`` with every opcode counted and charged."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, new_object = self.read, self.dispatch, _NEW_OBJECT_OPS
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                op = key[0]
                self.ops += 1
                if self.ops > self.max_ops:
                    raise PickleLimitError(f"refusing to load: the pickle runs more than "
                                           f"{self.max_ops:,} opcodes")
                if op in _REFUSED_OPS:
                    raise pickle.UnpicklingError(f"opcode {_REFUSED_OPS[op]} is not allowed "
                                                 f"(not needed by arrays and containers)")
                self._charge(_OP_BYTES)
                dispatch[op](self)
                if op in new_object:
                    self._charge(sys.getsizeof(self.stack[-1]))
        except pickle._Stop as stopinst:
            return stopinst.value

    # --- globals and calls --------------------------------------------------
    def find_class(self, module, name):  # noqa: D401 - pickle API
        # Python-2 names (``__builtin__``, ``copy_reg``, ``commands``...) are
        # mapped to their Python 3 spelling first, as pickle's own
        # ``find_class`` does, so that messages name the real target.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            obj = _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise ForbiddenPickleError(module, name) from None
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not supported")

    def _load_reduce(self):
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not isinstance(args, tuple):
            raise pickle.UnpicklingError("REDUCE: the arguments are not a tuple")
        if func is _NDARRAY:
            func(*args)  # refuses, saying why
        try:
            call = self._calls.get(func)
        except TypeError:  # an unhashable object on the stack
            call = None
        if call is None:
            raise pickle.UnpicklingError(f"REDUCE of {short_repr(func, 60)} is not allowed "
                                         f"(only the allowed globals may be called)")
        result = call(func, args)
        stack[-1] = result
        self._charge(sys.getsizeof(result))

    dispatch[_OP["REDUCE"]] = _load_reduce

    def _call_reconstruct(self, func, args):
        arr = _safe_reconstruct(*args)
        self._fresh[id(arr)] = arr
        return arr

    def _call_dtype(self, func, args):
        dt = _safe_dtype(*args)
        self._fresh[id(dt)] = dt
        return dt

    def _use_dtype(self, dt):
        """``dt`` is used by an array or scalar: its state can no longer be set."""
        if self._fresh.get(id(dt)) is dt:
            del self._fresh[id(dt)]

    def _call_scalar(self, func, args):
        if args:
            self._use_dtype(args[0])
        return _safe_scalar(*args)

    def _call_frombuffer(self, func, args):
        if len(args) > 1:
            self._use_dtype(args[1])
        return _safe_frombuffer(*args)

    def _call_encode(self, func, args):
        if args and isinstance(args[0], str):
            self._charge(len(args[0]))  # (the bytes are charged again, as the result)
        return _latin1_encode(*args)

    def _call_plain(self, func, args):
        return func(*args)

    def _call_str(self, func, args):
        # str() of a container would expand references (a list holding itself
        # twice, 30 levels deep, prints as 2**30 items): only text and numbers
        if not args:
            return ""
        x = args[0]
        if len(args) == 1 and type(x) in (str, int, float, bool, type(None)):
            return str(x)
        if isinstance(x, (bytes, bytearray)) and 2 <= len(args) <= 3 \
                and all(isinstance(a, str) for a in args[1:]) \
                and args[1].lower().replace("_", "-") in _TEXT_CODECS:
            self._charge(4 * len(x))
            return str(*args)
        raise pickle.UnpicklingError("builtins.str is only allowed on text and numbers")

    def _call_number(self, func, args):
        if len(args) > 2 or not all(type(a) in (str, bytes, int, float, bool) for a in args):
            raise pickle.UnpicklingError(f"builtins.{func.__name__} is only allowed on text "
                                         f"and numbers")
        return func(*args)

    def _call_container(self, func, args):
        if not args:
            return func()
        x = args[0]
        if len(args) > 1 or type(x) not in (list, tuple, set, frozenset, dict):
            raise pickle.UnpicklingError(f"builtins.{func.__name__} is only allowed on a list, "
                                         f"tuple, set, frozenset or dict")
        self._charge(sys.getsizeof(x) + 8 * len(x))  # (the result is charged after)
        if func in (set, frozenset):
            self._hash_work(x, 0)
        elif func is dict:
            if type(x) is not dict:
                if not all(type(p) in (tuple, list) and len(p) == 2 for p in x):
                    raise pickle.UnpicklingError("builtins.dict is only allowed on a dict or "
                                                 "on (key, value) pairs")
                self._hash_work([p[0] for p in x], 0)
        return func(x)

    # --- containers ---------------------------------------------------------
    def _grow(self, container, items, add):
        before = sys.getsizeof(container)
        add(container, items)
        self._charge(sys.getsizeof(container) - before)

    def _target(self, kind, opname):
        obj = self.stack[-1] if self.stack else None
        if type(obj) is not kind:
            raise pickle.UnpicklingError(f"{opname} onto a {type(obj).__name__} is not allowed")
        return obj

    def _load_append(self):
        value = self.stack.pop()
        self._grow(self._target(list, "APPEND"), [value], list.extend)

    def _load_appends(self):
        items = self.pop_mark()
        self._grow(self._target(list, "APPENDS"), items, list.extend)

    def _set_pairs(self, d, items):
        self._hash_work(items[::2], len(d))
        for i in range(0, len(items) - 1, 2):
            d[items[i]] = items[i + 1]

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._grow(self._target(dict, "SETITEM"), [key, value], self._set_pairs)

    def _load_setitems(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("SETITEMS: odd number of items")
        self._grow(self._target(dict, "SETITEMS"), items, self._set_pairs)

    def _load_additems(self):
        items = self.pop_mark()
        target = self._target(set, "ADDITEMS")
        self._hash_work(items, len(target))
        self._grow(target, items, set.update)

    def _load_dict(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("DICT: odd number of items")
        d = {}
        self._set_pairs(d, items)
        self.append(d)

    def _load_frozenset(self):
        items = self.pop_mark()
        self._hash_work(items, 0)
        self.append(frozenset(items))

    dispatch[_OP["APPEND"]] = _load_append
    dispatch[_OP["APPENDS"]] = _load_appends
    dispatch[_OP["SETITEM"]] = _load_setitem
    dispatch[_OP["SETITEMS"]] = _load_setitems
    dispatch[_OP["ADDITEMS"]] = _load_additems
    dispatch[_OP["DICT"]] = _load_dict
    dispatch[_OP["FROZENSET"]] = _load_frozenset

    # --- the memo -----------------------------------------------------------
    def _memo_put(self, i):
        if not 0 <= i < 1 << 32:
            raise pickle.UnpicklingError("memo index out of range")
        if i in self.memo:
            raise pickle.UnpicklingError("overwriting a memo entry is not allowed")
        if not self.stack:
            raise pickle.UnpicklingError("memo: empty stack")
        self._charge(_MEMO_BYTES)
        self.memo[i] = self.stack[-1]

    def _load_put(self):
        line = self.readline()[:-1]
        if len(line) > 12:
            raise pickle.UnpicklingError("memo index out of range")
        self._memo_put(int(line))

    def _load_binput(self):
        self._memo_put(self.read(1)[0])

    def _load_long_binput(self):
        self._memo_put(struct.unpack("<I", self.read(4))[0])

    def _load_memoize(self):
        self._memo_put(len(self.memo))

    dispatch[_OP["PUT"]] = _load_put
    dispatch[_OP["BINPUT"]] = _load_binput
    dispatch[_OP["LONG_BINPUT"]] = _load_long_binput
    dispatch[_OP["MEMOIZE"]] = _load_memoize

    # --- BUILD and big byte arrays -----------------------------------------
    def _load_build(self):
        state = self.stack.pop()
        if not self.stack:
            raise pickle.UnpicklingError("BUILD: empty stack")
        inst = self.stack[-1]
        if self._fresh.get(id(inst)) is not inst:
            raise pickle.UnpicklingError(f"BUILD of a {type(inst).__name__} that is not new "
                                         f"(state may only be set once, on arrays and dtypes "
                                         f"made here, before they are used)")
        raw = None
        if isinstance(inst, np.ndarray):
            _check_array_state(inst, state)
            self._use_dtype(state[-3])
            raw = state[-1]
            self._charge(len(raw))  # the array's own copy of its data
        elif isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        else:  # pragma: no cover - only arrays and dtypes are ever fresh
            raise pickle.UnpicklingError(f"BUILD of a {type(inst).__name__} is not allowed")
        del self._fresh[id(inst)]
        inst.__setstate__(state)
        # The stream's copy of the data dies with the state unless the pickle
        # kept it (in the memo, or inside another object): then it is given back.
        if raw is not None and sys.getrefcount(state) == 2 and sys.getrefcount(raw) == 3:
            self.created -= sys.getsizeof(raw)

    dispatch[_OP["BUILD"]] = _load_build

    def _load_bytearray8(self):
        n, = struct.unpack("<Q", self.read(8))
        if self.max_bytes is not None and n > self.max_bytes:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {n} bytes exceeds the cap")
        self._charge(n)
        self.append(bytearray(self.read(n)))

    dispatch[_OP["BYTEARRAY8"]] = _load_bytearray8


def restricted_load(fileobj: BinaryIO, *, encoding: str = "latin1", errors: str = "strict",
                    max_bytes: int | None = None, max_created: int | None = None,
                    max_ops: int = MAX_OPS) -> Any:
    """Unpickle ``fileobj`` admitting only arrays, dtypes and builtin containers.

    Parameters
    ----------
    fileobj : binary file object
        Opened for reading, positioned at the start of the pickle.
    encoding, errors : str
        How Python-2 ``str`` objects are decoded (see :class:`pickle.Unpickler`).
        ``'latin1'`` reads legacy NumPy pickles; ``'bytes'`` returns Python 2
        ``str`` as ``bytes`` (e.g. the keys of the CIFAR pickles).
    max_bytes : int, optional
        Refuse (with :class:`lasres.errors.WeightFileError`, before
        allocating) a stream longer than this many bytes once decompressed.
    max_created : int, optional
        Most bytes of objects the unpickler may create (see
        :class:`PickleLimitError`); default ``max_bytes`` (no bound without it).
    max_ops : int
        Most opcodes the pickle may run (:data:`MAX_OPS`).

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    ForbiddenPickleError
        If the pickle references any other global (``os.system``,
        ``builtins.eval``, ...); nothing referenced is ever called.
    PickleLimitError
        The objects it would create pass ``max_created``, it runs more than
        ``max_ops`` opcodes, or its numeric keys could cost more than
        :data:`MAX_HASH_WORK` hash-table probes; raised before the allocation
        or the work that passes the bound.
    WeightFileError
        If the stream is longer than ``max_bytes``.
    pickle.UnpicklingError, EOFError, ValueError, ...
        Whatever a corrupt stream raises; callers wrap these. Every message
        is one line of at most a few hundred characters.
    """
    if max_bytes is not None:
        fileobj = CappedReader(fileobj, max_bytes)
    u = _RestrictedUnpickler(fileobj, encoding=encoding, errors=errors)
    u.max_bytes = max_bytes
    u.max_created = max_bytes if max_created is None else max_created
    u.max_ops = int(max_ops)
    return u.load()


def forbidden_message(path: str, exc: ForbiddenPickleError) -> str:
    """The one-line message for a pickle that asked for a forbidden global.

    Parameters
    ----------
    path : str
        The file, named at the start of the message.
    exc : ForbiddenPickleError
        What :func:`restricted_load` raised.

    Returns
    -------
    str
    """
    return (f"{path}: refusing to load: the pickle tries to load the forbidden object "
            f"{exc.module}.{exc.name} (only NumPy arrays and builtin containers are "
            f"allowed); nothing was executed")
