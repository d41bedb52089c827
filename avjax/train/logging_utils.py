"""Metric logging: TensorBoard scalars plus a JSON-lines log in the workdir."""

from __future__ import annotations

import importlib
import json
import logging as std_logging
import math
import os
import sys
from typing import Any, Mapping

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


def import_tensorboardx_without_torch() -> Any:
  """``tensorboardX``, imported without importing PyTorch.

  tensorboardX's writer module imports torch whenever it is installed, only
  to accept torch tensors; avjax writes Python floats. Importing torch would
  cost every training process seconds and a few hundred MB (more than half
  of importing ``avjax.train.loop``), so while
  tensorboardX loads, ``import torch`` fails as if torch were absent, and
  tensorboardX falls back to NumPy. A torch the process already imported is
  left alone, and ``import torch`` works again afterwards.
  """
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    return importlib.import_module("tensorboardX")
  sys.modules["torch"] = None  # type: ignore[assignment]  # import fails
  try:
    return importlib.import_module("tensorboardX")
  finally:
    if "torch" in sys.modules and sys.modules["torch"] is None:
      del sys.modules["torch"]


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
      tensorboardx = import_tensorboardx_without_torch()
      self._tb = tensorboardx.SummaryWriter(
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
