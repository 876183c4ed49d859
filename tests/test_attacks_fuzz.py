"""A seeded fuzz run of the restricted unpickler against resource attacks (issue 29).

Each case is a pickle assembled from the attack primitives of
``test_attacks_pickle`` (``str()`` of self-doubling lists, copies of one
memoised list or string, colliding dict, set and memo keys, a dtype's state
set after use) at random sizes, mixed with NumPy's and Python's own pickles of
random arrays and containers, then mutated (0-3 bytes flipped, inserted or
deleted). A worker subprocess capped by ``RLIMIT_AS`` (what it maps after its
imports + 400 MiB) loads every case with :func:`lasres.io.safepickle.restricted_load`
under an 8 MiB cap, each under ``signal.alarm``: every load must end in a
result or an ordinary exception (which the readers turn into one line) within
:data:`CASE_SECONDS`, and never in a MemoryError or a hang.

CI runs a short run (``LASRES_ATTACK_FUZZ_ITERATIONS``, default 150, about
20 s); for a long local run::

    LASRES_ATTACK_FUZZ_ITERATIONS=20000 LASRES_ATTACK_FUZZ_SEED=7 \\
        python -m pytest -q tests/test_attacks_fuzz.py -s

``LASRES_ATTACK_FUZZ_SEED`` sets the seed (default 29). Failing cases are
kept under the pytest temporary folder and named in the failure.
"""
import json
import os
import pickle
import random

import numpy as np

from _memlimit import start_limited
from test_attacks_pickle import (colliding_dict, colliding_memo, dtype_state_after_use,
                                 encode_copy_bomb, list_copy_bomb, nested_str_bomb)

MiB = 1024 ** 2
HEADROOM = 400 * MiB
CAP = 8 * MiB
CASE_SECONDS = 3.0

WORKER = r"""
import io, signal, time
from lasres.io.safepickle import restricted_load
cap = int(sys.argv[2])
def alarm(*a):
    raise TimeoutError('hang')
signal.signal(signal.SIGALRM, alarm)
_report(outcome='ready')
for line in sys.stdin:
    path = line.rstrip('\n')
    t0 = time.perf_counter()
    signal.alarm(10)
    try:
        with open(path, 'rb') as f:
            restricted_load(f, encoding=('bytes' if path.endswith('b') else 'latin1'),
                            max_bytes=cap)
        outcome, msg = 'loaded', ''
    except (MemoryError, TimeoutError) as e:
        outcome, msg = type(e).__name__, ''
    except Exception as e:
        outcome, msg = 'refused', (type(e).__name__ + ': ' + str(e))[:2000]
    finally:
        signal.alarm(0)
    _report(outcome=outcome, msg=msg, seconds=time.perf_counter() - t0)
"""


def _body(raw):
    """A pickle without its PROTO header and STOP, to be embedded."""
    if raw[:1] == b"\x80":
        raw = raw[2:]
    assert raw.endswith(b".")
    return raw[:-1]


def _case(rng):
    parts = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(9)
        if kind == 0:
            parts.append(nested_str_bomb(rng.randint(2, 45)))
        elif kind == 1:
            parts.append(list_copy_bomb(rng.randint(1, 20_000), rng.randint(1, 3000)))
        elif kind == 2:
            parts.append(encode_copy_bomb(rng.randint(1, 1 << 18), rng.randint(1, 200)))
        elif kind == 3:
            parts.append(colliding_dict(rng.randint(1, 30_000), rng.choice(["dict", "set"])))
        elif kind == 4:
            parts.append(colliding_memo(rng.randint(1, 20_000)))
        elif kind == 5:
            parts.append(dtype_state_after_use())
        else:
            r = np.random.RandomState(rng.randrange(2 ** 31))
            obj = [np.asarray(r.randn(*r.randint(1, 6, r.randint(0, 4)))).astype(
                       rng.choice(["<f4", ">f8", "<i2", "|u1", "<c8"])),
                   {b"labels": list(r.randint(0, 10, 50)), "k": (1.5, None, "s")}]
            parts.append(pickle.dumps(obj, protocol=rng.randint(0, 5)))
    if len(parts) == 1:
        raw = parts[0]
    else:  # several protocol-2-compatible bodies, one after another in a list
        raw = b"\x80\x04(" + b"".join(_body(p) for p in parts) + b"l."
    raw = bytearray(raw)
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        at = rng.randrange(len(raw))
        op = rng.randrange(3)
        if op == 0:
            raw[at] = rng.randrange(256)
        elif op == 1:
            raw[at:at] = bytes([rng.randrange(256)])
        elif len(raw) > 2:
            del raw[at]
    return bytes(raw)


def test_seeded_fuzz_of_the_unpickler(tmp_path):
    iterations = int(os.environ.get("LASRES_ATTACK_FUZZ_ITERATIONS", "150"))
    seed = int(os.environ.get("LASRES_ATTACK_FUZZ_SEED", "29"))
    rng = random.Random(seed)
    worker = start_limited(WORKER, HEADROOM, args=(CAP,))
    bad, outcomes, slowest, peak = [], {}, 0.0, 0
    try:
        assert json.loads(worker.stdout.readline()[2:])["outcome"] == "ready"
        for i in range(iterations):
            path = tmp_path / f"case{i:05d}.pkl{'b' if rng.random() < 0.5 else 'l'}"
            path.write_bytes(_case(rng))
            worker.stdin.write(str(path) + "\n")
            worker.stdin.flush()
            line = worker.stdout.readline()
            if not line:
                bad.append((path.name, "the worker died"))
                break
            rep = json.loads(line[2:])
            outcomes[rep["outcome"]] = outcomes.get(rep["outcome"], 0) + 1
            slowest = max(slowest, rep["seconds"])
            peak = max(peak, rep["vm_peak"] - rep["vm_base"])
            if rep["outcome"] in ("MemoryError", "TimeoutError") \
                    or rep["seconds"] > CASE_SECONDS or "\n" in rep["msg"] \
                    or len(rep["msg"]) > 1000:
                bad.append((path.name, rep["outcome"], round(rep["seconds"], 2),
                            rep["msg"][:200]))
            else:
                path.unlink()
    finally:
        worker.stdin.close()
        worker.kill()
        worker.wait()
    print(f"{iterations} cases (seed {seed}): {outcomes}; slowest {slowest:.2f} s; "
          f"peak +{peak / MiB:.0f} MiB over the worker's start")
    assert not bad, f"kept in {tmp_path}: {bad[:10]}"
