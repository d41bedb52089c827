"""Linear-probe evaluator: softmax probes on frozen embeddings.

For each modality, a linear softmax classifier is fitted on train-split
embeddings (L2 strength picked on validation, ``avjax.eval.linear_probe``)
and scored on the evaluated split (on validation itself when that is the
split). Optionally the same probe is fitted on only a few labelled clips
per class, averaged over several draws (few-shot).

Config (one ``config.evals`` entry; ``configs/common.py:linear_probe_eval``):
  modalities: the modalities probed.
  label: metadata key of the class labels; num_classes: their number.
  l2_grid, steps: the probe's L2 strengths and Adam steps.
  fit_on: "full" (the whole train split) or "subset" (only the rows the
    method trained on, ``Method.train_subset``).
  fewshot_per_class: clips per class of the few-shot probes (0: none);
  fewshot_draws: how many draws are averaged. Draw d has its own random
    stream and avoids the clips of a training subset (their labels may have
    steered training); with the whole split every clip was trained on, and
    draws then come from all of them.

Keys: ``probe_acc_<m>``, ``probe_val_acc_<m>``, ``fewshot_acc_<m>``.
"""

from __future__ import annotations

import functools

import numpy as np

from avjax.data.pipeline import subsets
from avjax.eval import linear_probe as probe_lib

_FIT_ON = ("full", "subset")


def run(context, cfg) -> dict[str, float]:
  """Probe accuracies of ``context``'s split (see module docstring)."""
  if cfg.fit_on not in _FIT_ON:
    raise ValueError(
        f"linear_probe evaluator: fit_on={cfg.fit_on!r} is not one of "
        f"{list(_FIT_ON)}"
    )
  modalities = tuple(cfg.modalities)
  full_train = context.embeddings(modalities, "train")
  val = context.embeddings(modalities, "validation")
  test = (
      val
      if context.split == "validation"
      else context.embeddings(modalities, context.split)
  )
  trained = context.method.train_subset()
  labels = np.asarray(full_train[cfg.label])
  train_rows = (
      trained
      if cfg.fit_on == "subset" and trained is not None
      else np.arange(len(labels))
  )
  probe = functools.partial(
      probe_lib.linear_probe,
      num_classes=int(cfg.num_classes),
      l2_grid=tuple(cfg.l2_grid),
      steps=int(cfg.steps),
  )

  def fit(m, rows):
    return probe(
        full_train[m][rows],
        labels[rows],
        val[m],
        np.asarray(val[cfg.label]),
        test[m],
        np.asarray(test[cfg.label]),
    )

  out = {}
  for m in modalities:
    r = fit(m, train_rows)
    out[f"probe_acc_{m}"] = r["accuracy"]
    out[f"probe_val_acc_{m}"] = r["val_accuracy"]
  shots = int(cfg.fewshot_per_class)
  if shots:
    exclude = (
        None if trained is None or len(trained) == len(labels) else trained
    )
    accs = {m: [] for m in modalities}
    for draw in range(int(cfg.fewshot_draws)):
      rows = subsets.fewshot_indices(labels, shots, draw, exclude=exclude)
      for m in modalities:
        accs[m].append(fit(m, rows)["accuracy"])
    for m, values in accs.items():
      out[f"fewshot_acc_{m}"] = float(np.mean(values))
  return out
