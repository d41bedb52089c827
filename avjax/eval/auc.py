"""Area under the ROC curve of a score separating two groups: ``auc``.

Used to ask how well a per-sample quantity (a meta-weight, a loss) tells
clean from noisy training pairs: 1 = every clean sample scores above every
noisy one, 0.5 = no separation, 0 = reversed.
"""

from __future__ import annotations

import numpy as np


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
  """P(score of a positive > score of a negative), ties counting ½.

  The Mann–Whitney U statistic over (positive, negative) pairs, from
  mid-ranks (ties share their average rank), O(N log N).

  Args:
    scores: [N] real scores.
    positive: [N] bools (or 0/1): which samples are positives.

  Returns:
    The AUC in [0, 1]; NaN when either group is empty.

  Raises:
    ValueError: ``scores`` and ``positive`` are not both [N].
  """
  scores = np.asarray(scores, np.float64)
  positive = np.asarray(positive).astype(bool)
  if scores.ndim != 1 or scores.shape != positive.shape:
    raise ValueError(
        f"auc needs scores [N] and positive [N]; got shapes "
        f"{scores.shape} and {positive.shape}"
    )
  n_pos = int(positive.sum())
  n_neg = positive.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  _, inverse, counts = np.unique(
      scores, return_inverse=True, return_counts=True
  )
  mid_ranks = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based.
  rank_sum = mid_ranks[inverse][positive].sum()
  return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pairwise_auc(scores, positive):
  """``auc`` in jax, jittable, from all (positive, negative) pairs: O(N²).

  For in-step metrics on one batch (N of a few hundred at most).

  Args:
    scores: float [N].
    positive: [N] bools or 0/1.

  Returns:
    float32 scalar; 0.5 when either group is empty (no separation
    measurable), unlike ``auc``'s NaN, so a logged mean stays finite.
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  pos = jnp.asarray(positive).astype(jnp.float32)
  diff = scores[:, None] - scores[None, :]  # [i, j]: positive i, negative j.
  wins = jnp.where(diff > 0, 1.0, jnp.where(diff == 0, 0.5, 0.0))
  pairs = pos[:, None] * (1.0 - pos)[None, :]
  n_pairs = jnp.sum(pairs)
  return jnp.where(
      n_pairs > 0, jnp.sum(wins * pairs) / jnp.maximum(n_pairs, 1.0), 0.5
  ).astype(jnp.float32)
