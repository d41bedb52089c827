"""Tests for avjax.eval.linear_probe."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from avjax.eval import linear_probe as lp

NUM_CLASSES = 4
DIM = 12


def _blobs(seed, n, spread, scale=1.0, offset=0.0):
  """Gaussian class blobs with unit noise; `spread` sets the separation."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(100).normal(size=(NUM_CLASSES, DIM))
  y = rng.integers(0, NUM_CLASSES, n)
  x = spread * centres[y] + rng.normal(size=(n, DIM))
  return (x * scale + offset).astype(np.float32), y


def _splits(seed, spread, **kwargs):
  x, y = _blobs(seed, 600, spread, **kwargs)
  return x[:300], y[:300], x[300:450], y[300:450], x[450:], y[450:]


def test_separable_data_is_classified_perfectly():
  # Unstandardised features (large offset and scale) exercise standardisation.
  out = lp.linear_probe(
      *_splits(0, spread=8.0, scale=50.0, offset=-300.0),
      num_classes=NUM_CLASSES
  )
  assert set(out) == {"accuracy", "val_accuracy", "l2"}
  assert all(isinstance(v, float) for v in out.values())
  assert out["accuracy"] >= 0.99 and out["val_accuracy"] >= 0.99


def test_random_labels_give_chance_accuracy():
  tx, _, vx, _, sx, _ = _splits(1, spread=0.0)
  rng = np.random.default_rng(1)
  ty, vy, sy = (rng.integers(0, NUM_CLASSES, n) for n in (300, 150, 150))
  out = lp.linear_probe(tx, ty, vx, vy, sx, sy, num_classes=NUM_CLASSES)
  assert abs(out["accuracy"] - 1 / NUM_CLASSES) < 0.12


def test_l2_is_chosen_by_validation_accuracy():
  splits = _splits(2, spread=0.35)
  grid = (0.0, 1e-2, 1.0, 30.0, 100.0)  # same grid size as the default
  out = lp.linear_probe(*splits, num_classes=NUM_CLASSES, l2_grid=grid)
  tx, ty, vx, vy, _, _ = splits
  tx, vx = lp.standardize(tx, vx)
  params = lp.train_softmax_classifiers(tx, ty, NUM_CLASSES, grid)
  logits = np.einsum("nd,gdc->gnc", vx, params["w"]) + params["b"][:, None]
  val_acc = (logits.argmax(-1) == vy[None]).mean(axis=1)
  assert out["val_accuracy"] == pytest.approx(val_acc.max())
  # Ties go to the largest L2 among the best.
  assert out["l2"] == max(
      g for g, a in zip(grid, val_acc) if a == pytest.approx(val_acc.max())
  )
  assert len(set(np.round(val_acc, 6))) > 1  # the grid actually differs


def test_deterministic_for_a_seed():
  splits = _splits(3, spread=0.5)
  kwargs = dict(
      num_classes=NUM_CLASSES, l2_grid=(0.0,), batch_size=32, steps=100
  )
  assert lp.linear_probe(*splits, seed=4, **kwargs) == lp.linear_probe(
      *splits, seed=4, **kwargs
  )
  tx, ty = lp.standardize(splits[0])[0], splits[1]
  p1 = lp.train_softmax_classifiers(
      tx, ty, NUM_CLASSES, [0.0], steps=100, batch_size=32, seed=4
  )
  p2 = lp.train_softmax_classifiers(
      tx, ty, NUM_CLASSES, [0.0], steps=100, batch_size=32, seed=5
  )
  assert not np.allclose(p1["w"], p2["w"])  # the seed drives the batches


def test_matches_sklearn_logistic_regression():
  tx, ty, _, _, sx, sy = _splits(5, spread=0.4)
  l2 = 1e-2
  out = lp.linear_probe(
      tx, ty, sx, sy, sx, sy, num_classes=NUM_CLASSES, l2_grid=(l2,)
  )
  txs, sxs = lp.standardize(tx, sx)
  sk = LogisticRegression(C=1.0 / (l2 * len(ty)), max_iter=5000, tol=1e-8)
  sk_acc = sk.fit(txs, ty).score(sxs, sy)
  assert 0.4 < sk_acc < 0.95  # a problem where the probe has work to do
  assert abs(out["accuracy"] - sk_acc) <= 0.02
  # Same objective, so nearly the same weights.
  params = lp.train_softmax_classifiers(txs, ty, NUM_CLASSES, [l2])
  np.testing.assert_allclose(
      params["w"][0] - params["w"][0].mean(1, keepdims=True),
      sk.coef_.T - sk.coef_.T.mean(1, keepdims=True),
      atol=0.05,
  )


def test_errors_name_the_input():
  tx, ty, vx, vy, sx, sy = _splits(6, spread=1.0)
  with pytest.raises(ValueError, match=r"val_x has shape \(150, 5\)"):
    lp.linear_probe(tx, ty, vx[:, :5], vy, sx, sy, num_classes=NUM_CLASSES)
  with pytest.raises(ValueError, match=r"test_y has shape \(149,\)"):
    lp.linear_probe(tx, ty, vx, vy, sx, sy[:-1], num_classes=NUM_CLASSES)
  with pytest.raises(ValueError, match=r"train_y has labels in \[0, 3\]"):
    lp.linear_probe(tx, ty, vx, vy, sx, sy, num_classes=3)
  with pytest.raises(ValueError, match="val_y must hold integer"):
    lp.linear_probe(
        tx, ty, vx, vy.astype(float), sx, sy, num_classes=NUM_CLASSES
    )
  with pytest.raises(ValueError, match=r"train_x must be 2-D.*\(300,\)"):
    lp.linear_probe(tx[:, 0], ty, vx, vy, sx, sy, num_classes=NUM_CLASSES)
  with pytest.raises(ValueError, match="l2_grid"):
    lp.linear_probe(
        tx, ty, vx, vy, sx, sy, num_classes=NUM_CLASSES, l2_grid=(-1.0,)
    )
  with pytest.raises(ValueError, match="batch_size"):
    lp.linear_probe(
        tx, ty, vx, vy, sx, sy, num_classes=NUM_CLASSES, batch_size=0
    )
