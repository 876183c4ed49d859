"""Learning-rate schedules: ``(first epoch, rate)`` pairs, parsed from the
command line's ``--lr-schedule``."""
from typing import Optional, Tuple

from ..errors import LasresError
from ..recipes import LEGACY_SCHEDULE

__all__ = ["Schedule", "parse_schedule", "learning_rate_at"]

#: A learning-rate schedule: ``(first epoch, rate)`` pairs sorted by epoch.
Schedule = Tuple[Tuple[int, float], ...]

def parse_schedule(text: Optional[str]) -> Schedule:
    """Parse ``'0:0.01,10:0.1,80:0.01,120:0.001'`` (or ``'legacy'``) into a
    sorted tuple of ``(first_epoch, learning_rate)``; a single number means a
    constant rate."""
    if text is None or text == "legacy":
        return LEGACY_SCHEDULE
    try:
        if ":" not in text:
            return ((0, float(text)),)
        pairs = []
        for item in text.split(","):
            epoch, lr = item.split(":")
            pairs.append((int(epoch), float(lr)))
    except ValueError:
        raise LasresError(f"bad learning-rate schedule {text!r}: expected 'legacy', a number, "
                          "or EPOCH:RATE pairs such as '0:0.01,10:0.1,80:0.01,120:0.001'") from None
    pairs.sort()
    if pairs[0][0] != 0:
        raise LasresError(f"bad learning-rate schedule {text!r}: it must start at epoch 0")
    return tuple(pairs)


def learning_rate_at(schedule: Schedule, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based) under ``schedule``."""
    lr = schedule[0][1]
    for first, rate in schedule:
        if epoch >= first:
            lr = rate
    return lr
