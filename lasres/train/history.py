"""The per-epoch record of a run, written as ``history.csv`` and
``history.json`` and kept in its checkpoints."""
import csv
import json
import os
from dataclasses import dataclass, field

from ..io.atomic import atomic_path

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch records of a run."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rate",
              "seconds")

    def append(self, **row):
        for k in self.FIELDS:
            getattr(self, k).append(row[k])

    def as_dict(self):
        return {k: list(getattr(self, k)) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, d):
        h = cls()
        for k in cls.FIELDS:
            getattr(h, k).extend(float(v) if k != "epoch" else int(v) for v in (d or {}).get(k, []))
        return h

    def __len__(self):
        return len(self.epoch)

    def write(self, out_dir):
        """Write ``history.csv`` and ``history.json`` atomically."""
        rows = list(zip(*(getattr(self, k) for k in self.FIELDS)))
        with atomic_path(os.path.join(out_dir, "history.csv")) as tmp, \
                open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            w.writerows(rows)
        with atomic_path(os.path.join(out_dir, "history.json")) as tmp, open(tmp, "w") as f:
            json.dump(self.as_dict(), f, indent=1)
