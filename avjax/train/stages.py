"""Curriculum stages: which phase of training a global step belongs to.

``config.stages`` is a sequence of ConfigDicts, each with at least ``name``
and ``steps``; every other field (loss, mining, augmentation schedule, …) is
read by the method. The loop jits one step function per stage (the stage
index is a static argument), so switching stage never retraces within a stage,
and the stage index is saved in the checkpoint so a resumed run continues in
the right stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import ml_collections


@dataclasses.dataclass(frozen=True)
class Stage:
  """One curriculum phase.

  Attributes:
    index: position in ``config.stages``.
    name: the stage's name (for logs).
    start: first global step of the stage (inclusive).
    steps: number of steps in the stage.
    options: the stage's ConfigDict (method-specific fields).
  """

  index: int
  name: str
  start: int
  steps: int
  options: ml_collections.ConfigDict = dataclasses.field(
      compare=False, hash=False
  )

  @property
  def end(self) -> int:
    """First global step after the stage (exclusive)."""
    return self.start + self.steps

  def progress(self, step: Any) -> Any:
    """Fraction of the stage done at global ``step``, in [0, 1].

    Works on Python ints and on traced arrays (inside the jitted step).
    """
    frac = (step - self.start) / max(self.steps, 1)
    if isinstance(frac, float):
      return min(max(frac, 0.0), 1.0)
    return jnp.clip(frac, 0.0, 1.0)


class StageScheduler:
  """Maps global steps to curriculum stages built from ``config.stages``."""

  def __init__(self, stages: Sequence[ml_collections.ConfigDict]):
    if not stages:
      raise ValueError(
          "config.stages is empty: give at least one stage "
          "with `name` and `steps`."
      )
    built, start = [], 0
    for i, cfg in enumerate(stages):
      if not isinstance(cfg, ml_collections.ConfigDict):
        cfg = ml_collections.ConfigDict(dict(cfg))
      for key in ("name", "steps"):
        if key not in cfg:
          raise ValueError(
              f"config.stages[{i}] has no `{key}` field "
              f"(fields: {sorted(cfg.keys())})."
          )
      steps = int(cfg["steps"])
      if steps <= 0:
        raise ValueError(f"config.stages[{i}].steps={steps} must be > 0.")
      built.append(Stage(i, str(cfg["name"]), start, steps, cfg))
      start += steps
    self.stages: tuple[Stage, ...] = tuple(built)
    self.total_steps: int = start

  def __len__(self) -> int:
    return len(self.stages)

  def __getitem__(self, index: int) -> Stage:
    return self.stages[index]

  def stage_at(self, step: int) -> Stage:
    """The stage that global ``step`` (0-based, the next step to run) is in.

    Steps at or beyond ``total_steps`` belong to the last stage.
    """
    for stage in self.stages:
      if step < stage.end:
        return stage
    return self.stages[-1]
