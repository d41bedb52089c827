"""Tests for avjax.losses.interpolation (synthetic interpolated negatives)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses

_augment = jax.jit(
    losses.augment_with_interpolated_negatives,
    static_argnames=("num_per_anchor", "metric"),
)


def _data(seed=0, num_q=6, num_k=8, dim=4, classes=3):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(num_q, dim)).astype(np.float32),
      rng.integers(0, classes, num_q).astype(np.int32),
      rng.normal(size=(num_k, dim)).astype(np.float32),
      rng.integers(0, classes, num_k).astype(np.int32),
  )


def _ref_augment(q, ql, k, kl, alpha, num):
  """Nearest-negative interpolation with explicit loops, float64."""
  new_keys, new_labels = [], []
  for i in range(len(q)):
    negs = [j for j in range(len(k)) if kl[j] != ql[i]]
    negs.sort(key=lambda j: np.linalg.norm(q[i].astype(np.float64) - k[j]))
    for j in negs[:num]:
      new_keys.append(k[j] + alpha * (q[i] - k[j]))
      new_labels.append(kl[j])
  return (
      np.concatenate([k, np.array(new_keys)]),
      np.concatenate([kl, np.array(new_labels)]),
  )


def _ref_hard(q, ql, k, kl, margin):
  total, count = 0.0, 0
  for i in range(len(q)):
    d = [np.linalg.norm(q[i].astype(np.float64) - k[j]) for j in range(len(k))]
    ps = [d[j] for j in range(len(k)) if kl[j] == ql[i]]
    ns = [d[j] for j in range(len(k)) if kl[j] != ql[i]]
    if ps and ns:
      total += max(0.0, max(ps) - min(ns) + margin)
      count += 1
  return total / max(count, 1)


def test_interpolate_negatives_formula_and_distance():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(5, 3)).astype(np.float32)
  n = rng.normal(size=(5, 3)).astype(np.float32)
  alpha = np.array([0.0, 0.2, 0.5, 0.7, 0.95], np.float32)
  got = jax.jit(losses.interpolate_negatives)(a, n, alpha)
  for i in range(5):
    np.testing.assert_allclose(
        got[i], n[i] + alpha[i] * (a[i] - n[i]), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        np.linalg.norm(a[i] - got[i]),
        (1 - alpha[i]) * np.linalg.norm(a[i] - n[i]),
        rtol=1e-5,
    )
  np.testing.assert_allclose(
      losses.interpolate_negatives(a, n, 0.25), n + 0.25 * (a - n), rtol=1e-6
  )


@pytest.mark.parametrize("alpha", [1.0, -0.1, 1.5, np.array([0.2, 1.0])])
def test_alpha_outside_unit_interval_raises(alpha):
  a = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="alpha"):
    losses.interpolate_negatives(a, a + 1, alpha)
  with pytest.raises(ValueError, match="alpha"):
    losses.augment_with_interpolated_negatives(
        a, jnp.array([0, 1]), a, jnp.array([1, 0]), alpha
    )


def test_alpha_shape_and_num_per_anchor_errors():
  q, ql, k, kl = _data()
  with pytest.raises(ValueError, match="alpha"):
    losses.interpolate_negatives(q, k[:6], np.zeros(4))
  with pytest.raises(ValueError, match="alpha"):
    losses.augment_with_interpolated_negatives(q, ql, k, kl, np.zeros(5))
  with pytest.raises(ValueError, match="num_per_anchor"):
    losses.augment_with_interpolated_negatives(
        q, ql, k, kl, 0.5, num_per_anchor=9
    )
  with pytest.raises(ValueError, match="key_labels"):
    losses.augment_with_interpolated_negatives(q, ql, k, kl[:3], 0.5)


@pytest.mark.parametrize("num", [1, 2])
def test_nearest_negatives_match_loop_reference(num):
  q, ql, k, kl = _data(seed=1)
  keys, labels = _augment(q, ql, k, kl, 0.4, num_per_anchor=num)
  ref_keys, ref_labels = _ref_augment(q, ql, k, kl, 0.4, num)
  assert keys.shape == (8 + 6 * num, 4) and labels.shape == (8 + 6 * num,)
  np.testing.assert_allclose(keys, ref_keys, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(labels, ref_labels)


def test_random_negatives_are_distinct_negatives():
  q, ql, k, kl = _data(seed=2, num_k=12)
  keys, labels = _augment(
      q, ql, k, kl, 0.0, jax.random.key(0), num_per_anchor=3
  )
  synthetic = np.asarray(keys[12:]).reshape(6, 3, 4)
  for i in range(6):
    # With alpha = 0 every synthetic key is a copy of the key it came from.
    picked = [int(np.argmin(np.abs(k - s).sum(1))) for s in synthetic[i]]
    assert len(set(picked)) == 3
    assert all(kl[j] != ql[i] for j in picked)
    np.testing.assert_array_equal(labels[12 + 3 * i : 15 + 3 * i], kl[picked])
  again, _ = _augment(q, ql, k, kl, 0.0, jax.random.key(0), num_per_anchor=3)
  other, _ = _augment(q, ql, k, kl, 0.0, jax.random.key(1), num_per_anchor=3)
  np.testing.assert_array_equal(again, keys)
  assert not np.array_equal(other, keys)


def test_spare_slots_copy_existing_keys_and_leave_hard_loss_unchanged():
  q = np.array([[0.0, 0.0]], np.float32)
  k = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]], np.float32)
  ql, kl = np.array([0]), np.array([0, 1, 0])  # one negative only
  keys, labels = _augment(q, ql, k, kl, 0.5, num_per_anchor=3)
  np.testing.assert_allclose(keys[3], [0.0, 1.5])  # the real negative, moved
  assert labels[3] == 1
  for extra, label in zip(keys[4:], labels[4:]):
    match = [j for j in range(3) if np.array_equal(k[j], extra)]
    assert match and kl[match[0]] == label == 0
  one_keys, one_labels = _augment(q, ql, k, kl, 0.5, num_per_anchor=1)
  hard = jax.jit(lambda *args: losses.cross_modal_triplet(*args, 1.0, "hard"))
  np.testing.assert_allclose(
      hard(q, ql, keys, labels), hard(q, ql, one_keys, one_labels)
  )


_hard_on_augmented = jax.jit(
    jax.value_and_grad(
        lambda q, ql, k, kl, alpha: losses.cross_modal_triplet(
            q,
            ql,
            *losses.augment_with_interpolated_negatives(q, ql, k, kl, alpha),
            margin=0.5,
            mining="hard"
        ),
        argnums=(0, 2),
    )
)


def test_hard_mining_on_augmented_keys_matches_reference_and_grows():
  q, ql, k, kl = _data(seed=3)
  values = []
  for alpha in (0.0, 0.3, 0.6, 0.9):
    value, grads = _hard_on_augmented(q, ql, k, kl, alpha)
    ref_keys, ref_labels = _ref_augment(q, ql, k, kl, alpha, 1)
    np.testing.assert_allclose(
        value, _ref_hard(q, ql, ref_keys, ref_labels, 0.5), rtol=1e-5, atol=1e-6
    )
    assert all(np.all(np.isfinite(g)) for g in grads)
    values.append(float(value))
  assert values == sorted(values) and values[-1] > values[0]


def test_degenerate_embeddings_have_finite_gradients():
  q, ql, k, kl = _data(seed=4)
  q[0] = 0.0
  k[1] = 0.0
  k[2] = q[1]  # a key identical to a query
  q[3] = q[2]
  value, grads = _hard_on_augmented(q, ql, k, kl, 0.5)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_vmap_matches_per_batch_jit():
  sets = [_data(seed=s) for s in range(3)]
  stacked = [np.stack(x) for x in zip(*sets)]
  alphas = np.array([0.1, 0.5, 0.8], np.float32)
  mapped_keys, mapped_labels = jax.vmap(
      lambda q, ql, k, kl, a: _augment(q, ql, k, kl, a)
  )(*stacked, alphas)
  for i, (q, ql, k, kl) in enumerate(sets):
    keys, labels = _augment(q, ql, k, kl, alphas[i])
    np.testing.assert_allclose(mapped_keys[i], keys, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(mapped_labels[i], labels)


def _ref_own_synthetic_loss(q, ql, k, kl, alpha, num, margin):
  """Loop reference in jnp: each query sees only its own synthetic keys."""
  total, count = 0.0, 0
  for i in range(q.shape[0]):
    pos = [j for j in range(k.shape[0]) if kl[j] == ql[i]]
    neg = [j for j in range(k.shape[0]) if kl[j] != ql[i]]
    if not pos or not neg:
      continue
    dist = lambda x, y: jnp.sqrt(jnp.sum(jnp.square(x - y)))
    near = lambda j: np.linalg.norm(
        np.asarray(jax.lax.stop_gradient(q[i] - k[j]), np.float64)
    )
    order = sorted(neg, key=near)[:num]
    negatives = [dist(q[i], k[j]) for j in neg]
    negatives += [dist(q[i], k[j] + alpha * (q[i] - k[j])) for j in order]
    d_ap = max(dist(q[i], k[j]) for j in pos)
    total = total + jnp.maximum(d_ap - min(negatives) + margin, 0.0)
    count += 1
  return total / max(count, 1)


@pytest.mark.parametrize("num", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 0.9])
def test_interpolated_hard_triplet_matches_own_synthetic_reference(num, alpha):
  q, ql, k, kl = _data(seed=5, num_q=7, num_k=9, dim=5)
  fn = jax.jit(
      jax.value_and_grad(losses.interpolated_hard_triplet, argnums=(0, 2)),
      static_argnames=("num_per_anchor",),
  )
  value, grads = fn(q, ql, k, kl, alpha, margin=0.5, num_per_anchor=num)
  ref_fn = jax.value_and_grad(_ref_own_synthetic_loss, argnums=(0, 2))
  ref_value, ref_grads = ref_fn(
      jnp.asarray(q), ql, jnp.asarray(k), kl, alpha, num, 0.5
  )
  np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-6)
  for got, want in zip(grads, ref_grads):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_synthetic_key_is_never_another_anchors_positive():
  # Anchors a0 (class 0) and a1 (class 1). a0's nearest negative is n1
  # (class 1); its synthetic key s = n1 + α(a0 − n1) lies next to a0. In a
  # pool shared by all anchors, s would be a1's farthest "positive" and pull
  # a1 towards class 0. Scored against its own synthetic keys only, a1's
  # loss and gradient ignore s entirely.
  q = np.array([[0.0, 0.0], [3.0, 0.0]], np.float32)
  ql = np.array([0, 1], np.int32)
  k = np.array([[0.0, 0.5], [2.0, 0.0]], np.float32)  # p0, n1 (class 1)
  kl = np.array([0, 1], np.int32)
  alpha = 0.9
  grad = jax.grad(losses.interpolated_hard_triplet)
  g = grad(q, ql, k, kl, alpha, margin=0.5)
  # a1: positive n1 at 1.0; negatives p0 (3.04) and its own synthetic
  # p0 + α(a1 − p0), at 0.1·3.04 = 0.30: hinge 1.0 − 0.30 + 0.5 > 0.
  # a1's gradient: towards n1 (−x) and away from its synthetic negative,
  # which is scaled by (1 − α) — nothing from a0's synthetic key.
  own = losses.interpolated_hard_triplet(
      q[1:], ql[1:], k, kl, alpha, margin=0.5
  )
  both = losses.interpolated_hard_triplet(q, ql, k, kl, alpha, margin=0.5)
  only_a0 = losses.interpolated_hard_triplet(
      q[:1], ql[:1], k, kl, alpha, margin=0.5
  )
  np.testing.assert_allclose(both, 0.5 * (own + only_a0), rtol=1e-6)
  g_own = grad(q[1:], ql[1:], k, kl, alpha, margin=0.5)
  np.testing.assert_allclose(g[1], 0.5 * g_own[0], rtol=1e-5, atol=1e-7)
  # The shared pool (Embedding Expansion form) does mine a0's synthetic key
  # as a1's hardest positive: its hardest positive distance jumps from 1.0.
  keys, labels = losses.augment_with_interpolated_negatives(q, ql, k, kl, alpha)
  d = np.linalg.norm(q[1] - np.asarray(keys)[np.asarray(labels) == 1], axis=1)
  assert d.max() > 2.5  # a0's synthetic key, ~2.8 from a1
