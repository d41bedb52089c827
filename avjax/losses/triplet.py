"""Triplet losses with in-batch mining (single- and cross-modal).

Decisions:
  * ``triplet_semihard`` follows TF-Addons ``TripletSemiHardLoss``: every
    same-label pair (a ≠ p) is a positive pair; its negative is the closest
    negative strictly farther than d_ap, else the farthest negative; the loss
    is the mean of max(0, d_ap − d_an + margin) over positive pairs. It runs
    in O(B²·S) time for S = the largest class in the batch, or O(B² log B)
    when S is large, and O(B²) memory (see ``_mining``), never building the
    B³ triplet tensor.
  * Positive pairs whose anchor has no negative at all (only possible when
    every candidate shares the anchor's label) are left out of both the sum
    and the count; when nothing is left the loss is exactly 0 with zero
    gradients (TF-Addons would divide by zero in that case).
  * Ties: a negative at exactly d_ap is not "farther", as in TF-Addons. When
    several negatives tie for the chosen distance they share its gradient.
  * Batch-hard mining picks the hardest positive / negative on the distance
    matrix without gradient, then recomputes those 2·B distances from the
    embeddings (exact, and an O(B·D) backward pass instead of O(B²)). Ties
    go to the lowest index.
  * ``cross_modal_triplet(mining="all")`` averages over **all** valid
    (a, p, n) triplets, including those with zero loss (not only the active
    ones): the normaliser then does not jump as triplets become easy, and the
    loss decreases monotonically with every satisfied triplet.
  * Labels define relevance everywhere; for paired cross-modal data pass the
    class (or instance) labels of both sides, so the paired key of each query
    is one of its positives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from avjax.losses import _mining
from avjax.losses.distances import check_metric
from avjax.losses.distances import paired_distances
from avjax.losses.distances import pairwise_distances

MINING = ("semihard", "hard", "all")


def _check_margin(margin) -> None:
  if isinstance(margin, (int, float)) and margin < 0:
    raise ValueError(f"margin={margin} must be >= 0")


def _check_embeddings(
    name: str, embeddings: jax.Array, labels_name: str, labels: jax.Array
) -> None:
  if embeddings.ndim != 2:
    raise ValueError(f"{name} must be [B, D]; got shape {embeddings.shape}")
  if labels.shape != embeddings.shape[:1]:
    raise ValueError(
        f"{labels_name} must be [B] = {embeddings.shape[:1]} to "
        f"match {name}; got shape {labels.shape}"
    )


def _masks_same_set(labels: jax.Array):
  same = labels[:, None] == labels[None, :]
  not_self = ~jnp.eye(labels.shape[0], dtype=bool)
  return same & not_self, ~same


def _batch_hard(queries, keys, pos, neg, margin, metric):
  """(total, count) of batch-hard mining; see ``_mining.batch_hard_indices``.

  Hardest candidates are picked on squared distances when the metric is
  euclidean (same order, no square root over the whole matrix).
  """
  select = "squared_euclidean" if metric == "euclidean" else metric
  d = pairwise_distances(queries, keys, select)
  p_idx, n_idx, valid = _mining.batch_hard_indices(d, pos, neg)
  d_ap = paired_distances(queries, keys[p_idx], metric)
  d_an = paired_distances(queries, keys[n_idx], metric)
  hinge = d_ap - d_an + margin
  total = jnp.sum(jnp.where(valid & (hinge > 0), hinge, 0.0))
  return total, jnp.sum(valid)


def _mean(total_and_count) -> jax.Array:
  total, count = total_and_count
  return total / jnp.maximum(count, 1).astype(total.dtype)


def triplet_semihard(
    embeddings: jax.Array,
    labels: jax.Array,
    margin: float = 1.0,
    metric: str = "euclidean",
) -> jax.Array:
  r"""Triplet loss with semi-hard negative mining (TF-Addons semantics).

  For every positive pair (a, p) — same label, a ≠ p — the negative is

  .. math::
    n^*(a, p) = \begin{cases}
      \arg\min_{n:\, d_{an} > d_{ap}} d_{an} & \text{if such } n \text{ exists}\\
      \arg\max_n d_{an} & \text{otherwise}
    \end{cases}

  and the loss is
  :math:`\frac{1}{|P|}\sum_{(a,p) \in P} \max(0, d_{ap} - d_{an^*} + m)`.
  Cost: O(B²·S) time for S = the largest class up to S = 256 (per-positive
  passes, then vectorised compares), O(B²·log S) beyond; O(B²) memory.

  Args:
    embeddings: ``[B, D]`` float embeddings.
    labels: ``[B]`` integer class labels.
    margin: hinge margin ``m ≥ 0`` (python float or scalar array).
    metric: distance, see :func:`pairwise_distances`; TF-Addons uses plain
      (not squared) ``"euclidean"``.

  Returns:
    Scalar loss. 0.0 (with zero gradients) when the batch has no positive
    pair or no negative.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> emb = jnp.array([[0., 0.], [0., 1.], [3., 0.], [3., 1.]])
    >>> float(losses.triplet_semihard(emb, jnp.array([0, 0, 1, 1]), 1.0))
    0.0

  References:
    Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015;
    TF-Addons ``tfa.losses.TripletSemiHardLoss``.
  """
  check_metric(metric)
  _check_margin(margin)
  embeddings, labels = jnp.asarray(embeddings), jnp.asarray(labels)
  _check_embeddings("embeddings", embeddings, "labels", labels)
  d = pairwise_distances(embeddings, embeddings, metric)
  return _mean(_mining.semihard(d, labels, labels, margin, same_set=True))


def triplet_batch_hard(
    embeddings: jax.Array,
    labels: jax.Array,
    margin: float = 1.0,
    metric: str = "euclidean",
) -> jax.Array:
  r"""Batch-hard triplet loss: hardest positive vs hardest negative.

  .. math::
    \frac{1}{|A|} \sum_{a \in A}
      \max\bigl(0, \max_{p} d_{ap} - \min_{n} d_{an} + m\bigr)

  where A holds the anchors with at least one positive (same label, p ≠ a)
  and one negative.

  Args:
    embeddings: ``[B, D]`` float embeddings.
    labels: ``[B]`` integer class labels.
    margin: hinge margin ``m ≥ 0``.
    metric: distance, see :func:`pairwise_distances`.

  Returns:
    Scalar loss; 0.0 (zero gradients) when no anchor qualifies.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> emb = jnp.array([[0., 0.], [0., 1.], [0., 2.], [0., 3.]])
    >>> float(losses.triplet_batch_hard(emb, jnp.array([0, 1, 0, 1]), 1.0))
    2.0

  References:
    Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv 1703.07737.
  """
  check_metric(metric)
  _check_margin(margin)
  embeddings, labels = jnp.asarray(embeddings), jnp.asarray(labels)
  _check_embeddings("embeddings", embeddings, "labels", labels)
  pos, neg = _masks_same_set(labels)
  return _mean(_batch_hard(embeddings, embeddings, pos, neg, margin, metric))


def cross_modal_triplet(
    queries: jax.Array,
    query_labels: jax.Array,
    keys: jax.Array,
    key_labels: jax.Array,
    margin: float = 1.0,
    mining: str = "semihard",
    metric: str = "euclidean",
) -> jax.Array:
  r"""Triplet loss with anchors from one modality, candidates from another.

  Anchors are the ``queries``; a key is a positive of a query when their
  labels are equal (so the paired key of a query is a positive) and a
  negative otherwise. With :math:`d_{ak}` = distance(query a, key k):

  * ``"semihard"``: for every (query, positive key) pair, the negative key is
    chosen by the TF-Addons rule (closest negative with d_an > d_ap, else the
    farthest); mean of max(0, d_ap − d_an + m) over those pairs.
    O(Nq·Nk·S) for S = the largest key class up to 256, O(Nq·Nk·log S)
    beyond.
  * ``"hard"``: per query, max(0, max_p d_ap − min_n d_an + m); mean over
    queries with at least one positive and one negative key.
  * ``"all"``: mean of max(0, d_ap − d_an + m) over **all** valid (a, p, n),
    zero terms included. O(Nq·Nk log Nk) via sorted prefix counts.

  Queries without any positive or any negative key contribute nothing; the
  result is 0.0 with zero gradients when no term remains.

  Args:
    queries: ``[Nq, D]`` anchor embeddings.
    query_labels: ``[Nq]`` integer labels.
    keys: ``[Nk, D]`` candidate embeddings (the other modality, possibly
      augmented, see :func:`augment_with_interpolated_negatives`).
    key_labels: ``[Nk]`` integer labels.
    margin: hinge margin ``m ≥ 0``.
    mining: ``"semihard"``, ``"hard"`` or ``"all"``.
    metric: distance, see :func:`pairwise_distances`.

  Returns:
    Scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> audio = jnp.array([[0., 0.], [4., 0.]])
    >>> image = jnp.array([[0., 1.], [4., 1.]])
    >>> labels = jnp.array([0, 1])
    >>> float(losses.cross_modal_triplet(audio, labels, image, labels,
    ...                                  margin=1.0, mining="hard"))
    0.0

  References:
    Zeng & Ikeda, "Two-Stage Triplet Loss Training with Curriculum
    Augmentation for Audio-Visual Retrieval", arXiv 2310.13451;
    Hermans et al., arXiv 1703.07737 (batch hard / batch all).
  """
  check_metric(metric)
  _check_margin(margin)
  if mining not in MINING:
    raise ValueError(f"mining={mining!r} is not one of {list(MINING)}")
  queries, query_labels = jnp.asarray(queries), jnp.asarray(query_labels)
  keys, key_labels = jnp.asarray(keys), jnp.asarray(key_labels)
  _check_embeddings("queries", queries, "query_labels", query_labels)
  _check_embeddings("keys", keys, "key_labels", key_labels)
  if queries.shape[1] != keys.shape[1]:
    raise ValueError(
        "queries and keys must share the embedding size; got "
        f"{queries.shape} and {keys.shape}"
    )
  same = query_labels[:, None] == key_labels[None, :]
  if mining == "hard":
    return _mean(_batch_hard(queries, keys, same, ~same, margin, metric))
  d = pairwise_distances(queries, keys, metric)
  if mining == "semihard":
    return _mean(_mining.semihard(d, query_labels, key_labels, margin))
  return _mean(_mining.batch_all(d, same, ~same, margin))
