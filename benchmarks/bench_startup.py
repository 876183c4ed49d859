#!/usr/bin/env python
"""Time from the command to the first training step / first prediction, as
a user meets it: runs the real scripts and reads the times they report
(measured from the script's first line, imports included).

    python benchmarks/bench_startup.py --data DIR

``test_model.py bottleneck 18`` needs a weight file; without the seed's
``resnet164_fullpreactivation.pklz`` a freshly initialised network is saved
in the legacy format and used (same shapes, same work). Pass
``--fresh-cache`` to time a cold PyTensor compile cache instead: each
command then gets its own empty compile directory (nothing compiled by one
command is reused by the other, PyTensor's own helper modules included).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    out = p.stdout.replace("\r", "\n") + p.stderr.replace("\r", "\n")
    return out, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--fresh-cache", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="lasres-startup-")

    def fresh(name):
        if not a.fresh_cache:
            return env
        flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and
                 not f.startswith("compiledir=")]
        return dict(env, PYTENSOR_FLAGS=",".join(flags + [
            f"compiledir={os.path.join(tmp, 'compiledir-' + name)}"]))

    weights = os.path.join(tmp, "bottleneck18.pklz")
    subprocess.run([sys.executable, "-c",
                    "import lasres, sys; from lasres.models import build; "
                    "from lasres.layers import get_all_param_values; "
                    "from lasres.weights import save_pklz; "
                    "save_pklz(sys.argv[1], get_all_param_values(build('bottleneck', 18)))",
                    weights], check=True, env=fresh("weights"))
    out, wall = run([sys.executable, os.path.join(REPO, "scripts", "test_model.py"), "bottleneck",
                     "18", "--data", a.data, "--weights", weights, "--limit", "500"], fresh("test_model"))
    first = float(re.search(r"first prediction ([0-9.]+)s", out).group(1))
    print(json.dumps({"command": "test_model.py bottleneck 18", "to_first_prediction_s": first,
                      "wall_s_500_images": round(wall, 1),
                      "cold_cache": a.fresh_cache}), flush=True)
    out, wall = run([sys.executable, os.path.join(REPO, "scripts", "train_nn.py"), "normal", "18",
                     "--data", a.data, "--epochs", "1", "--limit", "128", "--no-plot",
                     "--out", os.path.join(tmp, "run")], fresh("train_nn"))
    ready = float(re.search(r"([0-9.]+)s from start to the first training step", out).group(1))
    first = float(re.search(r"first training step done ([0-9.]+)s", out).group(1))
    print(json.dumps({"command": "train_nn.py normal 18", "to_first_step_start_s": ready,
                      "to_first_step_done_s": first, "cold_cache": a.fresh_cache}), flush=True)


if __name__ == "__main__":
    main()
