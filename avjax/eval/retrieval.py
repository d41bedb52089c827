"""Retrieval metrics: similarity, exact average precision, MAP and Recall@K.

Inputs are NumPy (or anything `np.asarray` accepts); metrics come back as
NumPy arrays or Python floats. Work is done in row chunks of about 2**24
scores, so a 10k x 10k evaluation never holds the full score matrix in one
piece, and the embedding-based entry points (`mean_average_precision`,
`cross_modal_retrieval_metrics`) never build it at all:

* similarities are computed with `jax.numpy` under `jax.jit` on the default
  device;
* each chunk is ranked on the accelerator when there is one, or with NumPy
  on the host when JAX runs on CPU (XLA's CPU sort is several times slower
  than NumPy's); `RANK_ON_DEVICE` overrides the choice, both give the same
  ranking. On CPU nearly all of the time of a large evaluation is this
  sorting;
* from the ranking only the positions of the relevant keys are kept, and AP,
  first-hit ranks and precision-recall curves are computed from them in
  float64.

Decisions the papers leave open:

* **Ties.** Keys with equal scores are ranked by key index (lower index first):
  the ranking is a stable sort of the negated scores. Average precision is then
  computed exactly over that single ranked list. This differs from
  `sklearn.metrics.average_precision_score`, which treats a group of tied
  scores as one threshold; the two agree whenever a query's scores are
  distinct.
* **Queries without a relevant key.** Their AP and first-hit rank are
  undefined; `average_precision_per_query` gives NaN for them, and every mean
  (MAP, Recall@K) is taken over the remaining queries only. Their number is
  logged as a warning. If no query has a relevant key the mean is NaN.
* **Relevance.** Given by equality of ids: class labels for TSTL-CA (a
  retrieved item is relevant when it has the query's class), image ids for CMD
  (a spoken caption is relevant to its image; for image->speech any caption of
  the image counts as a hit). `cross_modal_retrieval_metrics` also takes
  optional relevance groups, one group id per item, coarser than the ids:
  items with equal group ids are relevant to each other. AV-digits captions
  group canvases by their digit sequence, since a caption says only the
  sequence and cannot tell apart two canvases that share it; for Flickr8k
  Audio and SpokenCOCO the group is the image id, i.e. plain id relevance.
* **Precision.** Scores are float32 (matmuls at `Precision.HIGHEST`), so two
  keys whose similarities differ by less than float32 resolution tie.
* **Means.** `map_mean` is the mean of the two directions' MAP; `r_mean` is
  the mean of every Recall@K over both directions (also given per k as
  `r{k}_mean`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "similarity_matrix",
    "average_precision_per_query",
    "first_relevant_rank",
    "mean_average_precision",
    "recall_at_k",
    "interpolated_precision_recall",
    "cross_modal_retrieval_metrics",
]

_METRICS = ("cosine", "euclidean")
# Where rankings are sorted: None = on the accelerator when there is one,
# else with NumPy on the host; True / False force one. Both rank identically.
RANK_ON_DEVICE: bool | None = None
# Elements of one [chunk, M] score block; 2**24 float32 = 64 MiB.
_CHUNK_ELEMENTS = 1 << 24
_NORM_EPS = 1e-12


# ----------------------------------------------------------------------------
# Input checking
# ----------------------------------------------------------------------------
def _as_2d_float(x: Any, name: str) -> np.ndarray:
  arr = np.asarray(x)
  if arr.ndim != 2:
    raise ValueError(f"{name} must be 2-D [rows, dim]; got shape {arr.shape}")
  if 0 in arr.shape:
    raise ValueError(f"{name} is empty; got shape {arr.shape}")
  if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
    raise ValueError(f"{name} must be real-valued; got dtype {arr.dtype}")
  arr = arr.astype(np.float32, copy=False)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} contains NaN or inf values")
  return arr


def _check_metric(metric: str) -> None:
  if metric not in _METRICS:
    raise ValueError(f"metric must be one of {_METRICS}; got {metric!r}")


def _check_scores_relevance(
    scores: Any, relevance: Any
) -> tuple[np.ndarray, np.ndarray]:
  scores = _as_2d_float(scores, "scores")
  relevance = np.asarray(relevance)
  if relevance.shape != scores.shape:
    raise ValueError(
        f"relevance has shape {relevance.shape}, expected the shape of scores "
        f"{scores.shape}"
    )
  if relevance.dtype != np.bool_:
    if not np.all((relevance == 0) | (relevance == 1)):
      raise ValueError(
          f"relevance must be boolean (or 0/1); got dtype {relevance.dtype} "
          "with other values"
      )
    relevance = relevance.astype(bool)
  return scores, relevance


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
  ks = tuple(ks)
  if not ks:
    raise ValueError("ks must name at least one cut-off")
  for k in ks:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f"every k in ks must be a positive int; got ks={ks}")
  return tuple(int(k) for k in ks)


def _ids_to_codes(
    query_ids: Any,
    key_ids: Any,
    query_name: str,
    key_name: str,
    num_queries: int,
    num_keys: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Maps two id arrays (any comparable dtype) onto shared int32 codes."""
  query_ids = np.asarray(query_ids)
  key_ids = np.asarray(key_ids)
  if query_ids.shape != (num_queries,):
    raise ValueError(
        f"{query_name} has shape {query_ids.shape}, expected ({num_queries},) "
        "to match the number of query embeddings"
    )
  if key_ids.shape != (num_keys,):
    raise ValueError(
        f"{key_name} has shape {key_ids.shape}, expected ({num_keys},) "
        "to match the number of key embeddings"
    )
  # A shared code book keeps equality intact and makes int64 / string ids
  # safe under JAX's default 32-bit mode.
  _, codes = np.unique(
      np.concatenate([query_ids, key_ids]), return_inverse=True
  )
  codes = codes.astype(np.int32)
  return codes[:num_queries], codes[num_queries:]


def _check_groups(
    ids: np.ndarray, groups: Any, ids_name: str, groups_name: str
) -> np.ndarray:
  """Checks that groups [N] are coarser than ids [N] (equal ids share one)."""
  groups = np.asarray(groups)
  if groups.shape != ids.shape:
    raise ValueError(
        f"{groups_name} has shape {groups.shape}, expected {ids.shape} to "
        f"match {ids_name}"
    )
  return groups


def _check_groups_refine_ids(ids: np.ndarray, groups: np.ndarray) -> None:
  """Raises if two items with the same id have different group ids."""
  _, id_codes = np.unique(ids, return_inverse=True)
  _, group_codes = np.unique(groups, return_inverse=True)
  pairs = np.unique(np.stack([id_codes, group_codes], axis=1), axis=0)
  if pairs.shape[0] != np.unique(id_codes).size:
    counts = np.bincount(pairs[:, 0])
    bad = np.unique(ids)[np.argmax(counts)]
    raise ValueError(
        f"relevance groups must be coarser than the ids: id {bad} appears "
        f"with {counts.max()} different group ids"
    )


def _warn_no_relevant(ranking: "_Ranking", what: str) -> None:
  count = int(np.sum(~ranking.valid))
  if count:
    logging.warning(
        "%s: %d of %d queries have no relevant key; they are excluded from "
        "the mean",
        what,
        count,
        ranking.valid.size,
    )


# ----------------------------------------------------------------------------
# Ranking
# ----------------------------------------------------------------------------
def _similarity(queries: jax.Array, keys: jax.Array, metric: str) -> jax.Array:
  """[n, D] x [M, D] -> [n, M] similarity, higher = more similar."""
  hi = jax.lax.Precision.HIGHEST
  if metric == "cosine":
    qn = queries / jnp.maximum(
        jnp.linalg.norm(queries, axis=-1, keepdims=True), _NORM_EPS
    )
    kn = keys / jnp.maximum(
        jnp.linalg.norm(keys, axis=-1, keepdims=True), _NORM_EPS
    )
    return jnp.matmul(qn, kn.T, precision=hi)
  sq = (
      jnp.sum(queries**2, axis=-1)[:, None]
      + jnp.sum(keys**2, axis=-1)[None]
      - 2.0 * jnp.matmul(queries, keys.T, precision=hi)
  )
  return -jnp.sqrt(jnp.maximum(sq, 0.0))


@functools.partial(jax.jit, static_argnames=("metric",))
def _similarity_block(queries, keys, metric):
  return _similarity(queries, keys, metric)


def _device_ranked(scores: jax.Array, relevance: jax.Array) -> jax.Array:
  """Relevance reordered by descending score; ties keep key-index order."""
  _, ranked = jax.lax.sort(
      (-scores, relevance.astype(jnp.int8)),
      dimension=1,
      num_keys=1,
      is_stable=True,
  )
  return ranked


_device_ranked_block = jax.jit(_device_ranked)


@functools.partial(jax.jit, static_argnames=("metric",))
def _device_ranked_block_from_embeddings(
    queries, query_codes, keys, key_codes, metric
):
  scores = _similarity(queries, keys, metric)
  return _device_ranked(scores, query_codes[:, None] == key_codes[None, :])


def _host_ranked(scores: np.ndarray, relevance: np.ndarray) -> np.ndarray:
  """NumPy twin of `_device_ranked` (same order, ties by key index)."""
  # At 10k keys nearly every float32 row holds a few exact ties, so a stable
  # sort is needed for the documented tie order on almost every row anyway.
  order = np.argsort(-scores, axis=1, kind="stable")
  return np.take_along_axis(relevance, order, axis=1)


def _rank_on_device() -> bool:
  if RANK_ON_DEVICE is None:
    return jax.default_backend() != "cpu"
  return bool(RANK_ON_DEVICE)


def _chunk_rows(num_rows: int, num_keys: int) -> int:
  return max(1, min(num_rows, _CHUNK_ELEMENTS // max(num_keys, 1)))


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  if x.shape[0] == rows:
    return x
  pad = [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return np.pad(x, pad)


def _row_chunks(num_rows: int, num_keys: int):
  """Yields (start, stop, chunk) covering the rows in equal-size chunks."""
  chunk = _chunk_rows(num_rows, num_keys)
  for start in range(0, num_rows, chunk):
    yield start, min(start + chunk, num_rows), chunk


class _Ranking:
  """Positions of the relevant keys in every query's ranked list.

  Attributes:
    num_keys: M.
    num_relevant: int64 [N], R per query.
    cols: int64 [sum R], 0-based ranks of relevant keys, row-major, ascending
      within a row.
    rows: int64 [sum R], the query of each entry of `cols`.
    starts: int64 [N], offset of each query's first entry in `cols`.
  """

  def __init__(self, num_keys: int, row_parts, col_parts, num_rows: int):
    self.num_keys = num_keys
    self.rows = np.concatenate(row_parts).astype(np.int64)
    self.cols = np.concatenate(col_parts).astype(np.int64)
    self.num_relevant = np.bincount(self.rows, minlength=num_rows)
    self.starts = np.cumsum(self.num_relevant) - self.num_relevant

  @property
  def valid(self) -> np.ndarray:
    return self.num_relevant > 0

  def within(self) -> np.ndarray:
    """1-based index of each relevant entry among its query's hits."""
    return np.arange(self.cols.size) - self.starts[self.rows] + 1

  def average_precision(self) -> np.ndarray:
    """float64 [N]: (1/R) sum_t t / rank_t; NaN where R = 0."""
    contrib = self.within() / (self.cols + 1.0)
    sums = np.bincount(
        self.rows, weights=contrib, minlength=self.num_relevant.size
    )
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(self.valid, sums / self.num_relevant, np.nan)

  def first_rank(self) -> np.ndarray:
    """int64 [N]: 0-based rank of the first relevant key; M where R = 0."""
    first = np.full(self.num_relevant.size, self.num_keys, dtype=np.int64)
    first[self.valid] = self.cols[self.starts[self.valid]]
    return first

  def interpolated_precision(self, levels: np.ndarray) -> np.ndarray:
    """float64 [N, L]: max precision over ranks with recall >= each level.

    Precision only rises at relevant ranks, so the maximum over ranks at or
    after the t-th hit equals the maximum over hits t, t+1, ..., R.
    """
    num_rows = self.num_relevant.size
    out = np.full((num_rows, levels.size), np.nan)
    if self.cols.size == 0:
      return out
    precision = self.within() / (self.cols + 1.0)
    # Segmented suffix maximum: offsets that shrink with the row index keep
    # a later query's values (all < 1) from leaking into an earlier one.
    offset = 2.0 * (num_rows - self.rows)
    suffix = np.maximum.accumulate((precision + offset)[::-1])[::-1] - offset
    valid = self.valid
    hit = np.ceil(levels[None, :] * self.num_relevant[valid][:, None] - 1e-9)
    hit = np.clip(hit.astype(np.int64), 1, None)
    out[valid] = suffix[self.starts[valid][:, None] + hit - 1]
    return out


def _ranking_from_scores(scores: np.ndarray, relevance: np.ndarray) -> _Ranking:
  rows, cols = [], []
  for start, stop, chunk in _row_chunks(scores.shape[0], scores.shape[1]):
    if _rank_on_device():
      ranked = np.asarray(
          _device_ranked_block(
              _pad_rows(scores[start:stop], chunk),
              _pad_rows(relevance[start:stop], chunk),
          )
      )[: stop - start]
    else:
      ranked = _host_ranked(scores[start:stop], relevance[start:stop])
    r, c = np.nonzero(ranked)
    rows.append(r + start)
    cols.append(c)
  return _Ranking(scores.shape[1], rows, cols, scores.shape[0])


def _ranking_from_embeddings(
    query_emb,
    query_ids,
    key_emb,
    key_ids,
    metric,
    query_names=("query_emb", "query_labels"),
    key_names=("key_emb", "key_labels"),
) -> _Ranking:
  _check_metric(metric)
  queries = _as_2d_float(query_emb, query_names[0])
  keys = _as_2d_float(key_emb, key_names[0])
  if queries.shape[1] != keys.shape[1]:
    raise ValueError(
        f"{query_names[0]} has shape {queries.shape} and {key_names[0]} has "
        f"shape {keys.shape}; their embedding widths differ"
    )
  q_codes, k_codes = _ids_to_codes(
      query_ids,
      key_ids,
      query_names[1],
      key_names[1],
      queries.shape[0],
      keys.shape[0],
  )
  keys_dev = jnp.asarray(keys)
  k_codes_dev = jnp.asarray(k_codes)
  on_device = _rank_on_device()
  rows, cols = [], []
  for start, stop, chunk in _row_chunks(queries.shape[0], keys.shape[0]):
    q = _pad_rows(queries[start:stop], chunk)
    if on_device:
      qc = _pad_rows(q_codes[start:stop], chunk)
      ranked = np.asarray(
          _device_ranked_block_from_embeddings(
              q, qc, keys_dev, k_codes_dev, metric
          )
      )[: stop - start]
    else:
      scores = np.asarray(_similarity_block(q, keys_dev, metric))[
          : stop - start
      ]
      relevance = q_codes[start:stop, None] == k_codes[None, :]
      ranked = _host_ranked(scores, relevance)
    r, c = np.nonzero(ranked)
    rows.append(r + start)
    cols.append(c)
  return _Ranking(keys.shape[0], rows, cols, queries.shape[0])


def _mean_over_valid(values: np.ndarray, valid: np.ndarray) -> float:
  if not np.any(valid):
    return float("nan")
  return float(np.mean(values[valid], dtype=np.float64))


def _recall_from_ranking(
    ranking: _Ranking, ks: tuple[int, ...]
) -> dict[int, float]:
  first = ranking.first_rank()
  return {
      k: _mean_over_valid((first < k).astype(np.float64), ranking.valid)
      for k in ks
  }


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------
def similarity_matrix(
    queries: Any, keys: Any, metric: str = "cosine"
) -> np.ndarray:
  """Similarity of every query to every key; higher means more similar.

  Args:
    queries: [N, D] embeddings (need not be normalised).
    keys: [M, D] embeddings.
    metric: "cosine" (cosine similarity in [-1, 1]; a zero vector has
      similarity 0 to everything) or "euclidean" (negative L2 distance).

  Returns:
    float32 np.ndarray [N, M].
  """
  _check_metric(metric)
  queries = _as_2d_float(queries, "queries")
  keys = _as_2d_float(keys, "keys")
  if queries.shape[1] != keys.shape[1]:
    raise ValueError(
        f"queries has shape {queries.shape} and keys has shape {keys.shape}; "
        "their embedding widths differ"
    )
  keys_dev = jnp.asarray(keys)
  out = np.empty((queries.shape[0], keys.shape[0]), dtype=np.float32)
  for start, stop, chunk in _row_chunks(queries.shape[0], keys.shape[0]):
    block = _similarity_block(
        _pad_rows(queries[start:stop], chunk), keys_dev, metric
    )
    out[start:stop] = np.asarray(block)[: stop - start]
  return out


def average_precision_per_query(scores: Any, relevance: Any) -> np.ndarray:
  """Exact (non-interpolated) average precision of each query's ranking.

  Keys are ranked by descending score, ties by ascending key index; AP is
  (1/R) * sum over relevant ranks j of precision@j, R = number of relevant
  keys.

  Args:
    scores: [N, M] similarities (higher = ranked earlier).
    relevance: bool [N, M], True where key m is relevant to query n.

  Returns:
    float64 np.ndarray [N]; NaN for queries with no relevant key.
  """
  scores, relevance = _check_scores_relevance(scores, relevance)
  return _ranking_from_scores(scores, relevance).average_precision()


def first_relevant_rank(scores: Any, relevance: Any) -> np.ndarray:
  """0-based rank of each query's best-ranked relevant key.

  Same ranking as `average_precision_per_query`.

  Args:
    scores: [N, M] similarities.
    relevance: bool [N, M].

  Returns:
    int64 np.ndarray [N]; M for queries with no relevant key.
  """
  scores, relevance = _check_scores_relevance(scores, relevance)
  return _ranking_from_scores(scores, relevance).first_rank()


def recall_at_k(
    scores: Any, relevance: Any, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
  """Fraction of queries with at least one relevant key in their top k.

  Args:
    scores: [N, M] similarities.
    relevance: bool [N, M].
    ks: positive cut-offs; k > M counts the whole list.

  Returns:
    {k: recall} as Python floats, over queries that have a relevant key
    (NaN if none does).
  """
  ks = _check_ks(ks)
  scores, relevance = _check_scores_relevance(scores, relevance)
  ranking = _ranking_from_scores(scores, relevance)
  _warn_no_relevant(ranking, "recall_at_k")
  return _recall_from_ranking(ranking, ks)


def mean_average_precision(
    query_emb: Any,
    query_labels: Any,
    key_emb: Any,
    key_labels: Any,
    metric: str = "cosine",
) -> float:
  """MAP of retrieving keys for each query, relevant = same label.

  This is TSTL-CA's MAP: every key is ranked, a key is relevant when its
  label equals the query's.

  Args:
    query_emb: [N, D] query embeddings.
    query_labels: [N] labels (any dtype that compares by equality).
    key_emb: [M, D] key embeddings.
    key_labels: [M] labels.
    metric: "cosine" or "euclidean".

  Returns:
    Mean AP over queries with at least one relevant key, as a Python float
    (NaN if none has).
  """
  ranking = _ranking_from_embeddings(
      query_emb, query_labels, key_emb, key_labels, metric
  )
  _warn_no_relevant(ranking, "mean_average_precision")
  return _mean_over_valid(ranking.average_precision(), ranking.valid)


def interpolated_precision_recall(
    scores: Any, relevance: Any, num_levels: int = 101
) -> tuple[np.ndarray, np.ndarray]:
  """Mean interpolated precision at evenly spaced recall levels.

  For each query p_interp(r) = max over ranks with recall >= r of the
  precision at that rank; the curve is the mean over queries that have a
  relevant key.

  Args:
    scores: [N, M] similarities.
    relevance: bool [N, M].
    num_levels: number of recall levels in [0, 1] (>= 2).

  Returns:
    (recall [num_levels], precision [num_levels]) float64 arrays; precision
    is NaN everywhere if no query has a relevant key.
  """
  if (
      isinstance(num_levels, bool)
      or not isinstance(num_levels, (int, np.integer))
      or num_levels < 2
  ):
    raise ValueError(f"num_levels must be an int >= 2; got {num_levels!r}")
  scores, relevance = _check_scores_relevance(scores, relevance)
  ranking = _ranking_from_scores(scores, relevance)
  recall = np.linspace(0.0, 1.0, int(num_levels))
  per_query = ranking.interpolated_precision(recall)
  if not np.any(ranking.valid):
    return recall, np.full(int(num_levels), np.nan)
  return recall, np.mean(per_query[ranking.valid], axis=0)


def cross_modal_retrieval_metrics(
    audio_emb: Any,
    visual_emb: Any,
    audio_ids: Any,
    visual_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
    metric: str = "cosine",
    names: tuple[str, str] = ("a", "v"),
    prefix: str = "",
    audio_groups: Any = None,
    visual_groups: Any = None,
) -> dict[str, float]:
  """MAP and Recall@K in both directions between two modalities.

  Relevance is id equality: pass class labels for class-level retrieval
  (TSTL-CA, AVE/VEGAS) or image ids for caption retrieval (CMD: several
  spoken captions share one image id, so image->speech scores a hit when any
  caption of the image is retrieved). With relevance groups, a key is
  relevant to a query when their group ids are equal (for MAP and Recall@K,
  both directions); groups must be coarser than the ids (items with equal
  ids have equal group ids), so groups equal to the ids change nothing.

  Args:
    audio_emb: [Na, D] embeddings of the first modality (audio / speech).
    visual_emb: [Nv, D] embeddings of the second modality (visual / image).
    audio_ids: [Na] labels or ids of the first modality.
    visual_ids: [Nv] labels or ids of the second modality.
    ks: Recall@K cut-offs.
    metric: "cosine" or "euclidean".
    names: short names of the two modalities used in the keys, e.g.
      ("a", "v") for TSTL-CA or ("s", "i") for speech/image.
    prefix: prepended to every key (e.g. "test/").
    audio_groups: optional [Na] relevance group ids of the first modality
      (e.g. AV-digits: the digit sequence of the caption's canvas); give
      both or neither.
    visual_groups: optional [Nv] relevance group ids of the second modality.

  Returns:
    Flat dict of Python floats with keys (for names ("a", "v")):
    "map_a2v", "map_v2a", "map_mean" (mean of the two), "r{k}_a2v",
    "r{k}_v2a", "r{k}_mean" for each k, and "r_mean" (mean of all Recall@K
    values over both directions).
  """
  ks = _check_ks(ks)
  if (
      len(names) != 2
      or not all(isinstance(n, str) and n for n in names)
      or names[0] == names[1]
  ):
    raise ValueError(
        f"names must be two distinct non-empty strings; got {names!r}"
    )
  first, second = names
  if (audio_groups is None) != (visual_groups is None):
    raise ValueError(
        "give both audio_groups and visual_groups or neither; got only "
        + ("audio_groups" if visual_groups is None else "visual_groups")
    )
  if audio_groups is not None:
    audio_ids, visual_ids = np.asarray(audio_ids), np.asarray(visual_ids)
    audio_groups = _check_groups(
        audio_ids, audio_groups, "audio_ids", "audio_groups"
    )
    visual_groups = _check_groups(
        visual_ids, visual_groups, "visual_ids", "visual_groups"
    )
    _check_groups_refine_ids(
        np.concatenate([audio_ids, visual_ids]),
        np.concatenate([audio_groups, visual_groups]),
    )
    # Only equality matters from here on: the groups stand in for the ids.
    audio_ids, visual_ids = audio_groups, visual_groups
  directions = {
      f"{first}2{second}": (
          audio_emb,
          audio_ids,
          visual_emb,
          visual_ids,
          ("audio_emb", "audio_ids"),
          ("visual_emb", "visual_ids"),
      ),
      f"{second}2{first}": (
          visual_emb,
          visual_ids,
          audio_emb,
          audio_ids,
          ("visual_emb", "visual_ids"),
          ("audio_emb", "audio_ids"),
      ),
  }
  out: dict[str, float] = {}
  for tag, (q, qi, k, ki, q_names, k_names) in directions.items():
    ranking = _ranking_from_embeddings(q, qi, k, ki, metric, q_names, k_names)
    _warn_no_relevant(ranking, f"retrieval {tag}")
    out[f"map_{tag}"] = _mean_over_valid(
        ranking.average_precision(), ranking.valid
    )
    for k_cut, value in _recall_from_ranking(ranking, ks).items():
      out[f"r{k_cut}_{tag}"] = value
  tags = list(directions)
  out["map_mean"] = float(np.mean([out[f"map_{t}"] for t in tags]))
  for k_cut in ks:
    out[f"r{k_cut}_mean"] = float(np.mean([out[f"r{k_cut}_{t}"] for t in tags]))
  out["r_mean"] = float(
      np.mean([out[f"r{k_cut}_{t}"] for k_cut in ks for t in tags])
  )
  return {f"{prefix}{key}": value for key, value in out.items()}
