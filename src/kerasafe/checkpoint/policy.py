"""When to checkpoint and what to keep: policy only, no bytes (those are store's job).

Example:
    >>> from kerasafe.checkpoint.policy import Retention
    >>> Retention(keep_last=2, keep_best=1, mode="min").to_delete([(1, 0.9), (2, 0.1), (3, 0.5), (4, 0.7)])
    [1]
"""

from __future__ import annotations

import dataclasses

from .. import errors


def resolve_mode(mode: str, monitor: str) -> str:
    """``auto`` means max for accuracy-like metrics, min for everything else (as Keras does)."""
    if mode not in ("auto", "min", "max"):
        raise errors.KerasafeError(None, "mode 'auto', 'min' or 'max'", repr(mode), "pass one of those")
    if mode != "auto":
        return mode
    return "max" if ("acc" in monitor or monitor.startswith("fmeasure") or "auc" in monitor) else "min"


def parse_save_freq(save_freq) -> int | None:
    """None for "epoch", else a positive number of batches."""
    if save_freq == "epoch":
        return None
    if isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0:
        return save_freq
    raise errors.KerasafeError(None, "save_freq 'epoch' or a positive number of batches", repr(save_freq), "pass one of those")


@dataclasses.dataclass(frozen=True)
class Retention:
    """Keep the newest ``keep_last`` and the ``keep_best`` best by the monitored value."""

    keep_last: int = 3
    keep_best: int = 0
    mode: str = "min"

    def __post_init__(self):
        if self.keep_last < 1 or self.keep_best < 0:
            raise errors.KerasafeError(None, "keep_last >= 1 and keep_best >= 0", f"{self.keep_last}, {self.keep_best}", "keep at least the newest")

    def to_delete(self, steps_and_values: list[tuple[int, float | None]]) -> list[int]:
        """Steps to delete, given every committed ``(step, monitored value or None)``."""
        ordered = sorted(steps_and_values)
        keep = {step for step, _ in ordered[-self.keep_last:]}
        scored = [(v, step) for step, v in ordered if v is not None]
        sign = -1.0 if self.mode == "max" else 1.0
        keep |= {step for _, step in sorted(scored, key=lambda vs: (sign * vs[0], -vs[1]))[: self.keep_best]}
        return [step for step, _ in ordered if step not in keep]
