"""Tests for avjax.losses.distances (pairwise_distances)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses
from avjax.losses import distances

_dist = jax.jit(losses.pairwise_distances, static_argnames="metric")
# Value and gradient of the summed distances w.r.t. both inputs.
_sum_and_grads = jax.jit(
    jax.value_and_grad(
        lambda x, y, metric: jnp.sum(losses.pairwise_distances(x, y, metric)),
        argnums=(0, 1),
    ),
    static_argnames="metric",
)


def _reference(x, y, metric):
  """Plain loop over all row pairs, float64."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  out = np.zeros((len(x), len(y)))
  for i in range(len(x)):
    for j in range(len(y)):
      if metric == "cosine":
        nx, ny = np.linalg.norm(x[i]), np.linalg.norm(y[j])
        cos = 0.0 if nx == 0 or ny == 0 else x[i] @ y[j] / (nx * ny)
        out[i, j] = 1.0 - cos
      else:
        sq = np.sum((x[i] - y[j]) ** 2)
        out[i, j] = sq if metric == "squared_euclidean" else np.sqrt(sq)
  return out


@pytest.mark.parametrize("metric", losses.METRICS)
def test_matches_loop_reference(metric):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(7, 5)).astype(np.float32)
  y = rng.normal(size=(4, 5)).astype(np.float32)
  got = _dist(x, y, metric=metric)
  assert got.shape == (7, 4)
  np.testing.assert_allclose(
      got, _reference(x, y, metric), rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize("metric", losses.METRICS)
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_identical_rows_are_exactly_zero_with_finite_grads(metric, scale):
  rng = np.random.default_rng(1)
  x = (rng.normal(size=(6, 64)) * scale).astype(np.float32)
  x[3] = x[1]  # a duplicate row
  d = _dist(x, x, metric=metric)
  np.testing.assert_array_equal(np.diag(d), 0.0)
  assert d[1, 3] == 0.0 and d[3, 1] == 0.0
  _, grads = _sum_and_grads(x, x, metric=metric)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_euclidean_gradient_at_zero_distance_is_zero():
  x = np.array([[1.0, 2.0]], np.float32)
  _, grads = _sum_and_grads(x, x, metric="euclidean")
  np.testing.assert_array_equal(grads, 0.0)


@pytest.mark.parametrize("metric", losses.METRICS)
def test_zero_vectors_are_finite(metric):
  x = np.zeros((3, 4), np.float32)
  y = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
  d = _dist(x, y, metric=metric)
  np.testing.assert_allclose(d, _reference(x, y, metric), atol=1e-6)
  _, (gx, gy) = _sum_and_grads(x, y, metric=metric)
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))


@pytest.mark.parametrize("metric", losses.METRICS)
def test_vmap_matches_per_batch_calls(metric):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 5, 4)).astype(np.float32)
  y = rng.normal(size=(3, 6, 4)).astype(np.float32)
  batched = jax.jit(
      jax.vmap(lambda a, b: losses.pairwise_distances(a, b, metric))
  )(x, y)
  for k in range(3):
    np.testing.assert_allclose(
        batched[k], _dist(x[k], y[k], metric=metric), rtol=1e-6, atol=1e-6
    )


def test_integer_inputs_are_promoted_to_float():
  x = np.array([[0, 0], [3, 4]])
  np.testing.assert_array_equal(_dist(x, x), [[0.0, 5.0], [5.0, 0.0]])


def test_bad_inputs_raise():
  x = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="metric"):
    losses.pairwise_distances(x, x, "manhattan")
  with pytest.raises(ValueError, match="feature sizes"):
    losses.pairwise_distances(x, jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    losses.pairwise_distances(jnp.zeros(3), x)


def _near_pair(distance, dim=64, seed=2):
  """Two unit vectors ``distance`` apart (float32)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=dim)
  x /= np.linalg.norm(x)
  u = rng.normal(size=dim)
  u -= (u @ x) * x
  y = x + distance * u / np.linalg.norm(u)
  y /= np.linalg.norm(y)
  return x[None].astype(np.float32), y[None].astype(np.float32)


@pytest.mark.parametrize("distance", [1e-4, 1e-3, 2e-3])
def test_near_collapsed_pair_keeps_a_gradient_apart(distance):
  # Below the Gram formula's rounding (~2.8e-3 for unit 64-d vectors) the
  # value reads 0, but the gradient must still point along y − x.
  x, y = _near_pair(distance)
  gy = jax.grad(lambda y: losses.pairwise_distances(x, y)[0, 0])(y)[0]
  diff = (y - x)[0].astype(np.float64)
  cos = float(gy @ diff) / (np.linalg.norm(gy) * np.linalg.norm(diff))
  assert cos > 0.99
  # Magnitude ‖y − x‖ / δ ∈ (0, 1], never above the true distance's 1.
  assert 0.5 * distance / 2.8e-3 < np.linalg.norm(gy) <= 1.0 + 1e-3


def test_semihard_pushes_a_near_collapsed_negative_away():
  # An audio anchor, its image positive 0.5 away and an image of another
  # class only 1e-3 away: the loss must move that negative away.
  a, n = _near_pair(1e-3, seed=3)
  _, p = _near_pair(0.5, seed=3)
  keys = np.concatenate([p, n])
  labels = np.array([0, 1], np.int32)
  grad = jax.grad(
      lambda k: losses.cross_modal_triplet(
          a, labels[:1], k, labels, 0.2, mining="semihard"
      )
  )(keys)
  away = (n - a)[0].astype(np.float64)
  assert float(-grad[1] @ away) > 0.1 * np.linalg.norm(away)


def test_l2_normalize_gradient_is_bounded_at_zero_and_exact_elsewhere():
  normalize = losses.distances.safe_l2_normalize
  w = np.random.default_rng(4).normal(size=(1, 8)).astype(np.float32)
  grad = jax.grad(lambda x: jnp.sum(normalize(x) * w))
  g0 = grad(np.zeros((1, 8), np.float32))
  assert np.isfinite(g0).all()
  assert np.linalg.norm(g0) <= 1e3 * np.linalg.norm(w) * (1 + 1e-6)
  # Tiny (but nonzero) vectors: bounded as well.
  g_small = grad(np.full((1, 8), 1e-9, np.float32))
  assert np.linalg.norm(g_small) <= 1e3 * np.linalg.norm(w) * (1 + 1e-6)
  # Ordinary vectors: the exact Jacobian (I − x̂x̂ᵀ)/‖x‖, float64 reference.
  x = np.random.default_rng(5).normal(size=(1, 8))
  norm = np.linalg.norm(x)
  unit = x[0] / norm
  want = (np.eye(8) - np.outer(unit, unit)) @ w[0].astype(np.float64) / norm
  np.testing.assert_allclose(grad(x.astype(np.float32))[0], want, rtol=1e-5)


def _difference_form(x, y, metric):
  """Distances without a Gram matrix (row differences; broadcast products
  for cosine): an independent reference for gradients."""
  if metric == "cosine":
    nx = x / jnp.linalg.norm(x, axis=1, keepdims=True)
    ny = y / jnp.linalg.norm(y, axis=1, keepdims=True)
    return 1.0 - jnp.sum(nx[:, None, :] * ny[None, :, :], axis=-1)
  sq = jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), axis=-1)
  if metric == "squared_euclidean":
    return sq
  # Zero-distance pairs (a set's diagonal) are weighted 0 by the caller;
  # sqrt's infinite slope there would still make their gradient NaN.
  return jnp.sqrt(jnp.where(sq > 0, sq, 1.0))


# One set against itself (`_gram`), a small pair of sets (plain dot) and one
# past `_REVERSE_LAYOUT_FROM` (`_matmul_t`).
_GRAD_SHAPES = {
    "same_set": (40, None),
    "cross": (30, 20),
    "cross_large": (520, 510),
}


@pytest.mark.parametrize("shapes", sorted(_GRAD_SHAPES))
@pytest.mark.parametrize("metric", losses.METRICS)
def test_gradients_match_the_difference_form(shapes, metric):
  n, m = _GRAD_SHAPES[shapes]
  if shapes == "cross_large":
    assert n * m >= distances._REVERSE_LAYOUT_FROM
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
  y = x if m is None else jnp.asarray(rng.normal(size=(m, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(n, n if m is None else m)), jnp.float32)
  if m is None:  # The diagonal (zero distance) has its own gradient rule.
    w = w * (1.0 - jnp.eye(n))

  def weighted(fn):
    if m is None:
      return lambda a: jnp.sum(w * fn(a, a))
    return lambda a, b: jnp.sum(w * fn(a, b))

  args = (x,) if m is None else (x, y)
  argnums = tuple(range(len(args)))
  ours = weighted(functools.partial(losses.pairwise_distances, metric=metric))
  ref = weighted(functools.partial(_difference_form, metric=metric))
  got = jax.jit(jax.grad(ours, argnums))(*args)
  want = jax.grad(ref, argnums)(*args)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-3 * np.abs(r).max())
  # Forward mode (the Gram products' custom JVPs) agrees with reverse mode.
  tangents = tuple(
      jnp.asarray(rng.normal(size=a.shape), jnp.float32) for a in args
  )
  _, directional = jax.jvp(ours, args, tangents)
  expected = sum(jnp.vdot(g, t) for g, t in zip(got, tangents))
  np.testing.assert_allclose(directional, expected, rtol=1e-3)


@pytest.mark.parametrize("shapes", ["same_set", "cross_large"])
def test_hessian_vector_products_agree_across_modes(shapes):
  # Second derivatives through the Gram products' custom JVPs: reverse over
  # reverse equals forward over reverse, and, for two sets, the difference
  # form's (a set's own diagonal, at distance 0, has none to compare). The
  # cross case differentiates the second set, which reaches `_matmul_t`'s
  # barrier term.
  n, m = _GRAD_SHAPES[shapes]
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
  y = x if m is None else jnp.asarray(rng.normal(size=(m, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(n, len(y))), jnp.float32)
  if m is None:
    w = w * (1.0 - jnp.eye(n))
  v = jnp.asarray(rng.normal(size=y.shape), jnp.float32)

  def loss(fn):
    if m is None:
      return lambda b: jnp.sum(w * fn(b, b))
    return lambda b: jnp.sum(w * fn(x, b))

  def hvps(f):
    by_reverse = jax.grad(lambda b: jnp.vdot(jax.grad(f)(b), v))(y)
    by_forward = jax.jvp(jax.grad(f), (y,), (v,))[1]
    return by_reverse, by_forward

  ours = hvps(loss(losses.pairwise_distances))
  np.testing.assert_allclose(ours[0], ours[1], rtol=1e-3, atol=1e-4)
  if m is not None:
    euclidean = functools.partial(_difference_form, metric="euclidean")
    want, _ = hvps(loss(euclidean))
    np.testing.assert_allclose(
        ours[0], want, rtol=2e-3, atol=2e-3 * np.abs(want).max()
    )
