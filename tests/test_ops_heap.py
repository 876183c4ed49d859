"""Importing lasres keeps freed large arrays in the heap (lasres.ops.heap):
a training step's arrays are reused by the next instead of being mapped
and zeroed afresh, page by page."""
import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the setting is glibc's")

# A "step" writes a 40 MiB array (above glibc's largest mmap threshold) and
# frees it: the MiB of it still resident afterwards, ready for the next step.
_SCRIPT = """
import os, numpy as np
import lasres
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
r0 = resident()
a = np.empty(10 << 20, np.float32)
a[:] = 1.0
del a
print(resident() - r0)
"""


def _kept_mib(**env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environ.pop("LASRES_HEAP", None)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=dict(environ, **env),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.split()[-1])


@glibc
def test_a_freed_large_array_stays_in_the_heap():
    assert _kept_mib() > 35
    assert _kept_mib(LASRES_HEAP="os") < 5     # glibc's default: unmapped at once


@glibc
def test_the_users_own_malloc_settings_are_left_alone():
    assert _kept_mib(MALLOC_MMAP_THRESHOLD_=str(1 << 20)) < 5
