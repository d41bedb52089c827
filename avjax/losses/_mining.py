"""Triplet mining on a distance matrix in O(N·M log M) (private helpers).

Every helper takes a distance matrix ``d`` ``[N, M]`` (anchors × candidates)
and two boolean masks of the same shape: ``pos`` (candidate is a positive of
the anchor) and ``neg`` (candidate is a negative). Entries in neither mask
(e.g. an anchor paired with itself) are ignored. ``semihard`` and
``batch_all`` return ``(total, count)``: the summed hinge over the mined
triplets and the number of terms the caller should divide by, so single- and
cross-modal losses share one implementation; ``batch_hard_indices`` returns
the selected candidates.

How semi-hard and batch-all mining avoid the O(N·M²) triplet tensor: each
anchor's row is sorted once by a single unsigned-integer key

    key = (bit pattern of d) · 2 + (1 if positive else 0),  ignored → max,

which orders the row by distance (non-negative IEEE floats order like their
bit patterns) and, at equal distance, puts negatives before positives. Then
"the closest negative strictly farther than d_ap" is the first negative after
the positive's own position (a reverse cumulative minimum), and "how many
negatives are closer than d_ap + margin" is a binary search plus a prefix
count. Sorting one integer array is several times faster on CPU than the
multi-operand sort that ``argsort`` needs; the chosen negatives are
identified by value, and gradients reach them through per-candidate weights
(ties share a pair's gradient equally).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _uint_dtype(dtype) -> np.dtype:
  return np.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}")


def _bits(x: jax.Array) -> jax.Array:
  """Bit patterns of non-negative floats (monotone in the value)."""
  x = jnp.where(x > 0, x, jnp.zeros((), x.dtype))  # also maps -0.0 to +0.0
  return jax.lax.bitcast_convert_type(x, _uint_dtype(x.dtype))


def _decode(keys: jax.Array, dtype) -> jax.Array:
  return jax.lax.bitcast_convert_type(keys >> 1, jnp.dtype(dtype))


def _row_searchsorted(sorted_rows: jax.Array, queries: jax.Array) -> jax.Array:
  """Per row, the leftmost insertion index of each query (int32 [N, Q])."""
  return jax.vmap(lambda row, q: jnp.searchsorted(row, q, side="left"))(
      sorted_rows, queries).astype(jnp.int32)


def _sorted_keys(d: jax.Array, pos: jax.Array, neg: jax.Array):
  """Row-wise sort keys (see module docstring) and their sorted rows."""
  d = jax.lax.stop_gradient(d)
  utype = _uint_dtype(d.dtype)
  base = _bits(d) << utype.type(1)
  keys = jnp.where(pos, base | utype.type(1),
                   jnp.where(neg, base, utype.type(np.iinfo(utype).max)))
  return keys, jnp.sort(keys, axis=1)


def _exclusive_cumsum(x: jax.Array) -> jax.Array:
  """``[N, M] → [N, M + 1]`` with ``out[:, k] = sum(x[:, :k])``."""
  c = jnp.cumsum(x, axis=1)
  return jnp.concatenate([jnp.zeros_like(c[:, :1]), c], axis=1)


def semihard(d: jax.Array, pos: jax.Array, neg: jax.Array,
             margin) -> tuple[jax.Array, jax.Array]:
  """TF-Addons semi-hard mining; every positive pair is one term.

  For each pair (a, p) whose anchor has at least one negative, the negative
  is the closest one with d_an > d_ap, or else the farthest negative; the
  term is max(0, d_ap − d_an + margin). ``count`` = number of such pairs.
  """
  n, m = d.shape
  keys, s = _sorted_keys(d, pos, neg)
  rank = _row_searchsorted(s, keys)  # sorted position of each tie group
  iota = jnp.arange(m, dtype=jnp.int32)
  # First negative at a sorted position > k (the "ignored" key is odd, so
  # never a negative). Positives tied with a negative sort after it, so this
  # negative is strictly farther than the positive.
  next_neg = jax.lax.cummin(jnp.where((s & 1) == 0, iota, m), axis=1,
                            reverse=True)
  next_neg = jnp.concatenate(
      [next_neg[:, 1:], jnp.full((n, 1), m, jnp.int32)], axis=1)
  # Rank grows with the key, so the largest negative rank is the position
  # of the farthest negative's tie group.
  farthest = jnp.max(jnp.where(neg, rank, -1), axis=1, keepdims=True)
  has_neg = farthest[:, 0] >= 0
  outside = jnp.take_along_axis(next_neg, rank, axis=1)
  chosen = jnp.where(outside < m, outside, farthest)  # sorted position
  d_an = _decode(jnp.take_along_axis(s, chosen, axis=1), d.dtype)

  hinge = d - d_an + margin
  valid = pos & has_neg[:, None]
  active = valid & (hinge > 0)
  # Gradient weight of each negative: active pairs that chose its value,
  # shared equally among negatives tied at that value.
  rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, m))
  chosen_by = jnp.zeros((n, m), d.dtype).at[rows, chosen].add(
      active.astype(d.dtype))
  tie_size = jnp.zeros((n, m), d.dtype).at[rows, rank].add(
      neg.astype(d.dtype))
  per_negative = chosen_by / jnp.maximum(tie_size, 1.0)
  weight = jnp.where(neg, jnp.take_along_axis(per_negative, rank, axis=1), 0.0)
  weight = jax.lax.stop_gradient(weight)
  # The second sum is exactly 0 in value; it routes −weight to each d_an.
  total = (jnp.sum(jnp.where(active, hinge, 0.0))
           + jnp.sum(weight * (jax.lax.stop_gradient(d) - d)))
  return total, jnp.sum(valid)


def batch_all(d: jax.Array, pos: jax.Array, neg: jax.Array,
              margin) -> tuple[jax.Array, jax.Array]:
  """Sum of max(0, d_ap − d_an + margin) over all (a, p, n) triplets.

  ``count`` = number of valid triplets, Σ_a P_a·N_a. Uses
  Σ_{p,n} max(0, d_ap − d_an + m) = Σ_p c_ap (d_ap + m) − Σ_n c_an d_an with
  c_ap = #{n : d_an < d_ap + m} and c_an = #{p : d_ap > d_an − m}, both
  counted by binary search in the sorted row; the counts are piecewise
  constant, so autodiff of this expression gives the exact gradient.
  """
  keys, s = _sorted_keys(d, pos, neg)
  del keys
  utype = s.dtype.type
  s_neg = (s & 1) == 0
  s_pos = ((s & 1) == 1) & (s != utype(np.iinfo(s.dtype).max))
  neg_before = _exclusive_cumsum(s_neg.astype(jnp.int32))
  pos_before = _exclusive_cumsum(s_pos.astype(jnp.int32))
  num_pos = jnp.sum(pos, axis=1, keepdims=True, dtype=jnp.int32)
  num_neg = jnp.sum(neg, axis=1, keepdims=True, dtype=jnp.int32)

  ds = jax.lax.stop_gradient(d)
  # Positives: negatives whose key < key(d_ap + m, negative flag).
  q_pos = _bits(ds + margin) << utype(1)
  # Negatives: positives whose key > key(d_an − m, positive flag).
  shifted = ds - margin
  q_neg = ((_bits(shifted) << utype(1)) | utype(1)) + utype(1)
  at = _row_searchsorted(s, jnp.where(pos, q_pos, q_neg))
  c_pos = jnp.take_along_axis(neg_before, at, axis=1)
  c_neg = jnp.where(shifted < 0, num_pos,
                    num_pos - jnp.take_along_axis(pos_before, at, axis=1))
  c_pos = jnp.where(pos, c_pos, 0).astype(d.dtype)
  c_neg = jnp.where(neg, c_neg, 0).astype(d.dtype)
  total = jnp.sum(c_pos * (d + margin)) - jnp.sum(c_neg * d)
  return total, jnp.sum(num_pos * num_neg)


def batch_hard_indices(d: jax.Array, pos: jax.Array, neg: jax.Array):
  """Per anchor, the hardest positive and hardest negative candidate.

  Returns ``(positive_index [N], negative_index [N], valid [N])``, where
  ``valid`` marks anchors with at least one positive and one negative (the
  indices of other anchors are arbitrary). Ties go to the lowest index.
  Selection is discrete, so no gradient flows through ``d`` here; callers
  recompute the 2·N selected distances from the embeddings, which keeps the
  backward pass O(N·D) instead of O(N·M).
  """
  d = jax.lax.stop_gradient(d)
  positive = jnp.argmax(jnp.where(pos, d, -1.0), axis=1)
  negative = jnp.argmin(jnp.where(neg, d, jnp.inf), axis=1)
  valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
  return positive, negative, valid
