"""In-batch AVC partner samplers: definitions, fallbacks, determinism."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.methods import sampling

KEY = jax.random.PRNGKey(0)
# Jitted once per shape: eager dispatch of every small op is slow on CPU.
soft_positive = jax.jit(sampling.soft_positive)
random_negative = jax.jit(sampling.random_negative)
easy_negative = jax.jit(sampling.easy_negative)
hard_negative = jax.jit(sampling.hard_negative)


def sample_partners(key, labels, ids, positives, negatives, **kwargs):
  fn = functools.partial(
      sampling.sample_partners,
      positives=positives,
      negatives=negatives,
      num_negatives=kwargs.pop("num_negatives", 1),
  )
  return jax.jit(fn)(key, labels, ids, **kwargs)


def _batch(seed=0, b=32, classes=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, b).astype(np.int32)
  ids = rng.permutation(1000)[:b].astype(np.int32)
  emb = rng.normal(size=(b, 5)).astype(np.float32)
  dist = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
  return labels, ids, dist


def test_soft_positive_has_anchor_class_and_other_clip():
  labels, ids, _ = _batch()
  for seed in range(5):
    idx, valid = map(
        np.asarray, soft_positive(jax.random.PRNGKey(seed), labels, ids)
    )
    assert valid.all()
    np.testing.assert_array_equal(labels[idx], labels)
    assert (ids[idx] != ids).all()
    assert (idx != np.arange(len(ids))).all()


def test_soft_positive_is_uniform_over_class_members():
  labels = np.array([0, 0, 0, 0, 1, 1], np.int32)
  ids = np.arange(6, dtype=np.int32)
  keys = jax.random.split(KEY, 600)
  idx = np.asarray(jax.vmap(lambda k: soft_positive(k, labels, ids)[0])(keys))
  counts = np.bincount(idx[:, 0], minlength=6)
  assert counts[0] == 0 and counts[4:].sum() == 0
  np.testing.assert_allclose(counts[1:4] / 600, 1 / 3, atol=0.07)


def test_random_negative_is_another_clip_of_any_class():
  labels, ids, _ = _batch()
  idx, valid = map(np.asarray, random_negative(KEY, labels, ids))
  assert valid.all()
  assert (ids[idx] != ids).all()
  keys = jax.random.split(KEY, 200)
  many = np.asarray(
      jax.vmap(lambda k: random_negative(k, labels, ids)[0])(keys)
  )
  assert (labels[many] == labels[None]).any()  # Same class is allowed.


def test_hard_negative_is_closest_different_class_item():
  labels, ids, dist = _batch()
  idx, valid = map(np.asarray, hard_negative(KEY, labels, ids, dist))
  assert valid.all()
  expected = np.where(labels[:, None] != labels[None], dist, np.inf).argmin(1)
  np.testing.assert_array_equal(idx, expected)


def test_easy_negative_is_farthest_different_class_item():
  labels, ids, dist = _batch()
  idx, valid = map(np.asarray, easy_negative(KEY, labels, ids, dist))
  assert valid.all()
  expected = np.where(labels[:, None] != labels[None], dist, -np.inf).argmax(1)
  np.testing.assert_array_equal(idx, expected)


def test_easy_negative_by_label_distance():
  labels = np.array([0, 1, 5, 9, 9], np.int32)
  ids = np.arange(5, dtype=np.int32)
  d = sampling.label_distances(jnp.asarray(labels))
  idx, _ = map(np.asarray, easy_negative(KEY, labels, ids, d))
  assert labels[idx[0]] == 9 and labels[idx[1]] == 9
  assert labels[idx[3]] == 0 and labels[idx[2]] == 0
  custom = np.ones((10, 10), np.float32)
  custom[9, 1] = custom[1, 9] = 5.0
  d2 = sampling.label_distances(jnp.asarray(labels), custom)
  idx2, _ = map(np.asarray, easy_negative(KEY, labels, ids, d2))
  assert idx2[3] == 1 and idx2[4] == 1


def test_no_sampler_returns_the_anchor():
  labels, ids, dist = _batch(seed=3, b=16, classes=3)
  for seed in range(10):
    k = jax.random.PRNGKey(seed)
    for idx, valid in (
        soft_positive(k, labels, ids),
        random_negative(k, labels, ids),
        easy_negative(k, labels, ids, dist),
        hard_negative(k, labels, ids, dist),
    ):
      idx, valid = np.asarray(idx), np.asarray(valid)
      assert (idx[valid] != np.arange(16)[valid]).all()
      assert (ids[idx][valid] != ids[valid]).all()


def test_duplicate_clip_ids_are_never_partners():
  labels = np.array([0, 0, 1, 1], np.int32)
  ids = np.array([7, 7, 8, 9], np.int32)  # Rows 0 and 1 are the same clip.
  idx, valid = map(np.asarray, soft_positive(KEY, labels, ids))
  np.testing.assert_array_equal(valid, [False, False, True, True])
  np.testing.assert_array_equal(idx, [0, 1, 3, 2])


def test_single_member_class_falls_back_clearly():
  labels = np.array([0, 0, 1, 2, 2], np.int32)  # Class 1 has one member.
  ids = np.arange(5, dtype=np.int32)
  idx, valid = map(np.asarray, soft_positive(KEY, labels, ids))
  assert not valid[2] and idx[2] == 2
  assert valid[[0, 1, 3, 4]].all()
  out = {
      k: np.asarray(v)
      for k, v in sample_partners(
          KEY, labels, ids, {"soft": 1.0}, {"random": 1.0}
      ).items()
  }
  assert out["positive_fallback"].tolist() == [False, False, True, False, False]
  assert out["positive_kind"][2] == sampling.POSITIVE_KINDS.index("own")
  assert out["positive"][2] == 2  # Its own pair: a true positive.
  assert not out["negative_fallback"].any()


def test_single_class_batch_negative_fallbacks():
  labels = np.zeros(4, np.int32)
  ids = np.arange(4, dtype=np.int32)
  dist = np.ones((4, 4), np.float32)
  idx, valid = map(np.asarray, hard_negative(KEY, labels, ids, dist))
  assert not valid.any() and (idx == np.arange(4)).all()
  out = sample_partners(
      KEY, labels, ids, {"own": 1.0}, {"hard": 1.0}, distances=dist
  )
  # Falls back to random negatives, which exist (other clips).
  assert out["negative"].shape == (4, 1)
  assert np.asarray(out["negative_fallback"]).all()
  assert np.asarray(out["negative_valid"]).all()
  assert (np.asarray(out["negative_kind"]) == 0).all()
  one = sample_partners(KEY, labels[:1], ids[:1], {"own": 1.0}, {"random": 1.0})
  assert not np.asarray(one["negative_valid"]).any()


def test_mix_ratios_and_validation():
  labels, ids, dist = _batch(b=256, classes=4)
  out = sample_partners(
      KEY,
      labels,
      ids,
      {"own": 0.25, "soft": 0.75},
      {"random": 0.5, "hard": 0.5},
      distances=dist,
  )
  frac_soft = np.mean(np.asarray(out["positive_kind"]) == 1)
  frac_hard = np.mean(np.asarray(out["negative_kind"])[:, 0] == 2)
  assert abs(frac_soft - 0.75) < 0.1 and abs(frac_hard - 0.5) < 0.1
  with pytest.raises(ValueError, match="unknown kind"):
    sample_partners(KEY, labels, ids, {"sof": 1.0}, {"random": 1.0})
  with pytest.raises(ValueError, match="positive sum"):
    sample_partners(KEY, labels, ids, {"own": 0.0}, {"random": 1.0})
  with pytest.raises(ValueError, match="distances"):
    sample_partners(KEY, labels, ids, {"own": 1.0}, {"hard": 1.0})
  with pytest.raises(ValueError, match="num_negatives=0"):
    sample_partners(
        KEY, labels, ids, {"own": 1.0}, {"random": 1.0}, num_negatives=0
    )


def test_k_hard_negatives_are_the_k_closest_other_class_clips():
  labels, ids, dist = _batch(b=24, classes=3)
  out = sample_partners(
      KEY,
      labels,
      ids,
      {"own": 1.0},
      {"hard": 1.0},
      distances=dist,
      num_negatives=4,
  )
  neg = np.asarray(out["negative"])
  assert neg.shape == (24, 4) and np.asarray(out["negative_valid"]).all()
  masked = np.where(labels[:, None] != labels[None], dist, np.inf)
  np.testing.assert_array_equal(neg, np.argsort(masked, axis=1)[:, :4])


def test_k_negatives_are_distinct_and_run_out_cleanly():
  labels = np.array([0, 0, 1, 1, 2], np.int32)
  ids = np.arange(5, dtype=np.int32)
  out = {
      k: np.asarray(v)
      for k, v in sample_partners(
          KEY, labels, ids, {"own": 1.0}, {"random": 1.0}, num_negatives=6
      ).items()
  }
  for i in range(5):
    chosen = out["negative"][i][out["negative_valid"][i]]
    assert sorted(chosen.tolist()) == [j for j in range(5) if j != i]
  # Only 4 other clips exist: the 5th and 6th negatives are masked out.
  assert (out["negative_valid"].sum(axis=1) == 4).all()
  mixed = sample_partners(
      KEY,
      labels,
      ids,
      {"own": 1.0},
      {"easy": 1.0},
      distances=np.ones((5, 5), np.float32),
      num_negatives=4,
  )
  valid = np.asarray(mixed["negative_valid"])
  kinds = np.asarray(mixed["negative_kind"])
  # Anchor 4 (class 2) has 4 other-class clips: all easy. Anchors of class 0
  # have 3: the 4th negative falls back to a random (same-class) clip.
  assert (kinds[4] == 1).all()
  assert valid.all() and (kinds[0] == [1, 1, 1, 0]).all()


def test_jitted_and_deterministic_for_a_key():
  labels, ids, dist = _batch()
  fn = jax.jit(
      functools.partial(
          sampling.sample_partners,
          positives={"own": 0.5, "soft": 0.5},
          negatives={"random": 1.0, "easy": 1.0, "hard": 1.0},
      )
  )
  a = fn(KEY, labels, ids, distances=dist)
  b = fn(KEY, labels, ids, distances=dist)
  c = fn(jax.random.PRNGKey(1), labels, ids, distances=dist)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert any((np.asarray(a[k]) != np.asarray(c[k])).any() for k in a)


def test_partner_choice_is_not_differentiated():
  labels, ids, dist = _batch(b=8)

  def f(d):
    idx, _ = hard_negative(KEY, labels, ids, d)
    return jnp.sum(d[jnp.arange(8), idx])

  g = jax.grad(f)(jnp.asarray(dist))
  assert np.isfinite(np.asarray(g)).all()
  assert np.asarray(g).sum() == pytest.approx(8.0)


def test_soft_positive_clip_is_never_also_a_negative():
  # Batch 64, K = 8, 10 classes, some clips appearing twice (two windows of
  # one clip): before the fix about 13 % of soft-positive anchors also drew
  # their positive (or its clip) as a random negative.
  rng = np.random.default_rng(7)
  labels = rng.integers(0, 10, 64).astype(np.int32)
  ids = rng.integers(0, 48, 64).astype(np.int32)
  for clip in np.unique(ids):  # a clip id keeps one class
    labels[ids == clip] = labels[ids == clip][0]
  soft_anchors = 0
  draw = jax.jit(  # compiled once for all keys
      functools.partial(
          sampling.sample_partners,
          positives={"soft": 1.0},
          negatives={"random": 1.0},
          num_negatives=8,
      )
  )
  for seed in range(20):
    out = draw(jax.random.PRNGKey(seed), labels, ids)
    soft = np.asarray(out["positive_kind"]) == 1
    soft_anchors += soft.sum()
    pos_clip = ids[np.asarray(out["positive"])]
    neg_clip = ids[np.asarray(out["negative"])]
    valid = np.asarray(out["negative_valid"])
    clash = (neg_clip == pos_clip[:, None]) & valid & soft[:, None]
    assert not clash.any(), f"seed {seed}: {np.argwhere(clash)[:3]}"
  assert soft_anchors > 500
