"""Synchformer method: segment contrastive loss, per-stage freezing, resume."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avjax import losses
from avjax.data.builders.av_digits import sync as sync_data
from avjax.eval import sync as sync_eval
from avjax.methods import synchformer
from avjax.train import checkpoint as checkpoint_lib
from avjax.train import loop

import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import synchformer as synchformer_config  # noqa: E402  (configs/synchformer.py)

SEED = 20240601


@pytest.fixture(scope="module")
def records():
  """A few real `sync` clips per split, generated in memory."""
  material = sync_data.split_material("sync", "test", SEED)
  make = lambda i: sync_data.make_sparse("test", i, i, SEED, material)
  return {
      "train": [make(i) for i in range(12)],
      "validation": [make(i) for i in range(12, 15)],
      "test": [make(i) for i in range(15, 18)],
  }


class InMemorySynchformer(synchformer.Synchformer):
  """Synchformer reading the `records` fixture instead of tfds."""

  def __init__(self, config, records):
    super().__init__(config)
    self.records = records

  def _source(self, split):
    return self.records[split]


def tiny_config(steps=(4, 6, 2), **overrides):
  config = synchformer_config.get_config("quick")
  config.data.batch_size = 4
  for part in (config.model.visual, config.model.audio, config.model.sync):
    part.update({"width": 16, "num_heads": 2})
  config.model.visual.patch_features = 8
  config.model.sync.num_layers = 1
  config.model.time_tokens = 2  # the time-token path (default: 0)
  config.optimizer.warmup_steps = 1
  config.log_every = 2
  config.checkpoint_every = 3
  config.eval_batch_size = 9
  config.diagnostics.evidence_plots = 1
  for stage, n in zip(config.stages, steps):
    stage.steps = n
  config.stages = config.stages[: len(steps)]
  for key, value in overrides.items():
    config[key] = value
  return config


def test_segment_contrastive_loss_positives_are_same_clip_same_segment():
  """info_nce on [B·S, D]: only (clip b, segment s) ↔ (b, s) is positive."""
  rng = np.random.default_rng(0)
  b, s, d, tau = 3, 4, 5, 0.1
  fv = rng.standard_normal((b, s, d))
  fa = rng.standard_normal((b, s, d))
  got = np.asarray(
      synchformer.segment_contrastive_loss(
          jnp.asarray(fv), jnp.asarray(fa), tau
      )
  )
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  v, a = unit(fv.reshape(b * s, d)), unit(fa.reshape(b * s, d))
  total = 0.0
  for i in range(b * s):  # numpy loop: i = (clip i // s, segment i % s)
    row = np.array([v[i] @ a[j] for j in range(b * s)]) / tau
    col = np.array([v[j] @ a[i] for j in range(b * s)]) / tau
    positive = [j for j in range(b * s) if j // s == i // s and j % s == i % s]
    assert positive == [i]
    ce_row = np.log(np.exp(row).sum()) - row[i]
    ce_col = np.log(np.exp(col).sum()) - col[i]
    total += 0.5 * (ce_row + ce_col)
  np.testing.assert_allclose(got, total / (b * s), rtol=1e-5)
  # Other segments of the same clip are negatives: making segment 1 of clip
  # 0's audio equal to its visual segment 0 raises the loss of that row.
  fa2 = fa.copy()
  fa2[0, 1] = fv[0, 0] * 10
  worse = synchformer.segment_contrastive_loss(
      jnp.asarray(fv), jnp.asarray(fa2), tau
  )
  assert float(worse) > float(got)


def test_temperature_learned_clamped_and_projected(records):
  method = InMemorySynchformer(tiny_config(), records)
  params = {"temperature": {"log": jnp.log(0.07)}}
  assert float(method.temperature(params)) == pytest.approx(0.07)
  for value, clamped in ((10.0, 0.5), (1e-6, 0.001)):
    params = {"temperature": {"log": jnp.log(value)}, "sync": jnp.ones(2)}
    assert float(method.temperature(params)) == pytest.approx(clamped)
    # After an update the parameter itself goes back into the bounds.
    projected = method.project_params(params)
    assert float(projected["temperature"]["log"]) == pytest.approx(
        np.log(clamped)
    )
    np.testing.assert_array_equal(projected["sync"], params["sync"])


def test_trainable_labels_by_path_prefix():
  params = {
      "visual": {"a": 1.0},
      "audio": {"b": 1.0},
      "sync": {
          "transformer": {"w": 1.0},
          "offset_head": {"k": 1.0},
          "sync_head": {"k": 1.0},
      },
      "temperature": {"log": 0.0},
  }
  labels = synchformer.trainable_labels(params, ("sync",), ("sync/sync_head",))
  assert labels == {
      "visual": {"a": "frozen"},
      "audio": {"b": "frozen"},
      "sync": {
          "transformer": {"w": "train"},
          "offset_head": {"k": "train"},
          "sync_head": {"k": "frozen"},
      },
      "temperature": {"log": "frozen"},
  }
  # A prefix matches whole path parts only.
  assert synchformer.trainable_labels({"syncx": {"w": 0.0}}, ("sync",)) == {
      "syncx": {"w": "frozen"}
  }


def test_make_optimizer_updates_only_the_stage_prefixes():
  config = tiny_config()
  method = synchformer.Synchformer(config)
  from avjax.train.stages import StageScheduler

  stages = StageScheduler(config.stages).stages
  params = {
      "visual": {"w": jnp.ones(3)},
      "audio": {"w": jnp.ones(3)},
      "temperature": {"log": jnp.zeros(())},
      "sync": {
          "transformer": {"w": jnp.ones(3)},
          "offset_head": {"w": jnp.ones(3)},
          "sync_head": {"w": jnp.ones(3)},
      },
      "synchronisability": {
          "transformer": {"w": jnp.ones(3)},
          "offset_head": {"w": jnp.ones(3)},
          "sync_head": {"w": jnp.ones(3)},
      },
  }
  grads = jax.tree.map(jnp.ones_like, params)
  trained = {
      0: {"visual", "audio", "temperature"},
      1: {"sync/transformer", "sync/offset_head"},
      2: {"synchronisability/transformer", "synchronisability/sync_head"},
  }
  txs = [method.make_optimizer(stage, 100) for stage in stages]
  assert len({id(tx) for tx in txs}) == 3  # a fresh optimiser per stage
  assert method.make_optimizer(stages[1], 100) is txs[1]  # built once
  for index, tx in enumerate(txs):
    state = tx.init(params)
    new = params
    for _ in range(3):
      updates, state = tx.update(grads, state, new)
      new = optax.apply_updates(new, updates)
    flat_old = jax.tree_util.tree_flatten_with_path(params)[0]
    flat_new = jax.tree.leaves(new)
    for (path, old), value in zip(flat_old, flat_new):
      name = synchformer.param_path(path).rsplit("/", 1)[0]
      moved = not np.array_equal(np.asarray(old), np.asarray(value))
      assert moved == (name in trained[index]), (index, name)


def _params_at(workdir, step):
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=10
  )
  import orbax.checkpoint as ocp

  tree = ckpt._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
  ).state
  ckpt.close()
  return jax.tree.map(np.asarray, tree["params"])


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _changed(a, b):
  return any(
      not np.array_equal(x, y)
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, records):
  workdir = str(tmp_path_factory.mktemp("full"))
  config = tiny_config(max_checkpoints_to_keep=10)
  metrics = loop.train_and_evaluate(
      config, workdir, method=InMemorySynchformer(config, records)
  )
  return workdir, metrics


def test_stages_freeze_what_they_do_not_train(full_run):
  workdir, metrics = full_run
  p0 = _params_at(workdir, 3)  # inside stage 1
  p1 = _params_at(workdir, 4)  # end of stage 1
  p2 = _params_at(workdir, 10)  # end of stage 2
  p3 = _params_at(workdir, 12)  # end of stage 3
  # Stage 1 trains the extractors and the temperature, not the sync module.
  assert _changed(p0["visual"], p1["visual"])
  _assert_same(p0["sync"], p1["sync"])
  # Stage 2: extractors, temperature and the 2-way head bit-identical.
  for key in ("visual", "audio", "temperature"):
    _assert_same(p1[key], p2[key])
  _assert_same(p1["sync"]["sync_head"], p2["sync"]["sync_head"])
  assert _changed(p1["sync"]["offset_head"], p2["sync"]["offset_head"])
  assert _changed(p1["sync"]["transformer"], p2["sync"]["transformer"])
  _assert_same(p1["synchronisability"], p2["synchronisability"])
  # Stage 3 fine-tunes a copy of stage 2's sync transformer with its 2-way
  # head: the extractors, the temperature and stage 2's transformer stay
  # bit-identical; the copy's transformer and 2-way head move, its offset
  # head is stage 2's (copied at the stage's first step, then frozen).
  for key in ("visual", "audio", "temperature", "sync"):
    _assert_same(p2[key], p3[key])
  ft = p3["synchronisability"]
  _assert_same(ft["offset_head"], p2["sync"]["offset_head"])
  assert _changed(ft["offset_head"], p2["synchronisability"]["offset_head"])
  assert _changed(ft["transformer"], p2["sync"]["transformer"])
  assert _changed(ft["sync_head"], p2["sync"]["sync_head"])
  for key in (
      "offset_top1",
      "offset_top1_tol1",
      "sync_acc",
      "sync_auc",
      "offset_top1_after_stage3",
      "reference_offset_top1",
      "reference_sync_auc",
      "evidence_hit_rate",
      "evidence_random_rate",
  ):
    assert np.isfinite(metrics[key]), key
  plots = os.listdir(os.path.join(workdir, "plots"))
  assert {"offset_confusion.png", "evidence_0.png"} <= set(plots)


def test_killed_in_stage_two_resumes_exactly(full_run, tmp_path, records):
  workdir, metrics = full_run
  part = tmp_path / "part"
  shutil.copytree(workdir, part)
  # As if killed after step 7 (stage 2, checkpoint at 6): later checkpoints
  # and the outputs never happened.
  for step in (9, 10, 12):
    shutil.rmtree(part / "checkpoints" / str(step))
  os.remove(part / "metrics.json")
  config = tiny_config(max_checkpoints_to_keep=10)
  resumed = loop.train_and_evaluate(
      config, str(part), method=InMemorySynchformer(config, records)
  )
  assert resumed == metrics
  _assert_same(_params_at(str(part), 12), _params_at(workdir, 12))


def test_configs_stages_steps_and_bad_arguments():
  full = synchformer_config.get_config("")
  assert [s.kind for s in full.stages] == ["contrastive", "offset", "sync"]
  assert [tuple(s.train) for s in full.stages] == [
      ("visual", "audio", "temperature"),
      ("sync",),
      ("synchronisability",),
  ]
  assert tuple(full.stages[2].exclude) == ("synchronisability/offset_head",)
  assert full.data.crop_frames == 120 and full.model.time_tokens == 0
  # Sparse data get a 3x longer stage 1 than dense data (solved there) and
  # a stage 2 of 384k examples: 6,000 steps of two data batches of 32.
  assert [s.steps for s in full.stages] == [2160, 6000, 1200]
  assert [s.get("batch_size") for s in full.stages] == [None, 64, None]
  # Dense data: a short stage 1 and a stage 2 of 384k examples at batch 64
  # (it leaves its plateau only after ~180k); `quick` keeps its own budget.
  dense = synchformer_config.get_config("dense")
  assert [s.steps for s in dense.stages] == [720, 6000, 600]
  assert dense.data.batch_size == 64 and full.data.batch_size == 32
  quick_dense = synchformer_config.get_config("quick,dense")
  assert [s.steps for s in quick_dense.stages] == [450, 1800, 750]
  assert quick_dense.data.batch_size == 16
  for arg in ("dense", "quick", "quick,dense", "lrs3"):
    stages = synchformer_config.get_config(arg).stages
    assert [s.get("batch_size") for s in stages] == [None] * 3, arg
  head_only = synchformer_config.get_config("head_only_stage3")
  assert tuple(head_only.stages[2].train) == ("synchronisability/sync_head",)
  assert synchformer_config.get_config("time_tokens").model.time_tokens == 4
  # The ablation: no stage 1, stages 2 and 3 with the same steps.
  ablation = synchformer_config.get_config("random_extractors")
  assert [s.kind for s in ablation.stages] == ["offset", "sync"]
  assert [s.steps for s in ablation.stages] == [
      s.steps for s in full.stages[1:]
  ]
  # Few steps still give every stage one (rounding alone left the last 0).
  for steps in (3, 4, 5):
    tiny = synchformer_config.get_config(f"steps={steps}").stages
    assert (
        sum(s.steps for s in tiny) == steps and min(s.steps for s in tiny) >= 1
    )
  short = synchformer_config.get_config("quick,steps=100,seed=3")
  assert sum(s.steps for s in short.stages) == 100 and short.seed == 3
  longer = synchformer_config.get_config("quick,steps=6000,stage1_steps=2700")
  assert [s.steps for s in longer.stages] == [2700, 3600, 1500]
  with pytest.raises(ValueError, match="no stage 1"):
    synchformer_config.get_config("random_extractors,stage1_steps=10")
  assert dense.data.name == "av_digits/sync_dense"
  assert synchformer_config.get_config("lrs3").data.crop_frames == 120
  with pytest.raises(ValueError, match="steps=0"):
    synchformer_config.get_config("steps=0")
  with pytest.raises(ValueError, match="'fast'"):
    synchformer_config.get_config("fast")
  with pytest.raises(ValueError, match="at most one"):
    synchformer_config.get_config("dense,lrs3")


def test_evidence_hits_against_numpy_reference():
  rng = np.random.default_rng(1)
  spans = sync_eval.segment_spans(7, 0.64, 0.32)
  n = 50
  video_events = np.where(
      rng.random((n, 4)) < 0.5, rng.uniform(-1, 3, (n, 4)), np.nan
  )
  audio_events = np.where(
      rng.random((n, 4)) < 0.5, rng.uniform(-1, 3, (n, 4)), np.nan
  )
  sv, sa = rng.random((n, 7)), rng.random((n, 7))
  got = sync_eval.evidence_hits(sv, sa, video_events, audio_events, spans)
  hits, rates = [], []
  for i in range(n):
    has = []
    for events in (video_events[i], audio_events[i]):
      for s0, s1 in spans:
        has.append(any(s0 <= t < s1 for t in events if not np.isnan(t)))
    if not any(has):
      continue
    scores = list(sv[i]) + list(sa[i])
    hits.append(has[int(np.argmax(scores))])
    rates.append(np.mean(has))
  assert got["evidence_clips"] == len(hits)
  assert got["evidence_hit_rate"] == pytest.approx(np.mean(hits))
  assert got["evidence_random_rate"] == pytest.approx(np.mean(rates))


def test_offset_accuracy_and_auc_against_references():
  logits = np.eye(21)[[0, 5, 7, 20]] + 0.0
  labels = np.array([0, 6, 9, 20])
  assert sync_eval.offset_accuracy(logits, labels) == 0.5
  assert sync_eval.offset_accuracy(logits, labels, tolerance=1) == 0.75
  assert sync_eval.chance_tol_accuracy(21, 1) == pytest.approx(61 / 441)
  rng = np.random.default_rng(2)
  scores = np.round(rng.random(40), 1)  # ties on purpose
  y = rng.integers(0, 2, 40)
  pairs = [
      (1.0 if p > q else 0.5 if p == q else 0.0)
      for p in scores[y == 1]
      for q in scores[y == 0]
  ]
  assert sync_eval.roc_auc(scores, y) == pytest.approx(np.mean(pairs))
  cm = sync_eval.confusion_matrix(labels, np.argmax(logits, 1), 21)
  assert cm.sum() == 4 and cm[6, 5] == 1 and cm[20, 20] == 1


def test_init_params_is_one_program(records, count_lowerings):
  # Op by op it lowered ~230 programs (about 10 s of every run's start-up).
  # Its values equal the op-by-op ones: the Dense kernels do anyway, the
  # tokens through `sync.token_init` (tests/test_sync_model.py).
  method = InMemorySynchformer(tiny_config(), records)
  batch = next(method.train_iterator(4, 0, 0, 1))
  rng = jax.random.PRNGKey(0)
  with count_lowerings() as lowered:
    params = method.init_params(rng, batch)
  assert lowered.count <= 2, lowered.count
  assert set(params) == {
      "visual",
      "audio",
      "sync",
      "synchronisability",
      "temperature",
  }
