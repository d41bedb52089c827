"""Metric logging: TensorBoard scalars plus a JSON-lines log in the workdir."""

from __future__ import annotations

import json
import math
import os
from typing import Mapping

import logging as std_logging

import tensorboardX
from absl import logging

# Libraries whose INFO records drown the run's own log lines.
_CHATTY_LIBRARIES = ("orbax", "jax/_src", "grain")


class _DropLibraryInfo(std_logging.Filter):

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or not any(
        f"/{lib}/" in record.pathname for lib in _CHATTY_LIBRARIES
    )


def quiet_library_logs() -> None:
  """Hides INFO logs of orbax/jax/grain (warnings and errors still show)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryInfo) for f in handler.filters):
    handler.addFilter(_DropLibraryInfo())


class MetricWriter:
  """Writes scalars to ``<workdir>/tensorboard`` and ``<workdir>/log.jsonl``.

  Only the host process (index 0) writes; other processes get a writer whose
  calls do nothing, so callers need no branching.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.jsonl_path = os.path.join(workdir, "log.jsonl")
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._tb = tensorboardX.SummaryWriter(
          os.path.join(workdir, "tensorboard")
      )
      self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    for k, v in clean.items():
      self._tb.add_scalar(k, v, step)
    record = {"step": int(step)}
    record.update(
        {k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}
    )
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
