"""A graph's missing C modules are compiled on all cores before PyTensor links
it (lasres.ops.cbuild), into PyTensor's own cache: the linker then compiles
nothing, the results are those of the graph, nothing half-built is left in
the cache, and a module that fails to build in advance is built by the
linker as before. Each check runs in a fresh compile directory."""
import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, os, sys
import numpy as np
import lasres, pytensor, pytensor.tensor as pt
import lasres.config as config
from lasres.ops import cbuild
from pytensor.link.c.basic import get_module_cache

added = []
prebuild = config.prebuild
def spy(fgraph, workers=None):
    n = prebuild(fgraph, workers)
    added.append(n)
    return n
config.prebuild = spy

if sys.argv[1] == "fail-one":
    build, failed = cbuild._Job.build, []
    def build_but_one(self, dirname):
        if not failed:
            failed.append(self)
            raise RuntimeError("this one fails in advance")
        build(self, dirname)
    cbuild._Job.build = build_but_one

x = pt.matrix("x")
s = float(sys.argv[2])
outs = [pt.exp(x * s) + 1, pt.tanh(x - s) * 2, pt.sqrt(pt.abs(x) + s),
        pt.log1p(pt.abs(x) * s), (x * s).sum(axis=0)]
cache = get_module_cache()
before = cache.stats[2]
f = pytensor.function([x], outs)
compiled = cache.stats[2] - before
xv = np.random.RandomState(0).rand(3, 4).astype(np.float32)
want = [np.exp(xv * s) + 1, np.tanh(xv - s) * 2, np.sqrt(np.abs(xv) + s),
        np.log1p(np.abs(xv) * s), (xv * s).sum(axis=0)]
close = all(np.allclose(a, b, rtol=1e-5) for a, b in zip(f(xv), want))
unkeyed = [d for d in os.listdir(cache.dirname) if d.startswith("tmp")
           and not os.path.exists(os.path.join(cache.dirname, d, "key.pkl"))]
print(json.dumps(dict(added=added, compiled=compiled, close=close, unkeyed=unkeyed)))
"""


def _run(tmp_path, *args, env=None):
    environ = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={tmp_path / 'cd'}", **(env or {}))
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, *args], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(os.cpu_count() < 2, reason="one core: nothing to overlap")
def test_the_modules_are_built_in_advance_and_the_linker_builds_none(tmp_path):
    r = _result(_run(tmp_path, "plain", "1.5"))
    assert r["close"]
    assert r["added"][0] >= 3                 # the graph's distinct modules
    assert r["compiled"] == sum(r["added"])   # all of them ours: the linker compiled none
    assert r["unkeyed"] == []


def test_off_the_linker_builds_them_one_by_one(tmp_path):
    r = _result(_run(tmp_path, "plain", "1.5", env={"LASRES_PREBUILD": "0"}))
    assert r["close"]
    assert sum(r["added"]) == 0 and r["compiled"] >= 3
    assert r["unkeyed"] == []


@pytest.mark.skipif(os.cpu_count() < 2, reason="one core: nothing to overlap")
def test_a_module_that_fails_in_advance_is_built_by_the_linker(tmp_path):
    r = _result(_run(tmp_path, "fail-one", "2.5"))
    assert r["close"]
    assert r["added"][0] >= 2
    assert r["compiled"] == sum(r["added"]) + 1
    assert r["unkeyed"] == []


@pytest.mark.skipif(os.cpu_count() < 2, reason="one core: nothing to overlap")
def test_two_processes_building_the_same_graph_at_once(tmp_path):
    # the second finds modules of the first in the cache (or builds its own
    # and leaves the cache's copy): both right, no leftovers
    _result(_run(tmp_path, "plain", "0.5"))   # PyTensor's own helper modules first
    procs = [_run(tmp_path, "plain", "3.5") for _ in range(2)]
    results = [_result(p) for p in procs]
    assert all(r["close"] for r in results)
    assert results[0]["unkeyed"] == [] or results[1]["unkeyed"] == []
    cd = tmp_path / "cd"
    assert [d.name for d in cd.iterdir()
            if d.name.startswith("tmp") and not (d / "key.pkl").exists()] == []


def test_the_number_of_compilers(monkeypatch):
    from lasres.ops import cbuild
    monkeypatch.setenv("LASRES_PREBUILD", "3")
    assert cbuild._workers() == 3
    monkeypatch.setenv("LASRES_PREBUILD", "0")
    assert cbuild._workers() == 0
    assert cbuild.prebuild(None) == 0          # off: not even a look at the graph
    monkeypatch.delenv("LASRES_PREBUILD")
    assert 1 <= cbuild._workers() <= min(os.cpu_count(), cbuild.MAX_WORKERS)
