"""TSTL-CA: stage losses, the interpolation curriculum, and a run on VEGAS
features in their published HDF5 layout."""

import os

import h5py
import jax
import numpy as np
import pytest

from avjax.config_utils import load_config_file
from avjax.methods.tstl_ca import TSTLCA
from avjax.train import loop
from avjax.train.stages import StageScheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "tstl_ca.py")


def _vector_batch(rng, n=24, num_classes=4):
  """Features = a fixed random direction per class (per modality) + noise."""
  labels = np.arange(n) % num_classes
  centers = np.random.default_rng(123)
  audio_c = centers.normal(size=(num_classes, 128))
  visual_c = centers.normal(size=(num_classes, 1024))
  audio = rng.normal(size=(n, 128)) + 2 * audio_c[labels]
  visual = rng.normal(size=(n, 1024)) + 2 * visual_c[labels]
  return {
      "audio": audio.astype(np.float32),
      "visual": visual.astype(np.float32),
      "label": labels.astype(np.int32),
  }


def _method(arg="vegas"):
  config = load_config_file(CONFIG, arg)
  return config, TSTLCA(config)


def test_stage_losses_and_alpha_curriculum():
  config, method = _method()
  batch = _vector_batch(np.random.default_rng(0))
  params = method.init_params(jax.random.PRNGKey(0), batch)
  stages = StageScheduler(config.stages)
  semihard, curriculum = stages[0], stages[1]
  loss, metrics = method.loss_fn(
      params, batch, jax.random.PRNGKey(1), semihard, semihard.start
  )
  assert np.isfinite(loss) and loss > 0 and metrics == {}
  opts = curriculum.options
  for step, alpha in (
      (curriculum.start, opts.alpha_start),
      (curriculum.end, opts.alpha_end),
  ):
    loss2, metrics = method.loss_fn(
        params, batch, jax.random.PRNGKey(1), curriculum, step
    )
    assert np.isfinite(loss2)
    np.testing.assert_allclose(metrics["alpha"], alpha, rtol=1e-6)
  # Harder synthetic negatives (alpha_end > alpha_start) raise the loss.
  start_loss, _ = method.loss_fn(
      params, batch, None, curriculum, curriculum.start
  )
  end_loss, _ = method.loss_fn(params, batch, None, curriculum, curriculum.end)
  assert end_loss > start_loss
  grads = jax.grad(
      lambda p: method.loss_fn(
          p, batch, jax.random.PRNGKey(1), curriculum, curriculum.start
      )[0]
  )(params)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def _own_synthetic_hard(q, k, labels, alpha, margin):
  """float64 loop: hardest real positive vs the hardest of the real
  negatives and the anchor's own synthetic one (from its nearest)."""
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  total = 0.0
  for i in range(len(q)):
    d = np.linalg.norm(q[i] - k, axis=1)
    neg = labels != labels[i]
    nearest = np.flatnonzero(neg)[np.argmin(d[neg])]
    synthetic = k[nearest] + alpha * (q[i] - k[nearest])
    d_an = min(d[neg].min(), np.linalg.norm(q[i] - synthetic))
    total += max(0.0, d[~neg].max() - d_an + margin)
  return total / len(q)


def test_curriculum_loss_scores_each_anchor_on_its_own_synthetic_keys():
  # 10 tight, L2-normalised clusters per modality: in a key pool shared by
  # all anchors, other anchors' synthetic keys become hardest positives.
  config, method = _method()
  rng = np.random.default_rng(2)
  labels = np.repeat(np.arange(10), 4).astype(np.int32)
  centres = rng.normal(size=(10, 16))

  def cluster():
    x = centres[labels] + 0.3 * rng.normal(size=(40, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

  a, v = cluster(), cluster()
  margin = config.loss.margin
  for alpha in (0.1, 0.5):
    got = method._interpolated_hard(a, v, labels, alpha)
    want = _own_synthetic_hard(a, v, labels, alpha, margin)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_unknown_stage_loss_is_named():
  config, method = _method()
  config.unlock()
  stage = StageScheduler(({"name": "x", "steps": 1, "loss": "triplett"},))[0]
  batch = _vector_batch(np.random.default_rng(0))
  params = method.init_params(jax.random.PRNGKey(0), batch)
  with pytest.raises(ValueError, match="loss='triplett'"):
    method.loss_fn(params, batch, None, stage, 0)


def test_one_stage_and_steps_variants():
  one, _ = _method("one_stage,steps=50")
  assert [(s.name, s.steps) for s in one.stages] == [("semihard", 50)]
  two, _ = _method("steps=51")
  assert [s.steps for s in two.stages] == [25, 26]


def _write_vegas(manual_dir, rng, n_train=80, n_test=40, num_classes=10):
  os.makedirs(manual_dir, exist_ok=True)
  with h5py.File(os.path.join(manual_dir, "vegas_feature.h5"), "w") as f:
    for split, n in (("train", n_train), ("test", n_test)):
      b = _vector_batch(rng, n, num_classes)
      f.create_dataset(f"audio_{split}", data=b["audio"])
      f.create_dataset(f"visual_{split}", data=b["visual"])
      f.create_dataset(f"lab_{split}", data=b["label"])


@pytest.mark.slow
def test_trains_on_vegas_features(tmp_path):
  _write_vegas(str(tmp_path / "manual"), np.random.default_rng(0))
  config = load_config_file(CONFIG, "vegas,steps=40")
  config.data.manual_dir = str(tmp_path / "manual")
  config.data.data_dir = str(tmp_path / "data")
  config.data.batch_size = 32
  config.eval_every = 0
  config.checkpoint_every = 20
  metrics = loop.train_and_evaluate(config, str(tmp_path / "run"))
  # Class-separable features (chance MAP about 0.1): this run measured
  # map_mean 1.000 on the 2-core CPU machine; the floor sits just below.
  assert metrics["map_mean"] > 0.95
  assert os.path.exists(tmp_path / "run" / "plots" / "precision_recall.png")


def test_init_params_is_one_program(count_lowerings):
  # Op by op the AV-digits encoders lowered ~160 programs (about 10 s of
  # every run's start-up); the values are the same either way (checked
  # against op-by-op init in tests/test_avc.py for the same encoders).
  _, method = _method("quick")
  batch = {
      "audio": np.zeros((4, 101, 40), np.float32),
      "visual": np.zeros((4, 32, 32, 1), np.float32),
  }
  rng = jax.random.PRNGKey(0)
  with count_lowerings() as lowered:
    params = method.init_params(rng, batch)
  assert lowered.count <= 2, lowered.count
  assert set(params["params"]) == {"audio_encoder", "visual_encoder"}
