"""Triplet mining on a distance matrix without the N·M² triplet tensor.

Every helper takes a distance matrix ``d`` ``[N, M]`` (anchors × candidates).
``semihard`` takes the anchors' and candidates' labels (a candidate with the
anchor's label is a positive, any other a negative); ``batch_all`` and
``batch_hard_indices`` take two boolean masks ``pos`` / ``neg`` of ``d``'s
shape (entries in neither, e.g. an anchor paired with itself, are ignored).
``semihard`` and ``batch_all`` return ``(total, count)``: the summed hinge
over the mined triplets and the number of terms the caller should divide by,
so single- and cross-modal losses share one implementation;
``batch_hard_indices`` returns the selected candidates.

Semi-hard mining needs, for each positive pair (a, p), only the closest
negative farther than d_ap (else the farthest negative): one masked minimum
over the row. Three algorithms give it exactly; ``semihard`` picks one of
the first two at run time from S, the largest label group among the
anchors:

* **Per-positive passes**, O(S·N·M) time, O(N·M) memory, when S ≤ 32 (many
  small classes). The candidates are ordered by label once (a stable
  argsort of M labels), so the positives of anchor a are the run
  ``order[start_a:end_a]``. Pass j handles, in every row at once, the j-th
  positive of the run: gather d_ap, then one masked row minimum of
  ``where(negative and d > d_ap, d, ∞)`` (∞ → the row's farthest negative),
  one row count of the negatives tied at that d_an, and an element-wise
  update of a dense weight matrix (−1/ties on each tied negative of an
  active pair). Each pass writes its values of d_an into row j of an
  ``[M, rows]`` table, which one gather maps back onto the positive pairs
  after the loop. Rows go through in blocks of about 2¹⁴ distances that
  stay in cache over all passes, and each block runs only as many passes as
  its own largest run.
* **Buckets**, O(N·M·log S) time (O(N·M·S) vectorised compares while
  cap ≤ 256, see ``_row_searchsorted``), O(N·M) memory, for larger
  groups. Each row's positive distances are sorted (``[N, cap]``, cap the
  next power of two ≥ S, one branch per cap), and every candidate gets its
  bucket b = #{positives strictly closer}: the negatives of bucket b lie in
  (p_{b−1}, p_b], so the buckets are ordered by distance and a positive's
  bucket is its own sorted position. One scatter-minimum per row gives
  each bucket's closest negative, and positive j's semi-hard negative is
  the minimum over the buckets after j (a reverse cumulative minimum), else
  the farthest negative. The gradient weights follow from counts per bucket:
  bucket b's minimum is chosen by the positives between the previous
  non-empty bucket and b, and shared by the negatives tied at it.
* **Row sort**, O(N·M log M) (``path="sort"`` only: the bucket path is
  faster at every size measured). Each anchor's row is sorted once by a
  single unsigned-integer key

      key = (bit pattern of d) · 2 + (1 if positive else 0), ignored → max,

  which orders the row by distance (non-negative IEEE floats order like
  their bit patterns) and, at equal distance, puts negatives before
  positives. Then "the closest negative strictly farther than d_ap" is the
  first negative after the positive's own position (a reverse cumulative
  minimum).

All return the hinge sum and a dense, stop-gradient weight per distance
(+1 on an active pair's d_ap, −1/ties on each negative tied at its d_an), so
the gradient reaches ``d`` by one element-wise product: no scatter in the
backward pass, and the ``while_loop`` (not reverse-differentiable) sees no
tangents. Under ``vmap`` the run-time choices become selects, so every
branch runs.

Batch-all mining counts, in the same sorted row, how many negatives are
closer than d_ap + margin (a row search plus a prefix count). Batch-hard
mining takes each row's extreme value, then the lowest index holding it: two
plain reductions, several times faster on CPU than a variadic argmin.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from avjax.losses._fusion import materialised


def _uint_dtype(dtype) -> np.dtype:
  return np.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}")


def _bits(x: jax.Array) -> jax.Array:
  """Bit patterns of non-negative floats (monotone in the value)."""
  x = jnp.where(x > 0, x, jnp.zeros((), x.dtype))  # also maps -0.0 to +0.0
  return jax.lax.bitcast_convert_type(x, _uint_dtype(x.dtype))


def _decode(keys: jax.Array, dtype) -> jax.Array:
  return jax.lax.bitcast_convert_type(keys >> 1, jnp.dtype(dtype))


def _row_searchsorted(sorted_rows: jax.Array, queries: jax.Array) -> jax.Array:
  """Per row, the leftmost insertion index of each query (int32 [N, Q]).

  Rows up to ``_COUNT_UP_TO`` wide: the index is the count of the row's
  values below the query, one broadcast compare per column summed in one
  vectorised, fused pass (no gather at all). Wider rows, in two levels:
  the query is compared with the last value of each of at most
  ``_SPLITTERS`` equal blocks of its row, which names its block; a
  branchless binary search inside that block then takes ⌈log₂ block⌉ + 1
  gathers from the flattened rows. ``jnp.searchsorted`` under ``vmap`` (a
  gather per level of the whole row, 2-D gathers) is several times slower
  on CPU.
  """
  width = sorted_rows.shape[1]
  if width <= _COUNT_UP_TO:
    index = sum(
        (sorted_rows[:, k, None] < queries).astype(jnp.int32)
        for k in range(width)
    )
  else:
    index = _two_level_search(sorted_rows, queries)
  # Every caller reads the result in several [N, M] consumers, into each of
  # which XLA would fuse the whole search again (see `_fusion`).
  (index,) = materialised((index,), index[:, :1])
  return index


def _two_level_search(sorted_rows: jax.Array, queries: jax.Array):
  """`_row_searchsorted` for rows wider than ``_COUNT_UP_TO``."""
  n, width = sorted_rows.shape
  stride = -(-width // _SPLITTERS)
  blocks = -(-width // stride)
  pad = blocks * stride - width
  if pad:
    dtype = sorted_rows.dtype
    top = np.array(
        jnp.inf if jnp.issubdtype(dtype, jnp.floating) else np.iinfo(dtype).max,
        dtype,
    )
    sorted_rows = jnp.pad(sorted_rows, ((0, 0), (0, pad)), constant_values=top)
  below = sum(
      (sorted_rows[:, (k + 1) * stride - 1, None] < queries).astype(jnp.int32)
      for k in range(blocks)
  )
  # XLA would fuse the block compares into each gather's index below and
  # compute them again at every binary-search level.
  (below,) = materialised((below,), below[:, :1])
  flat = sorted_rows.reshape(-1)
  row_start = jnp.arange(n, dtype=jnp.int32)[:, None] * (blocks * stride)
  at = row_start + jnp.minimum(below, blocks - 1) * stride
  remaining = stride
  while remaining > 1:
    half = remaining // 2
    at = jnp.where(flat[at + half] < queries, at + half, at)
    remaining -= half
  return at - row_start + (flat[at] < queries).astype(jnp.int32)


# Widest rows that ``_row_searchsorted`` counts against every value, and
# the block count of its two-level search for wider ones: on CPU, counting
# beats the two-level search up to 256 columns and ties at 512, and 64
# blocks beat 32 from 512 columns up (timings: docs/benchmarks.md).
_COUNT_UP_TO = 256
_SPLITTERS = 64


def _row_gather(table: jax.Array, index: jax.Array) -> jax.Array:
  """``table[a, index[a, k]]`` by one 1-D gather (``take_along_axis`` on
  axis 1, several times faster on CPU)."""
  n, width = table.shape
  base = jnp.arange(n, dtype=jnp.int32)[:, None] * width
  return table.reshape(-1)[base + index]


def _sorted_keys(d: jax.Array, pos: jax.Array, neg: jax.Array):
  """Row-wise sort keys (see module docstring) and their sorted rows."""
  d = jax.lax.stop_gradient(d)
  utype = _uint_dtype(d.dtype)
  base = _bits(d) << utype.type(1)
  keys = jnp.where(
      pos,
      base | utype.type(1),
      jnp.where(neg, base, utype.type(np.iinfo(utype).max)),
  )
  return keys, jnp.sort(keys, axis=1)


def _exclusive_cumsum(x: jax.Array) -> jax.Array:
  """``[N, M] → [N, M + 1]`` with ``out[:, k] = sum(x[:, :k])``."""
  c = _scan(jnp.add, x)
  return jnp.concatenate([jnp.zeros_like(c[:, :1]), c], axis=1)


def _semihard_sorted(ds, pos, neg, margin):
  """(value, d-weights) of semi-hard mining by sorting every row."""
  n, m = ds.shape
  keys, s = _sorted_keys(ds, pos, neg)
  rank = _row_searchsorted(s, keys)  # sorted position of each tie group
  iota = jnp.arange(m, dtype=jnp.int32)
  # First negative at a sorted position > k (the "ignored" key is odd, so
  # never a negative). Positives tied with a negative sort after it, so this
  # negative is strictly farther than the positive.
  next_neg = jax.lax.cummin(
      jnp.where((s & 1) == 0, iota, m), axis=1, reverse=True
  )
  next_neg = jnp.concatenate(
      [next_neg[:, 1:], jnp.full((n, 1), m, jnp.int32)], axis=1
  )
  # Rank grows with the key, so the largest negative rank is the position
  # of the farthest negative's tie group.
  farthest = jnp.max(jnp.where(neg, rank, -1), axis=1, keepdims=True)
  has_neg = farthest[:, 0] >= 0
  outside = jnp.take_along_axis(next_neg, rank, axis=1)
  chosen = jnp.where(outside < m, outside, farthest)  # sorted position
  d_an = _decode(jnp.take_along_axis(s, chosen, axis=1), ds.dtype)

  hinge = ds - d_an + margin
  active = pos & has_neg[:, None] & (hinge > 0)
  # Gradient weight of each negative: active pairs that chose its value,
  # shared equally among negatives tied at that value.
  rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, m))
  chosen_by = (
      jnp.zeros((n, m), ds.dtype).at[rows, chosen].add(active.astype(ds.dtype))
  )
  tie_size = (
      jnp.zeros((n, m), ds.dtype).at[rows, rank].add(neg.astype(ds.dtype))
  )
  per_negative = chosen_by / jnp.maximum(tie_size, 1.0)
  weight = jnp.where(neg, jnp.take_along_axis(per_negative, rank, axis=1), 0.0)
  return (
      jnp.sum(jnp.where(active, hinge, 0.0)),
      active.astype(ds.dtype) - weight,
  )


def _semihard_slots(
    ds, query_labels, key_labels, order, start, end, margin, same_set
):
  """(value, d-weights) of semi-hard mining, one positive per row a pass.

  Rows are processed in blocks small enough to stay in cache across the
  passes; each block runs as many passes as its own largest run of
  positives. Pass j handles, in every row a, the j-th key of the anchor's
  label in ``order`` (its j-th positive).
  """
  n, m = ds.shape
  block = min(n, max(8, _BLOCK_ELEMENTS // m))
  pad = -n % block
  blocks = (n + pad) // block

  def split(x, fill):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
    return x.reshape((blocks, block) + x.shape[1:])

  # d_an of pair (a, p) will sit in row (position of p in order) - start[a].
  position = (
      jnp.zeros((m,), jnp.int32).at[order].set(jnp.arange(m, dtype=jnp.int32))
  )
  columns = jnp.arange(m, dtype=jnp.int32)

  def one_block(xs):
    ds, labels, start, end, rows = xs
    neg = labels[:, None] != key_labels[None, :]
    dneg = jnp.where(neg, ds, jnp.inf)
    farthest = jnp.max(jnp.where(neg, ds, -jnp.inf), axis=1)
    has_neg = (farthest > -jnp.inf) & (rows < n)  # no pass over `neg`
    here = jnp.arange(block)

    def body(state):
      j, value, weight, chosen = state
      k = start + j
      key = order[jnp.minimum(k, m - 1)]
      live = (k < end) & has_neg
      if same_set:
        live = live & (key != rows)
      d_ap = ds[here, key]
      d_an = jnp.min(jnp.where(dneg > d_ap[:, None], dneg, jnp.inf), axis=1)
      d_an = jnp.where(d_an < jnp.inf, d_an, farthest)
      hinge = d_ap - d_an + margin
      active = live & (hinge > 0)
      hit = dneg == d_an[:, None]
      share = jnp.where(
          active, 1.0 / jnp.maximum(jnp.sum(hit, axis=1), 1), 0.0
      ).astype(ds.dtype)
      weight = weight - jnp.where(hit, share[:, None], 0.0)
      value = value + jnp.sum(jnp.where(active, hinge, 0.0))
      # Both indices int32 (a literal 0 would be int64 under x64).
      chosen = jax.lax.dynamic_update_slice(
          chosen, d_an[None], (j, jnp.zeros_like(j))
      )
      return j + 1, value, weight, chosen

    num_slots = jnp.max(jnp.where(has_neg, end - start, 0))
    init = (
        jnp.int32(0),
        jnp.zeros((), ds.dtype),
        jnp.zeros_like(ds),
        jnp.zeros((m, block), ds.dtype),
    )
    _, value, weight, chosen = jax.lax.while_loop(
        lambda state: state[0] < num_slots, body, init
    )
    offset = position[None, :] - start[:, None]
    slot = jnp.clip(offset, 0, m - 1)
    d_an = jnp.take_along_axis(chosen.T, slot, axis=1)
    pos = (
        (slot == offset) & (position[None, :] < end[:, None]) & has_neg[:, None]
    )
    if same_set:
      pos = pos & (columns[None, :] != rows[:, None])
    active = pos & (ds - d_an + margin > 0)
    return value, weight + active.astype(ds.dtype)

  values, weights = jax.lax.map(
      one_block,
      (
          split(ds, 0.0),
          split(query_labels, 0),
          split(start, 0),
          split(end, 0),
          split(jnp.arange(n, dtype=jnp.int32), n),
      ),
  )
  return jnp.sum(values), weights.reshape(blocks * block, m)[:n]


def _semihard_buckets(
    ds, query_labels, key_labels, order, start, end, margin, same_set, cap
):
  """(value, d-weights) of semi-hard mining by bucketing each row.

  ``cap`` (static) bounds every anchor's number of positives. Per row the
  positives' distances are sorted (``[N, cap]``, one unsigned-integer sort);
  each candidate falls in bucket b = #{positives strictly closer}, so bucket
  b holds the negatives in (p_{b−1}, p_b], the buckets are ordered by
  distance, and a positive's bucket is its sorted position. One
  scatter-minimum gives each bucket's closest negative; positive j's
  semi-hard negative is the minimum over buckets > j (a reverse cumulative
  minimum), or the farthest negative when those are all empty.
  """
  n, m = ds.shape
  rows = jnp.arange(n, dtype=jnp.int32)
  slot = jnp.arange(cap, dtype=jnp.int32)
  k = start[:, None] + slot[None, :]
  valid = k < end[:, None]
  col = order[jnp.minimum(k, m - 1)]
  if same_set:
    valid = valid & (col != rows[:, None])
  inf = jnp.array(jnp.inf, ds.dtype)
  d_ap = jnp.where(valid, _row_gather(ds, col), inf)
  d_ap = jax.lax.bitcast_convert_type(jnp.sort(_bits(d_ap), axis=1), ds.dtype)
  valid = slot[None, :] < jnp.sum(valid, axis=1, keepdims=True)

  pos, neg = _label_masks(query_labels, key_labels, same_set)
  dneg = jnp.where(neg, ds, inf)
  farthest = jnp.max(jnp.where(neg, ds, -inf), axis=1)
  has_neg = farthest > -inf  # no pass over `neg`
  bucket = _row_searchsorted(d_ap, ds)
  flat = (rows[:, None] * (cap + 1) + bucket).reshape(-1)
  closest = (
      jnp.full((n * (cap + 1),), inf)
      .at[flat]
      .min(dneg.reshape(-1))
      .reshape(n, cap + 1)
  )
  after = _scan(jnp.minimum, closest, reverse=True)[:, 1:]
  d_an = jnp.where(after < inf, after, farthest[:, None])
  hinge = d_ap - d_an + margin
  active = valid & has_neg[:, None] & (hinge > 0)
  value = jnp.sum(jnp.where(active, hinge, 0.0))

  # Bucket b's closest negatives are chosen by positives j in [L_b, b − 1],
  # L_b the last non-empty bucket before b (0 if none); positives at or
  # after the last non-empty bucket fall back to the farthest negatives.
  ones = active.astype(ds.dtype)
  chosen_before = _exclusive_cumsum(ones)
  buckets = jnp.arange(cap + 1, dtype=jnp.int32)
  nonempty = closest < inf
  last_upto = _scan(jnp.maximum, jnp.where(nonempty, buckets, 0))
  last_before = jnp.concatenate(
      [jnp.zeros((n, 1), jnp.int32), last_upto[:, :-1]], axis=1
  )
  by_bucket = chosen_before - _row_gather(chosen_before, last_before)
  by_bucket = jnp.where(nonempty, by_bucket, 0.0)
  by_farthest = (
      chosen_before[:, cap]
      - _row_gather(chosen_before, last_upto[:, cap:])[:, 0]
  )
  # Tied negatives share a choice equally.
  at_min = neg & (dneg == _row_gather(closest, bucket))
  ties = (
      jnp.zeros((n * (cap + 1),), ds.dtype)
      .at[flat]
      .add(at_min.reshape(-1).astype(ds.dtype))
      .reshape(n, cap + 1)
  )
  at_far = neg & (ds == farthest[:, None])
  far_share = by_farthest / jnp.maximum(jnp.sum(at_far, axis=1), 1)
  share, positive_weight, far_share = materialised(
      (by_bucket / jnp.maximum(ties, 1.0), ones, far_share), ties
  )
  weight = (
      jnp.where(
          pos, _row_gather(positive_weight, jnp.minimum(bucket, cap - 1)), 0.0
      )
      - jnp.where(at_min, _row_gather(share, bucket), 0.0)
      - jnp.where(at_far, far_share[:, None], 0.0)
  )
  return value, weight


def _label_masks(query_labels, key_labels, same_set: bool):
  """(positive, negative) masks ``[N, M]``; with ``same_set`` an anchor is
  not its own positive."""
  same = query_labels[:, None] == key_labels[None, :]
  pos = same & ~jnp.eye(*same.shape, dtype=bool) if same_set else same
  return pos, ~same


def _scan(op, x: jax.Array, reverse: bool = False) -> jax.Array:
  """Cumulative ``op`` along axis 1 by a log-depth associative scan (the
  reduce-window that ``jnp.cumsum`` and ``lax.cummin`` lower to is slow on
  CPU)."""
  return jax.lax.associative_scan(op, x, reverse=reverse, axis=1)


# Rows per block of the per-positive passes: about this many distances, so
# a block's distances and weights (2 × 64 KiB) stay in the core's cache.
_BLOCK_ELEMENTS = 2**14


def semihard(
    d: jax.Array,
    query_labels: jax.Array,
    key_labels: jax.Array,
    margin,
    same_set: bool = False,
    path: str = "auto",
) -> tuple[jax.Array, jax.Array]:
  """TF-Addons semi-hard mining; every positive pair is one term.

  Candidate k is a positive of anchor a when their labels are equal (and,
  with ``same_set``, k ≠ a: queries and keys are the same rows), else a
  negative. For each pair (a, p) whose anchor has at least one negative, the
  negative is the closest one with d_an > d_ap, or else the farthest
  negative; the term is max(0, d_ap − d_an + margin). ``count`` = number of
  such pairs. Chooses the per-positive passes when the largest label group
  has at most ``_SLOTS_UP_TO`` members, else the buckets (see module
  docstring); ``path`` = ``"slots"``, ``"buckets"`` or ``"sort"`` forces
  one (for tests and benchmarks).
  """
  if path not in _PATHS:
    raise ValueError(f"path={path!r} is not one of {', '.join(_PATHS)}")
  m = d.shape[1]
  ds = jax.lax.stop_gradient(d)
  order = jnp.argsort(key_labels, stable=True).astype(jnp.int32)
  sorted_labels = key_labels[order]
  start = jnp.searchsorted(sorted_labels, query_labels, side="left").astype(
      jnp.int32
  )
  end = jnp.searchsorted(sorted_labels, query_labels, side="right").astype(
      jnp.int32
  )
  has_neg = end - start < m
  count = jnp.sum(jnp.where(has_neg, end - start - int(same_set), 0))
  args = (ds, query_labels, key_labels, order, start, end, margin, same_set)

  def by_sort():
    return _semihard_sorted(
        ds, *_label_masks(query_labels, key_labels, same_set), margin
    )

  def by_slots():
    return _semihard_slots(*args)

  # Bucket widths: powers of two from _MIN_CAP to the first one holding M.
  caps = [_MIN_CAP]
  while caps[-1] < m:
    caps.append(2 * caps[-1])
  by_buckets = [
      functools.partial(_semihard_buckets, *args, cap) for cap in caps
  ]

  num_slots = jnp.max(jnp.where(has_neg, end - start, 0))
  width = jnp.searchsorted(jnp.array(caps), num_slots).astype(jnp.int32)
  if path == "slots":
    value, weight = by_slots()
  elif path == "sort":
    value, weight = by_sort()
  elif path == "buckets":
    value, weight = jax.lax.switch(width, by_buckets)
  else:
    value, weight = jax.lax.cond(
        num_slots <= _SLOTS_UP_TO,
        by_slots,
        lambda: jax.lax.switch(width, by_buckets),
    )
  weight = jax.lax.stop_gradient(weight)
  # The second sum is exactly 0 in value; it carries the gradient.
  return value + jnp.sum(weight * (d - ds)), count


_PATHS = ("auto", "slots", "buckets", "sort")
# Largest label group for which "auto" takes the per-positive passes (each
# pass is about 1/40 of the bucket path's fixed cost, measured at B = 1024);
# the bucket widths start just above it.
_SLOTS_UP_TO = 32
_MIN_CAP = 64


def batch_all(
    d: jax.Array, pos: jax.Array, neg: jax.Array, margin
) -> tuple[jax.Array, jax.Array]:
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
  c_neg = jnp.where(
      shifted < 0,
      num_pos,
      num_pos - jnp.take_along_axis(pos_before, at, axis=1),
  )
  c_pos = jnp.where(pos, c_pos, 0).astype(d.dtype)
  c_neg = jnp.where(neg, c_neg, 0).astype(d.dtype)
  total = jnp.sum(c_pos * (d + margin)) - jnp.sum(c_neg * d)
  return total, jnp.sum(num_pos * num_neg)


def batch_hard_indices(d: jax.Array, pos: jax.Array, neg: jax.Array):
  """Per anchor, the hardest positive and hardest negative candidate.

  Returns ``(positive_index [N], negative_index [N], valid [N])``, where
  ``valid`` marks anchors with at least one positive and one negative at
  a finite distance (the indices of other anchors are arbitrary). Ties go
  to the lowest index.
  Selection is discrete, so no gradient flows through ``d`` here; callers
  recompute the 2·N selected distances from the embeddings, which keeps the
  backward pass O(N·D) instead of O(N·M).
  """
  d = jax.lax.stop_gradient(d)
  # Value first, then the lowest index holding it: two plain reductions,
  # several times faster on CPU than one variadic argmax / argmin.
  iota = jnp.arange(d.shape[1], dtype=jnp.int32)
  last = d.shape[1] - 1

  def first_index(hit):
    return jnp.minimum(jnp.min(jnp.where(hit, iota, last), axis=1), last)

  hardest_pos = jnp.max(jnp.where(pos, d, -jnp.inf), axis=1, keepdims=True)
  hardest_neg = jnp.min(jnp.where(neg, d, jnp.inf), axis=1, keepdims=True)
  positive = first_index(pos & (d == hardest_pos))
  negative = first_index(neg & (d == hardest_neg))
  # An anchor has a positive iff its hardest positive beat the -inf filler
  # (finite distances): no third pass over the [N, M] masks, which cost
  # ~30 % of the whole batch-hard step at N = M = 1024 on CPU.
  valid = (hardest_pos[:, 0] > -jnp.inf) & (hardest_neg[:, 0] < jnp.inf)
  return positive, negative, valid
