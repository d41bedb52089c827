"""Tests for avjax.losses.triplet against plain-loop NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses
from avjax.losses import _mining

# One compiled function per loss (shapes are shared across cases below), so
# the suite compiles each loss only a few times.
_METRIC = ("metric",)
_semihard = jax.jit(
    jax.value_and_grad(losses.triplet_semihard), static_argnames=_METRIC
)
_batch_hard = jax.jit(
    jax.value_and_grad(losses.triplet_batch_hard), static_argnames=_METRIC
)
_cross = jax.jit(
    jax.value_and_grad(losses.cross_modal_triplet, argnums=(0, 2)),
    static_argnames=("mining", "metric"),
)
_SINGLE = {"semihard": _semihard, "hard": _batch_hard}


# --------------------------------------------------------------------------
# Plain-loop references (float64).
# --------------------------------------------------------------------------
def _ref_dist(x, y, metric="euclidean"):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  d = np.zeros((len(x), len(y)))
  for i in range(len(x)):
    for j in range(len(y)):
      if metric == "cosine":
        nx, ny = np.linalg.norm(x[i]), np.linalg.norm(y[j])
        d[i, j] = 1.0 - (x[i] @ y[j] / (nx * ny) if nx and ny else 0.0)
      else:
        sq = np.sum((x[i] - y[j]) ** 2)
        d[i, j] = sq if metric == "squared_euclidean" else np.sqrt(sq)
  return d


def _ref_semihard(d, pos, neg, margin):
  """TF-Addons TripletSemiHardLoss rule, one loop iteration per pair."""
  total, count = 0.0, 0
  for a in range(d.shape[0]):
    negs = [d[a, n] for n in range(d.shape[1]) if neg[a, n]]
    if not negs:
      continue
    for p in range(d.shape[1]):
      if not pos[a, p]:
        continue
      farther = [x for x in negs if x > d[a, p]]
      d_an = min(farther) if farther else max(negs)
      total += max(0.0, d[a, p] - d_an + margin)
      count += 1
  return total / max(count, 1)


def _ref_batch_hard(d, pos, neg, margin):
  total, count = 0.0, 0
  for a in range(d.shape[0]):
    ps = [d[a, j] for j in range(d.shape[1]) if pos[a, j]]
    ns = [d[a, j] for j in range(d.shape[1]) if neg[a, j]]
    if ps and ns:
      total += max(0.0, max(ps) - min(ns) + margin)
      count += 1
  return total / max(count, 1)


def _ref_batch_all(d, pos, neg, margin):
  total, count = 0.0, 0
  for a in range(d.shape[0]):
    for p in range(d.shape[1]):
      for n in range(d.shape[1]):
        if pos[a, p] and neg[a, n]:
          total += max(0.0, d[a, p] - d[a, n] + margin)
          count += 1
  return total / max(count, 1)


_REFERENCES = {
    "semihard": _ref_semihard,
    "hard": _ref_batch_hard,
    "all": _ref_batch_all,
}


def _same_set_masks(labels):
  labels = np.asarray(labels)
  same = labels[:, None] == labels[None, :]
  return same & ~np.eye(len(labels), dtype=bool), ~same


def _cross_masks(query_labels, key_labels):
  same = np.asarray(query_labels)[:, None] == np.asarray(key_labels)[None, :]
  return same, ~same


# --------------------------------------------------------------------------
# Inputs: random, ties, one class, singletons, duplicates.
# --------------------------------------------------------------------------
def _case(name, seed=0, batch=20):
  rng = np.random.default_rng(seed)
  if name == "random":
    emb = rng.normal(size=(batch, 6))
    labels = rng.integers(0, 4, batch)
  elif name == "ties":  # integer lattice: many exactly repeated distances
    emb = rng.integers(-1, 2, size=(batch, 6))
    labels = rng.integers(0, 3, batch)
  elif name == "single_class":
    emb = rng.normal(size=(batch, 6))
    labels = np.zeros(batch, int)
  elif name == "singletons":  # every class has one member: no positive pair
    emb = rng.normal(size=(batch, 6))
    labels = np.arange(batch)
  elif name == "some_singletons":
    emb = rng.normal(size=(batch, 6))
    labels = np.concatenate([rng.integers(0, 2, batch - 4), np.arange(10, 14)])
  elif name == "duplicates":
    emb = rng.normal(size=(4, 6))[rng.integers(0, 4, batch)]
    labels = rng.integers(0, 3, batch)
  else:
    raise KeyError(name)
  return emb.astype(np.float32), labels.astype(np.int32)


CASES = [
    "random",
    "ties",
    "single_class",
    "singletons",
    "some_singletons",
    "duplicates",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("loss_name", ["semihard", "hard"])
def test_single_modality_matches_loop_reference(case, loss_name):
  emb, labels = _case(case)
  pos, neg = _same_set_masks(labels)
  expected = _REFERENCES[loss_name](_ref_dist(emb, emb), pos, neg, 0.5)
  got, grad = _SINGLE[loss_name](emb, labels, 0.5)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(grad))
  if case in ("single_class", "singletons"):
    assert float(got) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_semihard_other_metrics(metric):
  emb, labels = _case("random", seed=3)
  pos, neg = _same_set_masks(labels)
  expected = _ref_semihard(_ref_dist(emb, emb, metric), pos, neg, 0.3)
  got, grad = _semihard(emb, labels, 0.3, metric=metric)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case", ["random", "ties", "some_singletons", "duplicates", "single_class"]
)
@pytest.mark.parametrize("mining", losses.MINING)
def test_cross_modal_matches_loop_reference(case, mining):
  queries, query_labels = _case(case, seed=1, batch=12)
  keys, key_labels = _case(case, seed=2, batch=15)
  pos, neg = _cross_masks(query_labels, key_labels)
  expected = _REFERENCES[mining](_ref_dist(queries, keys), pos, neg, 0.7)
  got, grads = _cross(
      queries, query_labels, keys, key_labels, 0.7, mining=mining
  )
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_cross_modal_paired_data_uses_paired_key_as_positive():
  rng = np.random.default_rng(4)
  audio = rng.normal(size=(12, 6)).astype(np.float32)
  image = (audio + 0.1 * rng.normal(size=(12, 6))).astype(np.float32)
  image = np.concatenate([image, rng.normal(size=(3, 6))]).astype(np.float32)
  # Instance labels: the paired key is each query's only positive.
  ids, key_ids = np.arange(12), np.arange(15)
  pos, neg = _cross_masks(ids, key_ids)
  assert np.array_equal(pos[:, :12], np.eye(12, dtype=bool))
  for mining in losses.MINING:
    expected = _REFERENCES[mining](_ref_dist(audio, image), pos, neg, 1.0)
    got, _ = _cross(audio, ids, image, key_ids, 1.0, mining=mining)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# Gradients against a dense O(B³) JAX formulation of the same losses.
# --------------------------------------------------------------------------
def _dense_semihard(d, pos, neg, margin):
  """All (a, p, n) at once; valid only without distance ties."""
  farther = neg[:, None, :] & (d[:, None, :] > d[:, :, None])  # [a, p, n]
  big = 1e9
  closest_farther = jnp.min(jnp.where(farther, d[:, None, :], big), axis=2)
  farthest = jnp.max(jnp.where(neg, d, -1.0), axis=1, keepdims=True)
  d_an = jnp.where(jnp.any(farther, axis=2), closest_farther, farthest)
  valid = pos & jnp.any(neg, axis=1, keepdims=True)
  hinge = jnp.where(valid, jnp.maximum(d - d_an + margin, 0.0), 0.0)
  return jnp.sum(hinge) / jnp.maximum(jnp.sum(valid), 1)


def _dense_all(d, pos, neg, margin):
  trip = pos[:, :, None] & neg[:, None, :]
  hinge = jnp.maximum(d[:, :, None] - d[:, None, :] + margin, 0.0)
  return jnp.sum(jnp.where(trip, hinge, 0.0)) / jnp.maximum(jnp.sum(trip), 1)


def _dense_hard(d, pos, neg, margin):
  hp = jnp.max(jnp.where(pos, d, -1.0), axis=1)
  hn = jnp.min(jnp.where(neg, d, 1e9), axis=1)
  valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
  hinge = jnp.where(valid, jnp.maximum(hp - hn + margin, 0.0), 0.0)
  return jnp.sum(hinge) / jnp.maximum(jnp.sum(valid), 1)


@pytest.mark.parametrize(
    "mining,dense",
    [("semihard", _dense_semihard), ("hard", _dense_hard), ("all", _dense_all)],
)
def test_cross_modal_gradients_match_dense_formulation(mining, dense):
  rng = np.random.default_rng(5)
  q = rng.normal(size=(12, 6)).astype(np.float32)
  k = rng.normal(size=(15, 6)).astype(np.float32)
  ql = rng.integers(0, 3, 12).astype(np.int32)
  kl = rng.integers(0, 3, 15).astype(np.int32)
  pos, neg = _cross_masks(ql, kl)

  @jax.jit
  def reference(q, k):
    return dense(losses.pairwise_distances(q, k), pos, neg, 0.8)

  _, ours = _cross(q, ql, k, kl, 0.8, mining=mining)
  for got, want in zip(ours, jax.grad(reference, argnums=(0, 1))(q, k)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_semihard_gradient_matches_dense_formulation():
  emb, labels = _case("random", seed=6)
  pos, neg = _same_set_masks(labels)
  _, got = _semihard(emb, labels, 1.0)
  want = jax.jit(
      jax.grad(
          lambda e: _dense_semihard(
              losses.pairwise_distances(e, e), pos, neg, 1.0
          )
      )
  )(emb)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_tied_negatives_share_the_gradient():
  # Query at the origin, positive key at distance 1, two negative keys tied
  # at distance 2: each negative gets half of the pair's gradient −1 on d_an.
  query = np.zeros((1, 2), np.float32)
  keys = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], np.float32)
  loss, (_, grad) = _cross(
      query, np.array([0]), keys, np.array([0, 1, 2]), 5.0, mining="semihard"
  )
  np.testing.assert_allclose(loss, 1.0 - 2.0 + 5.0)
  np.testing.assert_allclose(grad, [[1.0, 0.0], [0.0, -0.5], [0.0, 0.5]])


# --------------------------------------------------------------------------
# Transformations, cost and errors.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["semihard", "hard", "all"])
def test_vmap_matches_per_batch_jit(name):
  """vmap over a batch of batches (one per input case) = one call each."""
  batches = [_case(c, seed=s) for s, c in enumerate(CASES)]
  emb = np.stack([b[0] for b in batches])
  labels = np.stack([b[1] for b in batches])
  if name == "all":

    def one(e, l):
      return _cross(e, l, e[::-1], l[::-1], 0.5, mining="all")

  else:

    def one(e, l):
      return _SINGLE[name](e, l, 0.5)

  values, grads = jax.jit(jax.vmap(one))(emb, labels)
  for k in range(len(batches)):
    value, grad = one(emb[k], labels[k])
    np.testing.assert_allclose(values[k], value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        jax.tree.leaves(grads)[0][k],
        jax.tree.leaves(grad)[0],
        rtol=1e-5,
        atol=1e-6,
    )
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_semihard_memory_is_quadratic_not_cubic():
  b = 512
  emb = jnp.zeros((b, 16))
  labels = jnp.arange(b) % 7
  compiled = (
      jax.jit(jax.value_and_grad(losses.triplet_semihard))
      .lower(emb, labels)
      .compile()
  )
  stats = compiled.memory_analysis()
  if stats is None:
    pytest.skip("backend reports no memory analysis")
  # A [B, B, B] float tensor would need 512 · B² · 4 bytes.
  assert stats.temp_size_in_bytes < 64 * b * b * 4


def test_bad_inputs_raise():
  emb = jnp.zeros((4, 3))
  labels = jnp.zeros(4, jnp.int32)
  with pytest.raises(ValueError, match="mining"):
    losses.cross_modal_triplet(emb, labels, emb, labels, mining="easy")
  with pytest.raises(ValueError, match="margin"):
    losses.triplet_semihard(emb, labels, margin=-1.0)
  with pytest.raises(ValueError, match="labels"):
    losses.triplet_batch_hard(emb, jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="metric"):
    losses.triplet_semihard(emb, labels, metric="l1")
  with pytest.raises(ValueError, match="embedding size"):
    losses.cross_modal_triplet(emb, labels, jnp.zeros((4, 2)), labels)


# --------------------------------------------------------------------------
# The three semi-hard algorithms (per-positive passes, buckets, row sort) on
# their own.
# --------------------------------------------------------------------------
def _mined_semihard(path, same_set):
  def loss(queries, query_labels, keys, key_labels, margin):
    d = losses.pairwise_distances(queries, keys)
    total, count = _mining.semihard(
        d, query_labels, key_labels, margin, same_set=same_set, path=path
    )
    return total / jnp.maximum(count, 1)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 2)))


_PATHS = {
    (path, same): _mined_semihard(path, same)
    for path in ("slots", "buckets", "sort", "auto")
    for same in (True, False)
}


_ALGORITHMS = ["slots", "buckets", "sort"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", _ALGORITHMS)
def test_semihard_paths_match_loop_reference(case, path):
  emb, labels = _case(case, seed=7)
  pos, neg = _same_set_masks(labels)
  # A wide margin makes every pair active, an anchor paired with itself too
  # (which must not count).
  expected = _ref_semihard(_ref_dist(emb, emb), pos, neg, 9.0)
  got, _ = _PATHS[path, True](emb, labels, emb, labels, 9.0)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  expected = _ref_semihard(_ref_dist(emb, emb), pos, neg, 0.5)
  got, grads = _PATHS[path, True](emb, labels, emb, labels, 0.5)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # Same value and the same gradient (ties shared alike) from every path.
  for other in _ALGORITHMS:
    want, want_grads = _PATHS[other, True](emb, labels, emb, labels, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for g, w in zip(grads, want_grads):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)

  queries, query_labels = _case(case, seed=8, batch=12)
  pos, neg = _cross_masks(query_labels, labels)
  expected = _ref_semihard(_ref_dist(queries, emb), pos, neg, 0.5)
  got, _ = _PATHS[path, False](queries, query_labels, emb, labels, 0.5)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", _ALGORITHMS)
def test_semihard_paths_share_tied_negatives_gradient(path):
  # As test_tied_negatives_share_the_gradient, plus a second positive that
  # has no farther negative (falls back to the tied farthest pair).
  query = np.zeros((1, 2), np.float32)
  keys = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, -2.0], [3.0, 0.0]], np.float32)
  loss, (_, grad) = _PATHS[path, False](
      query, np.array([0]), keys, np.array([0, 1, 2, 0]), 5.0
  )
  # Pairs: (d_ap 1, d_an 2) and (d_ap 3, fallback farthest d_an 2).
  np.testing.assert_allclose(loss, ((1 - 2 + 5) + (3 - 2 + 5)) / 2)
  np.testing.assert_allclose(
      grad, [[0.5, 0.0], [0.0, -0.5], [0.0, 0.5], [0.5, 0.0]], atol=1e-6
  )


def test_semihard_auto_path_on_a_large_label_group():
  # Two classes of ~100 in B = 200: the largest group exceeds the slot limit,
  # so "auto" takes the buckets (cap 128); both must match the loop.
  assert _mining._SLOTS_UP_TO < 100
  rng = np.random.default_rng(9)
  emb = rng.normal(size=(200, 4)).astype(np.float32)
  labels = (np.arange(200) % 2).astype(np.int32)
  pos, neg = _same_set_masks(labels)
  expected = _ref_semihard(_ref_dist(emb, emb), pos, neg, 0.4)
  auto, auto_grads = _PATHS["auto", True](emb, labels, emb, labels, 0.4)
  slots, slot_grads = _PATHS["slots", True](emb, labels, emb, labels, 0.4)
  np.testing.assert_allclose(auto, expected, rtol=1e-5)
  np.testing.assert_allclose(slots, expected, rtol=1e-5)
  np.testing.assert_allclose(auto_grads[0], slot_grads[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("path", _ALGORITHMS)
def test_semihard_path_gradients_match_dense_formulation(path):
  # Large groups (two classes in 40) and small ones (12 classes), so that
  # the buckets see many empty and many full buckets; no distance ties.
  rng = np.random.default_rng(11)
  emb = rng.normal(size=(40, 5)).astype(np.float32)
  for labels in (np.arange(40) % 2, rng.integers(0, 12, 40)):
    labels = labels.astype(np.int32)
    pos, neg = _same_set_masks(labels)
    want = jax.grad(
        lambda e: _dense_semihard(
            losses.pairwise_distances(e, e), pos, neg, 0.7
        )
    )(emb)
    # Queries and keys are the same rows: their gradients add up.
    _, (by_query, by_key) = _PATHS[path, True](emb, labels, emb, labels, 0.7)
    np.testing.assert_allclose(by_query + by_key, want, rtol=1e-4, atol=1e-6)


def test_semihard_unknown_path_raises():
  d = jnp.ones((3, 3))
  labels = jnp.arange(3)
  with pytest.raises(ValueError, match="path"):
    _mining.semihard(d, labels, labels, 1.0, path="fast")


def test_batch_hard_ties_go_to_the_lowest_index():
  # Negatives 1 and 2 tie for the hardest (distance 2); key 1 takes it all.
  query = np.zeros((1, 2), np.float32)
  keys = np.array(
      [[1.0, 0.0], [0.0, 2.0], [0.0, -2.0], [-1.0, 0.0]], np.float32
  )
  loss, (_, grad) = _cross(
      query, np.array([0]), keys, np.array([0, 1, 2, 0]), 5.0, mining="hard"
  )
  np.testing.assert_allclose(loss, 1.0 - 2.0 + 5.0)
  # Hardest positive: keys 0 and 3 tie at distance 1, key 0 takes it.
  np.testing.assert_allclose(
      grad, [[1.0, 0.0], [0.0, -1.0], [0.0, 0.0], [0.0, 0.0]]
  )


@pytest.mark.parametrize(
    "width", [1, 7, _mining._COUNT_UP_TO, _mining._COUNT_UP_TO + 1, 700]
)
@pytest.mark.parametrize("dtype", [np.float32, np.uint32])
def test_row_searchsorted_matches_numpy(width, dtype):
  # Both strategies (a count up to _COUNT_UP_TO columns, the two-level
  # search beyond), with ties, queries equal to stored values, below the
  # first and above the last, and inf / max-int entries like the callers'.
  rng = np.random.default_rng(width)
  rows = rng.integers(0, 50, size=(9, width)).astype(dtype)
  top = np.inf if dtype == np.float32 else np.iinfo(dtype).max
  rows[0, width // 2 :] = top
  rows = np.sort(rows, axis=1)
  low = -1 if dtype == np.float32 else 0
  queries = rng.integers(low, 52, size=(9, 40)).astype(dtype)
  queries[:, :3] = rows[:, [0, width // 2, width - 1]]
  got = np.asarray(jax.jit(_mining._row_searchsorted)(rows, queries))
  want = np.stack(
      [np.searchsorted(r, q, side="left") for r, q in zip(rows, queries)]
  )
  np.testing.assert_array_equal(got, want)
