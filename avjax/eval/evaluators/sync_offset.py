"""Sync-offset evaluator: offset and synchronisability accuracy.

For methods whose prediction function returns, per clip, offset-class
logits and 2-way synchronisability logits (Synchformer's
``predict_fns()["sync_offsets"]``), on evaluation clips whose metadata hold
the true offset class and synchronisability label.

Config (``configs/common.py:sync_offset_eval``):
  predict: the prediction function's name.
  offset_outputs: output keys of offset logits [N, C]; "offset" gives
    ``offset_top1`` and ``offset_top1_tol1`` (within ±``tolerance``
    classes), another key "offset<suffix>" gives the same keys with the
    suffix (e.g. "offset_after_stage3" → ``offset_top1_after_stage3``).
  offset_label: metadata key of the true offset class [N].
  tolerance: classes of the ±k accuracy (the paper's "±1 class").
  sync_output: "" or the output key of synchronisability logits [N, 2]
    (``sync_acc``, and ``sync_auc`` of the softmax probability of class 1).
  sync_label: metadata key of the synchronisability label [N] (1: in sync).
  prefix: prepended to every key.
"""

from __future__ import annotations

import numpy as np

from avjax.eval import sync as sync_eval


def _softmax_positive(logits: np.ndarray) -> np.ndarray:
  z = np.asarray(logits, np.float64)
  z = np.exp(z - z.max(axis=1, keepdims=True))
  return z[:, 1] / z.sum(axis=1)


def run(context, cfg) -> dict[str, float]:
  """Offset / synchronisability metrics of ``context``'s split."""
  out = context.predictions([cfg.predict])
  pred = out[cfg.predict]
  labels = np.asarray(out[cfg.offset_label])
  result = {}
  for name in cfg.offset_outputs:
    if not name.startswith("offset"):
      raise ValueError(
          f"sync_offset evaluator: offset output {name!r} must start with "
          "'offset'"
      )
    suffix = name[len("offset") :]
    result[f"offset_top1{suffix}"] = sync_eval.offset_accuracy(
        pred[name], labels
    )
    result[f"offset_top1_tol{int(cfg.tolerance)}{suffix}"] = (
        sync_eval.offset_accuracy(pred[name], labels, tolerance=cfg.tolerance)
    )
  if cfg.sync_output:
    sync_labels = np.asarray(out[cfg.sync_label])
    logits = np.asarray(pred[cfg.sync_output])
    result["sync_acc"] = float(np.mean(np.argmax(logits, 1) == sync_labels))
    result["sync_auc"] = sync_eval.roc_auc(
        _softmax_positive(logits), sync_labels
    )
  return {f"{cfg.prefix}{k}": v for k, v in result.items()}
