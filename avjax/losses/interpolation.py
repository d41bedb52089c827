"""Synthetic hard negatives by interpolation (TSTL-CA stage 2).

TSTL-CA (arXiv 2310.13451) augments the embedding space with interpolated
points to create hard negatives that are otherwise scarce, then mines hard
triplets in the augmented space. The paper gives no formula; we take the
HDML / Embedding Expansion form: a synthetic negative lies on the segment
from a real negative n towards the anchor a,

    n' = n + α (a − n) = (1 − α) n + α a,    0 ≤ α < 1,

keeps n's label, and is therefore a negative of a that is closer by the
factor (1 − α): d(a, n') = (1 − α) d(a, n) for any norm-induced distance.
Raising α over training (the curriculum) makes the negatives harder.

Decisions:
  * α must be < 1: at α = 1 the synthetic point collapses onto the anchor
    (d = 0, and the anchor–negative gradient vanishes). Python / concrete
    values are checked eagerly; traced values (schedules under ``jit``) are
    used as given.
  * No stop-gradient: n' is a differentiable function of both the anchor and
    the real negative, so the hinge on d(a, n') = (1 − α) d(a, n) pushes the
    real negative away from the anchor with weight (1 − α), as in HDML.
  * Each anchor is scored only against its **own** synthetic negatives
    (:func:`interpolated_hard_triplet`): a synthetic point made for anchor a
    from a negative of class c lies between a and class c, so in a pool
    shared by all anchors it would be a *positive* of every other anchor of
    class c, and hard mining would often pick it as that anchor's hardest
    positive, pulling the anchor towards a's class. That costs O(N·K)
    extra distances instead of O(N²·K).
    :func:`augment_with_interpolated_negatives` still builds the shared pool
    (Embedding Expansion's form) for users who want it, with that caveat.
  * Without ``rng`` each anchor interpolates its ``num_per_anchor`` nearest
    negatives (deterministic); with ``rng`` it draws them uniformly without
    replacement among its negatives (more diverse candidates for hard
    mining). When an anchor has fewer negatives than requested, the spare
    slots hold exact copies of one of its existing keys (α treated as 0),
    which leaves batch-hard mining unchanged.

References:
  Ko & Gu, "Embedding Expansion: Augmentation in Embedding Space for Deep
  Metric Learning", CVPR 2020 (arXiv 2003.02546);
  Zheng et al., "Hardness-Aware Deep Metric Learning", CVPR 2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from avjax.losses import _mining
from avjax.losses.distances import check_metric
from avjax.losses.distances import paired_distances
from avjax.losses.distances import pairwise_distances


def _check_alpha(alpha) -> None:
  """Checks 0 ≤ α < 1 when α is known eagerly (not a tracer)."""
  if isinstance(alpha, jax.core.Tracer):
    return
  values = np.asarray(alpha)
  if values.size and not (np.all(values >= 0) and np.all(values < 1)):
    raise ValueError(
        "alpha must lie in [0, 1) (alpha = 1 collapses the "
        "synthetic negative onto the anchor); got "
        f"min={values.min()}, max={values.max()}"
    )


def interpolate_negatives(
    anchors: jax.Array, negatives: jax.Array, alpha
) -> jax.Array:
  r"""Moves negatives towards their anchors: ``n' = n + α (a − n)``.

  .. math::
    n'_i = n_i + \alpha_i (a_i - n_i), \qquad
    d(a_i, n'_i) = (1 - \alpha_i)\, d(a_i, n_i)

  Args:
    anchors: ``[N, D]`` anchor embeddings (or broadcastable to
      ``negatives``).
    negatives: ``[N, D]`` negative embeddings, one per anchor row.
    alpha: interpolation coefficient in ``[0, 1)``: a scalar, or ``[N]``
      (one per row).

  Returns:
    ``[N, D]`` synthetic negatives; each keeps the label of its negative.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> losses.interpolate_negatives(jnp.zeros((1, 2)), jnp.array([[4., 0.]]),
    ...                              0.25)
    Array([[3., 0.]], dtype=float32)

  References:
    Zheng et al., "Hardness-Aware Deep Metric Learning", CVPR 2019;
    Ko & Gu, "Embedding Expansion", CVPR 2020.
  """
  _check_alpha(alpha)
  anchors, negatives = jnp.asarray(anchors), jnp.asarray(negatives)
  alpha = jnp.asarray(alpha, dtype=jnp.result_type(anchors, negatives))
  if alpha.ndim > 1:
    raise ValueError(f"alpha must be a scalar or [N]; got shape {alpha.shape}")
  if alpha.ndim == 1:
    if alpha.shape[0] != negatives.shape[0]:
      raise ValueError(
          f"alpha has shape {alpha.shape} but negatives has "
          f"{negatives.shape[0]} rows"
      )
    alpha = alpha[:, None]
  return negatives + alpha * (anchors - negatives)


def augment_with_interpolated_negatives(
    queries: jax.Array,
    query_labels: jax.Array,
    keys: jax.Array,
    key_labels: jax.Array,
    alpha,
    rng: jax.Array | None = None,
    num_per_anchor: int = 1,
    metric: str = "euclidean",
) -> tuple[jax.Array, jax.Array]:
  r"""Appends per-query synthetic hard negatives to a key set.

  For each query :math:`a_i` the function picks ``K = num_per_anchor``
  negative keys :math:`n_{ik}` (label ≠ the query's) and appends

  .. math::
    n'_{ik} = n_{ik} + \alpha_i (a_i - n_{ik}), \quad
    \mathrm{label}(n'_{ik}) = \mathrm{label}(n_{ik}),

  so ``cross_modal_triplet(queries, query_labels, *augmented,
  mining="hard")`` mines these harder negatives. Pairs a query with its
  nearest negatives when ``rng`` is None, else with random ones.

  The pool is shared: query i's synthetic key is a *positive* of every other
  query of its negative's label, and it lies towards query i's class. For
  TSTL-CA's stage 2 use :func:`interpolated_hard_triplet`, which scores each
  query only against its own synthetic negatives.

  Args:
    queries: ``[Nq, D]`` anchor embeddings.
    query_labels: ``[Nq]`` integer labels.
    keys: ``[Nk, D]`` key embeddings (the other modality).
    key_labels: ``[Nk]`` integer labels.
    alpha: coefficient in ``[0, 1)``: scalar, ``[Nq]`` or ``[Nq, K]``.
    rng: optional PRNG key; picks the negatives at random.
    num_per_anchor: ``K``, synthetic negatives per query (``1 ≤ K ≤ Nk``).
    metric: distance used to find the nearest negatives.

  Returns:
    ``(augmented_keys [Nk + Nq·K, D], augmented_labels [Nk + Nq·K])``: the
    real keys first, then query 0's K synthetic negatives, query 1's, ….

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> q, k = jnp.array([[0., 0.]]), jnp.array([[0., 1.], [4., 0.]])
    >>> keys, labels = losses.augment_with_interpolated_negatives(
    ...     q, jnp.array([0]), k, jnp.array([0, 1]), alpha=0.5)
    >>> keys[-1], labels[-1]
    (Array([2., 0.], dtype=float32), Array(1, dtype=int32))

  References:
    Ko & Gu, "Embedding Expansion", CVPR 2020 (arXiv 2003.02546);
    Zheng et al., "Hardness-Aware Deep Metric Learning", CVPR 2019;
    Zeng & Ikeda, TSTL-CA, arXiv 2310.13451.
  """
  check_metric(metric)
  _check_alpha(alpha)
  queries, query_labels, keys, key_labels, k = _check_inputs(
      queries, query_labels, keys, key_labels, num_per_anchor
  )
  num_q = queries.shape[0]
  synthetic, idx, _ = _synthetic_negatives(
      queries, query_labels, keys, key_labels, alpha, rng, k, metric, d=None
  )
  aug_keys = jnp.concatenate([keys, synthetic.reshape(num_q * k, -1)], axis=0)
  aug_labels = jnp.concatenate([key_labels, key_labels[idx].reshape(-1)])
  return aug_keys, aug_labels


def _check_inputs(queries, query_labels, keys, key_labels, num_per_anchor):
  """Validated arrays and ``K``; errors name the argument and shape."""
  queries, query_labels = jnp.asarray(queries), jnp.asarray(query_labels)
  keys, key_labels = jnp.asarray(keys), jnp.asarray(key_labels)
  if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
    raise ValueError(
        "queries must be [Nq, D] and keys [Nk, D]; got "
        f"{queries.shape} and {keys.shape}"
    )
  if query_labels.shape != queries.shape[:1]:
    raise ValueError(
        f"query_labels must have shape {queries.shape[:1]}; got "
        f"{query_labels.shape}"
    )
  if key_labels.shape != keys.shape[:1]:
    raise ValueError(
        f"key_labels must have shape {keys.shape[:1]}; got "
        f"{key_labels.shape}"
    )
  k = int(num_per_anchor)
  if not 1 <= k <= keys.shape[0]:
    raise ValueError(
        f"num_per_anchor={num_per_anchor} must be in "
        f"[1, {keys.shape[0]}] (the number of keys)"
    )
  return queries, query_labels, keys, key_labels, k


def _synthetic_negatives(
    queries, query_labels, keys, key_labels, alpha, rng, k, metric, d
):
  """Each query's K synthetic negatives.

  Returns ``(synthetic [Nq, K, D], key index [Nq, K], is_negative [Nq, K])``;
  a slot that found no negative (fewer than K) copies an existing key with
  α = 0 and ``is_negative`` False. ``d`` is the selection distance matrix
  when the caller has it (any metric ordering like ``metric``).
  """
  num_q, num_k = queries.shape[0], keys.shape[0]
  dtype = jnp.result_type(queries, keys)
  alpha = jnp.asarray(alpha, dtype)
  if alpha.ndim > 2 or alpha.shape not in ((), (num_q,), (num_q, k)):
    raise ValueError(
        f"alpha must be a scalar, [{num_q}] or [{num_q}, {k}]; "
        f"got shape {alpha.shape}"
    )
  alpha = jnp.broadcast_to(
      alpha[:, None] if alpha.ndim == 1 else alpha, (num_q, k)
  )
  is_neg = query_labels[:, None] != key_labels[None, :]  # [Nq, Nk]
  if rng is None:
    if d is None:
      # Squared distances order like euclidean ones, without a square root.
      select = "squared_euclidean" if metric == "euclidean" else metric
      d = pairwise_distances(queries, keys, select)
    score = -jax.lax.stop_gradient(d)
  else:
    score = jax.random.gumbel(rng, (num_q, num_k), dtype)
  # Negatives always outrank non-negatives, which only fill spare slots.
  score = jnp.where(is_neg, score, -jnp.inf)
  score_top, idx = jax.lax.top_k(score, k)  # [Nq, K]
  picked_is_neg = score_top > -jnp.inf
  picked = keys[idx]  # [Nq, K, D]
  alpha = jnp.where(picked_is_neg, alpha, 0.0)
  synthetic = picked + alpha[..., None] * (queries[:, None, :] - picked)
  return synthetic, idx, picked_is_neg


def interpolated_hard_triplet(
    queries: jax.Array,
    query_labels: jax.Array,
    keys: jax.Array,
    key_labels: jax.Array,
    alpha,
    margin: float = 1.0,
    rng: jax.Array | None = None,
    num_per_anchor: int = 1,
    metric: str = "euclidean",
) -> jax.Array:
  r"""Batch-hard triplet loss with each query's own interpolated negatives.

  Query :math:`a_i` picks ``K`` negative keys :math:`n_{ik}` (its nearest,
  or random ones with ``rng``) and makes synthetic negatives
  :math:`s_{ik} = n_{ik} + \alpha_{ik}(a_i - n_{ik})`. Its hardest positive
  is the farthest **real** key of its label; its hardest negative is the
  closest among the real negatives and its **own** K synthetic ones:

  .. math::
    \frac{1}{|A|}\sum_{i \in A} \max\bigl(0,
      \max_{p} d(a_i, k_p) - \min(\min_n d(a_i, k_n),
      \min_k d(a_i, s_{ik})) + m\bigr)

  A synthetic key is never a positive, and no query sees another query's
  synthetic keys (see the module docstring for why). For norm-induced
  metrics :math:`d(a_i, s_{ik}) = (1 - \alpha_{ik})\, d(a_i, n_{ik})`.
  Selection is without gradient; the selected distances are recomputed from
  the embeddings, so gradients reach the query, the real positive and the
  real negative (scaled by 1 − α through the synthetic point). Cost:
  O(Nq·Nk·D) for the distance matrix plus O(Nq·K·D).

  Args:
    queries: ``[Nq, D]`` anchor embeddings.
    query_labels: ``[Nq]`` integer labels.
    keys: ``[Nk, D]`` key embeddings (the other modality).
    key_labels: ``[Nk]`` integer labels.
    alpha: coefficient in ``[0, 1)``: scalar, ``[Nq]`` or ``[Nq, K]``.
    margin: hinge margin ``m ≥ 0``.
    rng: optional PRNG key; picks the negatives to interpolate at random.
    num_per_anchor: ``K``, synthetic negatives per query (``1 ≤ K ≤ Nk``).
    metric: distance, see :func:`pairwise_distances`.

  Returns:
    Scalar loss; 0.0 with zero gradients when no query has both a positive
    and a negative key.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> q, k = jnp.array([[0., 0.]]), jnp.array([[0., 1.], [4., 0.]])
    >>> float(losses.interpolated_hard_triplet(
    ...     q, jnp.array([0]), k, jnp.array([0, 1]), alpha=0.5, margin=1.0))
    0.0

  References:
    Zeng & Ikeda, TSTL-CA, arXiv 2310.13451;
    Zheng et al., "Hardness-Aware Deep Metric Learning", CVPR 2019.
  """
  check_metric(metric)
  _check_alpha(alpha)
  if isinstance(margin, (int, float)) and margin < 0:
    raise ValueError(f"margin={margin} must be >= 0")
  queries, query_labels, keys, key_labels, k = _check_inputs(
      queries, query_labels, keys, key_labels, num_per_anchor
  )
  select = "squared_euclidean" if metric == "euclidean" else metric
  d = pairwise_distances(queries, keys, select)
  same = query_labels[:, None] == key_labels[None, :]
  p_idx, n_idx, valid = _mining.batch_hard_indices(d, same, ~same)
  synthetic, _, synth_valid = _synthetic_negatives(
      queries, query_labels, keys, key_labels, alpha, rng, k, metric, d
  )
  d_ap = paired_distances(queries, keys[p_idx], metric)
  d_an_real = paired_distances(queries, keys[n_idx], metric)
  num_q, dim = queries.shape
  d_an_synth = paired_distances(
      jnp.repeat(queries, k, axis=0), synthetic.reshape(num_q * k, dim), metric
  ).reshape(num_q, k)
  d_an_synth = jnp.where(synth_valid, d_an_synth, jnp.inf)
  d_an = jnp.minimum(d_an_real, jnp.min(d_an_synth, axis=1))
  hinge = d_ap - d_an + margin
  total = jnp.sum(jnp.where(valid & (hinge > 0), hinge, 0.0))
  return total / jnp.maximum(jnp.sum(valid), 1).astype(total.dtype)
