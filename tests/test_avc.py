"""The AVC method on a small synthetic pairs dataset (no tfds preparation).

Covers the objectives, the samplers inside the jitted step, subsets, labels
files, evaluation keys, and that training (sampling included) is
deterministic for a seed and resumes from a checkpoint exactly.
"""

import importlib.util
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from avjax.methods import avc
from avjax.train import loop
from avjax.train.stages import StageScheduler

from eval_helpers import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "avc_config", os.path.join(ROOT, "configs", "avc.py")
)
avc_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(avc_config)

NUM_CLASSES = 4
SIZES = {"train": 48, "validation": 16, "test": 16}


def _records(split: str) -> list[dict]:
  """Class c: a tone at 500·(c+1) Hz and a bright row band at row 2c."""
  rng = np.random.default_rng(["train", "validation", "test"].index(split))
  first = {"train": 0, "validation": 1000, "test": 2000}[split]
  t = np.arange(1600) / 16000.0
  out = []
  for i in range(SIZES[split]):
    c = i % NUM_CLASSES
    wave = 0.5 * np.sin(2 * np.pi * 500 * (c + 1) * t) + 0.1 * rng.normal(
        size=t.size
    )
    image = rng.integers(0, 60, (8, 8))
    image[2 * c : 2 * c + 2] = 255
    out.append(
        {
            "audio": (wave * 20000).astype(np.int16),
            "image": image.astype(np.uint8),
            "audio_length": 1600,
            "label": c,
            "image_id": i,
            "clip_id": first + i,
            "voice": 0,
        }
    )
  return out


class SyntheticAVC(avc.AVC):
  """AVC whose splits come from ``_records`` instead of tfds."""

  def _source(self, split):
    return _records(split)


def _config(arg: str = "", **overrides) -> ml_collections.ConfigDict:
  config = avc_config.get_config(arg)
  config.data.name = "synthetic/pairs"  # Its own entry in the split cache.
  config.data.num_classes = NUM_CLASSES
  config.data.batch_size = 16
  config.data.log_mel = ml_collections.ConfigDict(
      {"n_mels": 8, "n_fft": 256, "win_length": 256, "hop_length": 200}
  )
  config.model.embed_dim = 8
  config.model.audio_kwargs = ml_collections.ConfigDict(
      {"features": (4,), "hidden_dim": 16}
  )
  config.model.visual_kwargs = ml_collections.ConfigDict(
      {"features": (4,), "hidden_dim": 16}
  )
  config.model.head_hidden_dims = (16,)
  config.evals.probe.steps = 30
  config.evals.probe.fewshot_per_class = 2
  config.evals.probe.fewshot_draws = 1
  config.stages = (ml_collections.ConfigDict({"name": "s", "steps": 8}),)
  config.log_every = 2
  config.checkpoint_every = 4
  config.max_checkpoints_to_keep = 5
  config.update_from_flattened_dict(overrides)
  return config


def _first_batch(method):
  return next(method.train_iterator(method.config.data.batch_size, 0, 0, 1))


@pytest.mark.parametrize(
    "strategy,objective",
    [
        ("random", "binary"),
        ("easy", "contrastive"),
        ("hard", "contrastive"),
        ("soft", "contrastive"),
        ("soft", "info_nce"),
        ("supervised", None),
    ],
)
def test_loss_is_finite_with_gradients(strategy, objective):
  arg = f"strategy={strategy}" + (f",{objective}" if objective else "")
  method = SyntheticAVC(_config(arg))
  batch = _first_batch(method)
  params = method.init_params(jax.random.PRNGKey(0), batch)
  stage = StageScheduler(method.config.stages).stage_at(0)
  loss_and_grad = jax.jit(
      jax.value_and_grad(
          lambda p: method.loss_fn(p, batch, jax.random.PRNGKey(1), stage, 0),
          has_aux=True,
      )
  )
  (loss, metrics), grads = loss_and_grad(params)
  assert np.isfinite(float(loss))
  leaves = jax.tree.leaves(grads["towers"])
  assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
  assert any(np.abs(np.asarray(g)).max() > 0 for g in leaves)
  if strategy == "supervised":
    assert set(metrics) == {"ce_audio", "ce_visual"}
    return
  assert float(metrics["positive_same_class_frac"]) == 1.0
  if strategy == "soft":
    # Every anchor gets a soft positive unless its class is alone in the batch.
    assert float(metrics["soft_positive_frac"]) > 0.5
    assert float(metrics["soft_positive_frac"]) + float(
        metrics["positive_fallback_frac"]
    ) == pytest.approx(1.0)
  if strategy in ("easy", "hard"):
    assert float(metrics["negative_same_class_frac"]) == 0.0
  if objective == "binary":
    assert 0.0 <= float(metrics["avc_acc"]) <= 1.0
  if objective == "contrastive":
    assert 0.0 <= float(metrics["rank1_acc"]) <= 1.0


def test_hard_negatives_in_the_step_are_closest_other_class_visuals():
  # K = config.sampling.num_negatives closest, by visual cosine distance.
  method = SyntheticAVC(_config("strategy=hard"))
  batch = _first_batch(method)
  params = method.init_params(jax.random.PRNGKey(0), batch)
  a, v = jax.jit(method.encode)(params, batch["audio"], batch["visual"])
  part = jax.jit(method.partners)(
      jax.random.PRNGKey(3), a, v, batch["label"], batch["id"]
  )
  vn = np.asarray(v) / np.linalg.norm(np.asarray(v), axis=1, keepdims=True)
  dist = 1.0 - vn @ vn.T  # Cosine distance, config.sampling.metric.
  other = batch["label"][:, None] != batch["label"][None, :]
  k = method.config.sampling.num_negatives
  neg = np.asarray(part["negative"])
  assert np.asarray(part["negative_valid"]).all()
  rows = np.arange(len(neg))[:, None]
  assert other[rows, neg].all()
  assert all(len(set(r)) == k for r in neg.tolist())
  # Their distances are the K smallest (compared by value: the tiny test
  # encoders give near-ties that float rounding may order either way).
  masked = np.where(other, dist, np.inf)
  np.testing.assert_allclose(
      np.sort(dist[rows, neg], axis=1),
      np.sort(masked, axis=1)[:, :k],
      atol=1e-5,
  )


def test_subset_and_imbalance_reach_the_iterator():
  method = SyntheticAVC(_config("per_class=5"))
  assert len(method.train_indices) == 5 * NUM_CLASSES
  it = method.train_iterator(16, 0, 0, 1)
  seen = np.concatenate([next(it)["id"] for _ in range(5)])
  assert set(seen.tolist()) <= set(method.train_indices.tolist())
  skewed = SyntheticAVC(_config("per_class=12,imbalance=0.25"))
  counts = np.bincount(
      skewed.split_arrays("train")["true_label"][skewed.train_indices]
  )
  assert sorted(counts.tolist()) == [3, 5, 8, 12]
  with pytest.raises(ValueError, match="fewer than data.batch_size=16"):
    SyntheticAVC(_config("per_class=2")).train_iterator(16, 0, 0, 1)


def test_labels_file_drives_sampling_labels(tmp_path):
  path = tmp_path / "preds.csv"
  ids = [r["clip_id"] for r in _records("train")]
  # A "classifier" that swaps classes 0 and 1.
  swap = {0: 1, 1: 0, 2: 2, 3: 3}
  path.write_text(
      "clip_id,label\n" + "".join(f"{i},{swap[i % NUM_CLASSES]}\n" for i in ids)
  )
  method = SyntheticAVC(
      _config("strategy=soft", **{"sampling.labels_file": str(path)})
  )
  batch = _first_batch(method)
  np.testing.assert_array_equal(
      batch["label"], [swap[int(c)] for c in batch["true_label"]]
  )
  np.testing.assert_array_equal(batch["true_label"], batch["id"] % 4)

  bad = tmp_path / "bad.csv"
  bad.write_text(
      "clip_id,label\n" + "".join(f"{i},0\n" for i in ids) + "9999,1\n"
  )
  method = SyntheticAVC(_config(**{"sampling.labels_file": str(bad)}))
  with pytest.raises(ValueError, match=r"unknown clip id.*\[9999\]"):
    method.train_iterator(16, 0, 0, 1)


def test_config_errors():
  with pytest.raises(ValueError, match="strategy='medium'"):
    avc_config.get_config("strategy=medium")
  with pytest.raises(ValueError, match="in-batch info_nce"):
    avc_config.get_config("strategy=hard,info_nce")
  with pytest.raises(ValueError, match="choose one objective"):
    avc_config.get_config("binary,contrastive")
  with pytest.raises(ValueError, match="config.sampling.mining_space='text'"):
    SyntheticAVC(_config(**{"sampling.mining_space": "text"}))
  with pytest.raises(ValueError, match="info_nce objective uses in-batch"):
    SyntheticAVC(_config("info_nce", **{"sampling.negatives": {"hard": 1.0}}))
  rows = avc_config.table_variants().split(";")
  assert len(rows) == 20 and len(set(rows)) == 20
  for row in rows:
    avc_config.get_config(row)


def _train(workdir, arg="", **overrides):
  config = _config(arg, **overrides)
  return loop.train_and_evaluate(
      config, str(workdir), method=SyntheticAVC(config)
  )


def _train_logs(workdir):
  with open(os.path.join(workdir, "log.jsonl")) as f:
    return [r for r in map(json.loads, f) if "train/loss" in r]


# Every sampler at once: half soft positives; random, easy and hard negatives.
MIXED = {
    "sampling.positives": {"own": 0.5, "soft": 0.5},
    "sampling.negatives": {"random": 1.0, "easy": 1.0, "hard": 1.0},
}


def test_training_is_deterministic_and_resumes_exactly(tmp_path):
  full = _train(tmp_path / "full", **MIXED)
  for key in (
      "probe_acc_audio",
      "probe_acc_visual",
      "fewshot_acc_audio",
      "fewshot_acc_visual",
  ):
    assert 0.0 <= full[key] <= 1.0
  # A second fresh run, interrupted after step 4: drop the newer checkpoint
  # and the result, then rerun in the same workdir.
  part = tmp_path / "part"
  assert _train(part, **MIXED) == full
  shutil.rmtree(part / "checkpoints" / "8")
  os.remove(part / "metrics.json")
  resumed = _train(part, **MIXED)
  assert resumed == full
  # The sampling statistics logged after the resume match the full run's.
  full_logs = {r["step"]: r for r in _train_logs(tmp_path / "full")}
  resumed_logs = _train_logs(part)[-2:]
  assert [r["step"] for r in resumed_logs] == [6, 8]
  for record in resumed_logs:
    assert record == full_logs[record["step"]]


def test_evaluate_keys_per_objective():
  method = SyntheticAVC(_config("strategy=supervised"))
  params = method.init_params(jax.random.PRNGKey(0), _first_batch(method))
  out = evaluate(method, params, "validation")
  assert {
      "probe_acc_audio",
      "probe_acc_visual",
      "probe_val_acc_audio",
      "fewshot_acc_audio",
      "classifier_acc_audio",
      "classifier_acc_visual",
  } <= set(out)
  assert "avc_acc" not in out
  # On validation the probe scores the split it selected L2 on.
  assert out["probe_acc_audio"] == out["probe_val_acc_audio"]
  subset = SyntheticAVC(
      _config("per_class=6", **{"evals.probe.fit_on": "subset"})
  )
  p2 = subset.init_params(jax.random.PRNGKey(0), _first_batch(subset))
  assert set(evaluate(subset, p2, "test")) >= {
      "fewshot_acc_visual",
      "probe_acc_visual",
  }
  with pytest.raises(ValueError, match="fit_on='half'"):
    evaluate(
        SyntheticAVC(_config(**{"evals.probe.fit_on": "half"})), p2, "test"
    )


def test_head_accuracy_uses_a_derangement():
  method = SyntheticAVC(_config("binary"))
  params = method.init_params(jax.random.PRNGKey(0), _first_batch(method))
  emb = {
      "audio": np.ones((5, 8), np.float32),
      "visual": np.ones((5, 8), np.float32),
      "label": np.zeros(5, np.int32),
  }
  # Identical pairs: positives and negatives get the same logit, so exactly
  # one of the two halves is right.
  assert method._head_accuracy(params, emb) == 0.5


def test_init_params_is_one_program_equal_to_op_by_op(count_lowerings):
  method = SyntheticAVC(_config("binary"))  # towers and the binary head
  batch = _first_batch(method)
  rng = jax.random.PRNGKey(0)
  with count_lowerings() as lowered:
    params = method.init_params(rng, batch)
  assert lowered.count <= 2, lowered.count
  op_by_op = method._init_params(rng, batch["audio"][:2], batch["visual"][:2])
  assert jax.tree.structure(params) == jax.tree.structure(op_by_op)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(op_by_op)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
