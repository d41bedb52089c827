"""Evaluators: the shared metrics, run on a method's prediction functions.

Each evaluator is a function ``run(context, cfg) -> {key: float}`` in a
module of its own, configured by one entry of ``config.evals``: the entry's
``type`` field (or, without one, its name) picks the evaluator, its other
fields configure it, so a config may run one evaluator several times
(e.g. CMD's retrieval by relevance group and by exact image id):

  retrieval        MAP, Recall@K and median rank between two modalities
  linear_probe     softmax probes (and few-shot probes) on frozen embeddings
  multiple_choice  N-way caption choice per video
  sync_offset      offset and synchronisability accuracy, evidence hits

Metric keys follow one scheme (README "Metrics"): a direction between two
modalities is ``<query>2<gallery>`` with the method's modality names
(``map_audio2visual``, ``r1_text2video``), a per-modality value ends in the
modality (``probe_acc_audio``), a mean over both directions ends in
``_mean``; an entry's ``prefix`` is prepended to all of its keys.

Every evaluator reads predictions through an ``EvalContext``, which embeds
or predicts each split once per evaluation with ``sharded.map_split`` (one
process-sharded pass over the split's records) and caches the result for
the other evaluators of the same round.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from avjax.eval import sharded
from avjax.methods import base

Evaluator = Callable[["EvalContext", ml_collections.ConfigDict], dict]

_EVALUATORS: dict[str, str | Evaluator] = {
    "retrieval": "avjax.eval.evaluators.retrieval:run",
    "linear_probe": "avjax.eval.evaluators.linear_probe:run",
    "multiple_choice": "avjax.eval.evaluators.multiple_choice:run",
    "sync_offset": "avjax.eval.evaluators.sync_offset:run",
}


def register(name: str, evaluator: str | Evaluator) -> None:
  """Registers an evaluator function, or its "module:function" path."""
  if not name:
    raise ValueError("evaluator name must be non-empty")
  _EVALUATORS[name] = evaluator


def get(name: str) -> Evaluator:
  """The evaluator registered as ``name`` (imports its module)."""
  if name not in _EVALUATORS:
    raise ValueError(
        f"unknown evaluator {name!r}; registered: {sorted(_EVALUATORS)}"
    )
  entry = _EVALUATORS[name]
  if isinstance(entry, str):
    module, _, attr = entry.partition(":")
    entry = getattr(importlib.import_module(module), attr)
    _EVALUATORS[name] = entry
  return entry


class EvalContext:
  """One evaluation round of a method: its state, split and cached outputs.

  Attributes:
    method: the ``Method``.
    state: the ``TrainState`` evaluated (``state.params`` feed the
      prediction functions; ``state.aux`` is there for methods that keep
      learned state outside the model, e.g. a meta-weight net).
    split: the split being evaluated ("validation" or "test").
    plot_dir: where evaluators write PNGs (None: no plots).
  """

  def __init__(
      self,
      method: Any,
      state: Any,
      split: str,
      plot_dir: str | None = None,
  ):
    self.method = method
    self.state = state
    self.split = split
    self.plot_dir = plot_dir
    self._outputs: dict[str, dict[str, Any]] = {}

  @property
  def params(self) -> Any:
    return self.state.params

  def predictions(
      self, names: Sequence[str], split: str | None = None
  ) -> dict[str, Any]:
    """The named prediction functions' outputs over a whole split.

    Args:
      names: keys of ``method.predict_fns()`` (e.g. "embed_audio").
      split: default: the split under evaluation.

    Returns:
      ``{name: [N, ...]}`` for the requested (and earlier requested)
      predictions and every metadata key of ``method.eval_inputs``, in the
      split's order. Missing predictions are computed in one pass.
    """
    split = split or self.split
    cached = self._outputs.setdefault(split, {})
    missing = tuple(n for n in dict.fromkeys(names) if n not in cached)
    if missing:
      cached.update(
          sharded.map_split(
              base.jitted_predictions(self.method, missing),
              self.params,
              self.method.eval_source(split),
              self.method.eval_inputs,
              int(self.method.config.eval_batch_size),
          )
      )
    return cached

  def embeddings(
      self, modalities: Sequence[str], split: str | None = None
  ) -> dict[str, Any]:
    """``{modality: float32 [N, E]}`` plus the split's metadata."""
    out = self.predictions([f"embed_{m}" for m in modalities], split)
    clash = [m for m in modalities if m in out]
    if clash:
      raise ValueError(
          f"{type(self.method).__name__}.eval_inputs returns metadata named "
          f"like its modalities {clash}; rename the metadata"
      )
    return dict(out, **{m: out[f"embed_{m}"] for m in modalities})


def run_all(
    evals: ml_collections.ConfigDict, context: EvalContext
) -> dict[str, float]:
  """Runs every entry of ``config.evals``; one flat dict of their metrics.

  Raises:
    ValueError: two entries write the same metric key (give one a
      ``prefix``).
  """
  metrics: dict[str, float] = {}
  for name, cfg in evals.items():
    result = get(cfg.get("type", name))(context, cfg)
    clash = sorted(set(result) & set(metrics))
    if clash:
      raise ValueError(
          f"config.evals.{name} writes metric keys {clash} that an earlier "
          "evaluator wrote; give it a distinct `prefix`"
      )
    metrics.update({k: float(v) for k, v in result.items()})
  return metrics
