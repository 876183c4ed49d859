#!/usr/bin/env python
"""He et al. (2015) Figure 6 from lasres runs: training error (dashed) and
validation error (solid) against epochs, plain nets left, residual nets
right, one colour per depth.  Reads the ``compare.json`` files that
``scripts/compare.py`` writes (several runs may come from separate
processes, e.g. one per core).

    python benchmarks/plot_trend.py runs/trend-a runs/trend-b --out docs/figures/trend.png

``--together`` draws all runs in one panel, one colour per model (the RiR
seed's CNN vs ResNet vs RiR comparison).
"""
import argparse
import json
import os
import sys


def load_runs(folders):
    runs = []
    for folder in folders:
        path = os.path.join(folder, "compare.json")
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: cannot read {path}: {e}")
        runs += [dict(r, source=record) for r in record["runs"]]
    return runs


def table(runs, widths=False):
    lines = ["| model | layers | parameters | final training error | final val. error | "
             "test error | time |", "|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["type"], r["layers"])):
        h = r["history"]
        name = f"{r['type']} {r['depth']}" + (f" {r['width']}" if widths else "")
        lines.append(f"| `{name}` | {r['layers']} | {r['params']:,} | "
                     f"{100 * (1 - h['train_acc'][-1]):.1f}% | {100 * (1 - h['val_acc'][-1]):.1f}% | "
                     f"{100 * (1 - r['test_acc']):.1f}% | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def plot(runs, path, title, together=False):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from lasres.io.atomic import atomic_path
    kinds = [None] if together else sorted({r["type"] for r in runs}, key=lambda t: t != "plain")
    fig, axes = plt.subplots(1, len(kinds), figsize=(7.0 if together else 5.5 * len(kinds), 4.2),
                             sharey=True,
                             squeeze=False)
    colours = {}
    for ax, kind in zip(axes[0], kinds):
        for r in sorted((r for r in runs if kind in (None, r["type"])),
                        key=lambda r: (r["layers"], r["type"])):
            h = r["history"]
            epochs = h["epoch"]  # 1-based in compare.json
            c = colours.setdefault(r["label"] if together else r["layers"], f"C{len(colours)}")
            name = (f"{r['type']} {r['label'].split(':', 1)[1].replace(':', ' ')} "
                    f"({r['params'] / 1e3:.0f}k)" if together else f"{kind}-{r['layers']}")
            ax.plot(epochs, [100 * (1 - a) for a in h["train_acc"]], "--", color=c, lw=1,
                    label=f"{name} training")
            ax.plot(epochs, [100 * (1 - a) for a in h["val_acc"]], "-", color=c, lw=2,
                    label=f"{name} validation")
        if kind is not None:
            ax.set_title({"plain": "plain nets", "resnet": "ResNets"}.get(kind, kind))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("error (%)")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="compare.py output folders")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--title", default=None)
    ap.add_argument("--together", action="store_true",
                    help="all runs in one panel, one colour per model (e.g. CNN vs ResNet vs RiR)")
    a = ap.parse_args(argv)
    runs = load_runs(a.folders)
    src = runs[0]["source"]
    title = a.title or (f"CIFAR-10, {src['train_images']:,} training images, "
                        f"{src['epochs']} epochs: plain vs residual")
    plot(runs, a.out, title, together=a.together)
    print(table(runs, widths=a.together))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
