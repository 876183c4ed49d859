"""Run Python code in a subprocess under an address-space limit.

``run_limited(code, headroom)`` starts ``python -c``, imports NumPy, h5py and
lasres there, then caps the address space (``RLIMIT_AS``) at what the
process maps after those imports plus ``headroom`` bytes, and runs ``code``.
A reader that allocates what a crafted file declares then fails with
MemoryError (reported, not hidden) instead of taking the machine's memory.

``run_bounded(code, timeout)`` runs ``code`` under a wall-clock limit: a
reader that hangs fails the test instead of stalling CI.
``shrink_global_heap_free_space(raw)`` makes the corruption on which
libhdf5 loops forever (``tests/fuzz_cases/hdf5_hang_bitflip.h5``).
"""
import json
import os
import subprocess
import sys
import time

import pytest

import lasres

#: The checkout whose lasres the tests import (the subprocesses use the same).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(lasres.__file__)))

PRELUDE = r"""
import json, resource, sys
import numpy as np
import h5py
import lasres.weights, lasres.cli, lasres.data
def _status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    return 0
_BASE = _status('VmSize')
_HEADROOM = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (_BASE + _HEADROOM, resource.getrlimit(resource.RLIMIT_AS)[1]))
def _report(**kw):
    kw.update(vm_base=_BASE, vm_peak=_status('VmPeak'), rss_peak=_status('VmHWM'),
              limit=_BASE + _HEADROOM)
    print('@@' + json.dumps(kw), flush=True)
"""


def run_limited(code, headroom, timeout=300, env=None):
    """Run ``code`` (which may call ``_report(**fields)``) under the limit.

    Returns
    -------
    (int, dict or None, str)
        Exit status, the last ``_report`` fields, stderr.
    """
    full = PRELUDE + "\n" + code
    e = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", full, str(int(headroom))], capture_output=True,
                       text=True, timeout=timeout, env=e)
    rep = None
    for line in p.stdout.splitlines():
        if line.startswith("@@"):
            rep = json.loads(line[2:])
    return p.returncode, rep, p.stderr


def start_limited(code, headroom, args=(), env=None):
    """Like :func:`run_limited`, but return the running ``subprocess.Popen``
    (text pipes on stdin and stdout) for a worker that serves many requests."""
    full = PRELUDE + "\n" + code
    e = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-c", full, str(int(headroom)), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=e, bufsize=1)


def run_bounded(code, timeout=180):
    """Run ``code`` in a fresh interpreter; a hang fails the test (instead of CI)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still reading after {timeout} s: the reader hangs")
    return p, time.monotonic() - t0


def shrink_global_heap_free_space(raw, by=0x400):
    """The corruption of ``hdf5_hang_bitflip.h5``, made on purpose: the size of the
    free-space object (index 0) of the first global heap collection (``GCOL``,
    where h5py keeps variable-length strings) made ``by`` bytes smaller, so that
    libhdf5 then parses zero bytes as an object of size 0, forever."""
    b = bytearray(raw)
    start = b.index(b"GCOL")
    assert b[start + 4] == 1  # version
    end = start + int.from_bytes(b[start + 8:start + 16], "little")
    p = start + 16
    while p < end:
        index = int.from_bytes(b[p:p + 2], "little")
        size = int.from_bytes(b[p + 8:p + 16], "little")
        if index == 0:
            assert size > by
            b[p + 8:p + 16] = (size - by).to_bytes(8, "little")
            return bytes(b)
        p += 16 + (size + 7) // 8 * 8
    raise AssertionError("no free-space object in the global heap")
