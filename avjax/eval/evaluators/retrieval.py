"""Retrieval evaluator: MAP, Recall@K (and median rank) both ways.

Config (one ``config.evals`` entry; ``configs/common.py:retrieval_eval``):
  query, gallery: the two modalities (method modality names); metrics are
    computed in both directions, keys ``<measure>_<query>2<gallery>`` and
    ``<measure>_<gallery>2<query>``, and their ``_mean``.
  relevance: the metadata key whose equal values make a query and an item
    relevant (class labels, image ids, video ids).
  groups: "" or a metadata key of coarser relevance groups (AV-digits
    captions: canvases that share a digit sequence are relevant to each
    other; see ``avjax.eval.retrieval.cross_modal_retrieval_metrics``).
  gallery_unique: "" or a metadata key; the gallery side then holds each
    value once (its first row), e.g. each image once when several spoken
    captions share it. Applied to the ``gallery`` modality only.
  ks: Recall@K cut-offs.
  median_rank: also ``medr_<q>2<g>``: median 1-based rank of the first
    relevant item (the MSR-VTT convention).
  prefix: prepended to every key.
  plot: write ``plots/precision_recall<prefix>.png`` (test split).
"""

from __future__ import annotations

import os

import numpy as np

from avjax.eval import retrieval


def run(context, cfg) -> dict[str, float]:
  """Retrieval metrics of ``context``'s split (see module docstring)."""
  q, g = cfg.query, cfg.gallery
  metric = context.method.similarity
  out = context.embeddings((q, g))
  for key in [cfg.relevance] + [
      k for k in (cfg.groups, cfg.gallery_unique) if k
  ]:
    if key not in out:
      raise ValueError(
          f"retrieval evaluator: {type(context.method).__name__}'s "
          f"evaluation inputs have no metadata {key!r} (they have "
          f"{sorted(k for k in out if not k.startswith('embed_'))})"
      )
  rows = np.arange(len(out[g]))
  if cfg.gallery_unique:
    _, first = np.unique(np.asarray(out[cfg.gallery_unique]), return_index=True)
    rows = np.sort(first)
  ids = np.asarray(out[cfg.relevance])
  groups = np.asarray(out[cfg.groups]) if cfg.groups else None
  result = retrieval.cross_modal_retrieval_metrics(
      out[q],
      out[g][rows],
      ids,
      ids[rows],
      ks=tuple(cfg.ks),
      metric=metric,
      names=(q, g),
      audio_groups=groups,
      visual_groups=None if groups is None else groups[rows],
  )
  if cfg.median_rank:
    relevance = (ids if groups is None else groups)[:, None] == (
        ids if groups is None else groups
    )[rows][None, :]
    scores = retrieval.similarity_matrix(out[q], out[g][rows], metric)
    for tag, s, rel in (
        (f"{q}2{g}", scores, relevance),
        (f"{g}2{q}", scores.T, relevance.T),
    ):
      result[f"medr_{tag}"] = float(
          np.median(retrieval.first_relevant_rank(s, rel) + 1)
      )
  if cfg.plot and context.plot_dir:
    _plot_precision_recall(context, out, rows, ids, groups, cfg)
  return {f"{cfg.prefix}{k}": v for k, v in result.items()}


def _plot_precision_recall(context, out, rows, ids, groups, cfg) -> None:
  from avjax.eval import plots  # pylint: disable=import-outside-toplevel

  q, g = cfg.query, cfg.gallery
  rel_ids = ids if groups is None else groups
  relevance = rel_ids[:, None] == rel_ids[rows][None, :]
  metric = context.method.similarity
  scores = {
      f"{q}→{g}": retrieval.similarity_matrix(out[q], out[g][rows], metric),
      f"{g}→{q}": retrieval.similarity_matrix(out[g][rows], out[q], metric),
  }
  plots.plot_precision_recall(
      scores,
      {f"{q}→{g}": relevance, f"{g}→{q}": relevance.T},
      os.path.join(context.plot_dir, f"precision_recall{cfg.prefix}.png"),
      title=(
          f"{type(context.method).__name__} precision–recall "
          f"({context.split})"
      ),
  )
