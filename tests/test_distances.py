"""Tests for avjax.losses.distances (pairwise_distances)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses

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
