"""The shared loop: training, stages, resume, damaged checkpoints, NaN stop."""

import json
import os
import shutil

import numpy as np
import pytest

from avjax import methods
from avjax.config_utils import load_config_file
from avjax.train import loop

from avjax.train import checkpoint as checkpoint_lib
from toy_method import ToyFrozenSecondStage, ToyRegression, toy_config
from workdir_helpers import tree_listing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, triggers=None, method_cls=ToyRegression, **overrides):
  config = toy_config(**overrides)
  method = method_cls(config, **(triggers or {}))
  return loop.train_and_evaluate(config, str(workdir), method=method), method


def test_trains_and_writes_outputs(tmp_path):
  metrics, method = _run(tmp_path)
  assert metrics["mse"] < 1.0
  assert method.seen_stages == {"first", "second"}
  with open(tmp_path / "metrics.json") as f:
    assert json.load(f) == metrics
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps == [4, 6, 8, 12]  # every 4 steps + the stage boundary
  logged = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
  assert [r["step"] for r in logged if "train/loss" in r] == [
      2,
      4,
      6,
      8,
      10,
      12,
  ]
  assert [r["train/stage"] for r in logged if "train/stage" in r] == [
      0,
      0,
      0,
      1,
      1,
      1,
  ]
  assert os.listdir(tmp_path / "tensorboard")
  assert os.path.exists(tmp_path / "plots" / "training_curves.png")
  with open(tmp_path / "config.json") as f:
    saved = json.load(f)
  assert saved["optimizer"]["learning_rate"] == 0.3
  assert saved["stages"][1]["name"] == "second"


def test_outputs_never_write_through_a_symlink(tmp_path):
  """config.json and metrics.json replace a symlink at their path instead
  of writing into its target (a file outside the workdir)."""
  outside = tmp_path / "outside.txt"
  outside.write_text("keep me")
  workdir = tmp_path / "run"
  workdir.mkdir()
  for name in ("config.json", "metrics.json"):
    os.symlink(outside, workdir / name)
  metrics, _ = _run(workdir)
  assert outside.read_text() == "keep me"
  for name in ("config.json", "metrics.json"):
    assert not os.path.islink(workdir / name)
  with open(workdir / "config.json") as f:
    assert json.load(f)["method"] == "toy"
  with open(workdir / "metrics.json") as f:
    assert json.load(f) == metrics
  assert not [n for n in os.listdir(workdir) if n.endswith(".tmp")]


def test_resume_equals_uninterrupted(tmp_path):
  full, _ = _run(tmp_path / "full")
  # A run stopped after 8 steps: keep only the checkpoints up to step 8.
  part = tmp_path / "part"
  _run(part)
  for step in (12,):
    shutil.rmtree(part / "checkpoints" / str(step))
  os.remove(part / "metrics.json")
  resumed, method = _run(part)
  assert method.seen_stages == {"second"}  # resumed inside stage 2
  assert resumed == full


def _stages(first_batch=None, second_batch=None):
  stages = [
      {"name": "first", "steps": 6, "scale": 1.0},
      {"name": "second", "steps": 6, "scale": 2.0},
  ]
  for stage, size in zip(stages, (first_batch, second_batch)):
    if size:
      stage["batch_size"] = size
  return tuple(stages)


def test_stage_batch_size_trains_on_consecutive_data_batches(tmp_path):
  # Both stages at 16 examples per step, drawn as two batches of 8, train
  # exactly as a run whose data pipeline batches 16 (the same example
  # stream, grouped differently).
  drawn, method = _run(tmp_path / "drawn", stages=_stages(16, 16))
  assert method.rows == {"first": 16, "second": 16}
  plain, method = _run(tmp_path / "plain", **{"data.batch_size": 16})
  assert method.rows == {"first": 16, "second": 16}
  assert drawn == plain
  # Stage 2 alone at 16: stage 1 steps on 8 rows, and a run resumed inside
  # stage 2 (from step 8) ends where the uninterrupted one does.
  mixed, method = _run(tmp_path / "mixed", stages=_stages(None, 16))
  assert method.rows == {"first": 8, "second": 16}
  assert mixed not in (drawn, _run(tmp_path / "eights")[0])
  part = tmp_path / "part"
  _run(part, stages=_stages(None, 16))
  shutil.rmtree(part / "checkpoints" / "12")
  os.remove(part / "metrics.json")
  resumed, method = _run(part, stages=_stages(None, 16))
  assert method.seen_stages == {"second"}
  assert resumed == mixed


def test_damaged_newest_checkpoint_falls_back(tmp_path, caplog):
  full, _ = _run(tmp_path / "full")
  run = tmp_path / "run"
  _run(run)
  shutil.rmtree(run / "checkpoints" / "12")
  os.remove(run / "metrics.json")
  # Corrupt every data file of the newest checkpoint (step 8).
  for root, _, files in os.walk(run / "checkpoints" / "8" / "state"):
    for name in files:
      if name not in ("commit_success.txt",):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  with caplog.at_level("INFO"):
    resumed, method = _run(run)
  assert "step 8" in caplog.text and "damaged" in caplog.text
  assert os.path.isdir(run / "checkpoints_damaged" / "8")
  assert "Resumed from step 6" in caplog.text  # the previous checkpoint
  assert method.seen_stages == {"second"}
  assert resumed == full


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
  with pytest.raises(FloatingPointError, match="at step 6"):
    _run(tmp_path, triggers={"nan_loss_at": 5})
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps == [4]
  assert not os.path.exists(tmp_path / "metrics.json")
  # The kept checkpoint is finite and restorable: resuming without the NaN
  # trigger finishes the run.
  metrics, _ = _run(tmp_path)
  assert np.isfinite(metrics["mse"])


def test_nan_gradient_with_finite_loss_is_never_saved(tmp_path):
  # Step index 7 (the 8th step) gets a NaN gradient, its loss stays finite;
  # step 8 is a checkpoint step, so before the fix NaN params were saved.
  with pytest.raises(
      FloatingPointError, match="non-finite at step 8 although the loss"
  ):
    _run(tmp_path, triggers={"nan_grad_at": 7})
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps == [4, 6]
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  _, tree, _ = ckpt.restore_latest(_abstract_toy_tree())
  ckpt.close()
  assert np.all(np.isfinite(np.asarray(tree["params"]["w"])))
  metrics, _ = _run(tmp_path)  # Resuming without the trigger finishes.
  assert np.isfinite(metrics["mse"])


def _abstract_toy_tree():
  """The checkpoint tree of a fresh toy run (structure to restore into)."""
  import jax
  from avjax.train.state import TrainState

  config = toy_config()
  method = ToyRegression(config)
  params = {"w": jax.numpy.zeros(3)}
  state = TrainState.create(
      params,
      method.make_optimizer(None, methods.RunInfo.from_config(config)),
      jax.random.PRNGKey(0),
  )
  return state.checkpoint_tree()


def test_resume_free_keys_may_change(tmp_path):
  """Logging, checkpoint and evaluation settings are not part of the run."""
  _run(tmp_path)
  metrics, _ = _run(
      tmp_path, log_every=3, eval_every=5, eval_batch_size=7, checkpoint_every=2
  )
  assert np.isfinite(metrics["mse"])
  with open(tmp_path / "config.json", encoding="utf-8") as f:
    assert json.load(f)["log_every"] == 3


def test_run_fingerprint_is_the_whole_config_but_the_free_keys():
  config = toy_config()
  fingerprint = loop.run_fingerprint(config)
  assert fingerprint["toy"] == {"unused": 0.5}
  assert fingerprint["stages"][1]["scale"] == 2.0
  for key in ("log_every", "eval_every", "checkpoint_every", "evals"):
    assert key in config and key not in fingerprint


def test_checkpoint_of_an_older_format_is_an_error(tmp_path):
  """A config record of avjax < 0.2 (a few blocks only) is not compared."""
  _run(tmp_path)
  for meta_file in (tmp_path / "checkpoints").glob("*/meta/metadata"):
    meta = json.loads(meta_file.read_text())
    del meta["config_format"]
    meta_file.write_text(json.dumps(meta))
  with pytest.raises(checkpoint_lib.CheckpointMismatch, match="older avjax"):
    _run(tmp_path)


@pytest.mark.parametrize(
    "override",
    [
        {"optimizer.name": "sgd"},
        {"optimizer.learning_rate": 0.1},
        {"data.batch_size": 16},
        {"seed": 1},
        {"toy.unused": 1.5},  # a method's own block, read by no shared code
        {"compute_dtype": "bfloat16"},
        {
            "stages": (
                {"name": "first", "steps": 6, "scale": 1.0},
                {"name": "second", "steps": 10, "scale": 2.0},
            )
        },
    ],
)
def test_changed_config_is_an_error_and_keeps_every_checkpoint(
    tmp_path, override
):
  _run(tmp_path)
  before = tree_listing(tmp_path / "checkpoints")
  with pytest.raises(checkpoint_lib.CheckpointMismatch) as info:
    _run(tmp_path, **override)
  message = str(info.value)
  assert str(tmp_path) in message and "new --workdir" in message
  key = next(iter(override))
  assert key in message  # names what differs
  assert tree_listing(tmp_path / "checkpoints") == before
  assert not os.path.exists(tmp_path / "checkpoints_damaged")
  # The unchanged command still resumes (and re-evaluates) the run.
  metrics, _ = _run(tmp_path)
  assert np.isfinite(metrics["mse"])


def test_per_stage_optimizer_freezes_and_resumes(tmp_path):
  full, _ = _run(tmp_path / "full", method_cls=ToyFrozenSecondStage)
  # w is frozen in stage 2 (steps 6..12): bit-identical to step 6's w.
  ckpt = checkpoint_lib.Checkpointer(
      str(tmp_path / "full" / "checkpoints"), max_to_keep=5
  )
  meta6 = ckpt.read_meta(6)
  ckpt.close()
  assert meta6["stage"] == 1
  part = tmp_path / "part"
  _run(part, method_cls=ToyFrozenSecondStage)
  shutil.rmtree(part / "checkpoints" / "12")
  shutil.rmtree(part / "checkpoints" / "8")
  os.remove(part / "metrics.json")
  # Resume at the stage boundary (step 6): its checkpoint already holds the
  # stage-2 optimiser state.
  resumed, method = _run(part, method_cls=ToyFrozenSecondStage)
  assert method.seen_stages == {"second"}
  assert resumed == full
  first_only, _ = _run(
      tmp_path / "first",
      method_cls=ToyFrozenSecondStage,
      stages=({"name": "first", "steps": 6, "scale": 1.0},),
  )
  for i in range(3):
    assert full[f"w{i}"] == first_only[f"w{i}"]  # frozen: bit-identical
  assert full["b"] != first_only["b"]  # the bias did train in stage 2


def test_changed_stages_on_resume_is_an_error(tmp_path):
  _run(tmp_path)
  for step in (12, 8, 6):  # keep step 4, saved in stage 'first'
    shutil.rmtree(tmp_path / "checkpoints" / str(step))
  with pytest.raises(ValueError, match="config changed between runs"):
    _run(
        tmp_path,
        **{
            "stages": (
                {"name": "first", "steps": 4, "scale": 1.0},
                {"name": "second", "steps": 8, "scale": 2.0},
            )
        },
    )


_KILL_SCRIPT = """
import json, os, signal, sys, time
sys.path.insert(0, {tests_dir!r})
from absl import logging
logging.set_verbosity("info")
logging.set_stderrthreshold("info")
from avjax.train import checkpoint, loop
from toy_method import ToyRegression, toy_config
mode, at = sys.argv[1], int(sys.argv[2])
config = toy_config(**{{
    "stages": ({{"name": "first", "steps": 10, "scale": 1.0}},
               {{"name": "second", "steps": 10, "scale": 2.0}}),
    "checkpoint_every": 3, "max_checkpoints_to_keep": 10}})
if mode == "between_steps":  # SIGKILL before step `at` (0-based) runs.
  real_shard, calls = loop.sharding.shard_batch, [0]
  def shard(batch, mesh):
    if calls[0] == at:
      time.sleep(2.0)  # let in-flight async saves commit first
      os.kill(os.getpid(), signal.SIGKILL)
    calls[0] += 1
    return real_shard(batch, mesh)
  loop.sharding.shard_batch = shard
elif mode == "during_save":  # SIGKILL while step `at`'s save is in flight.
  real_save = checkpoint.Checkpointer.save
  def save(self, step, tree, meta):
    real_save(self, step, tree, meta)
    if step == at:
      os.kill(os.getpid(), signal.SIGKILL)
  checkpoint.Checkpointer.save = save
metrics = loop.train_and_evaluate(config, sys.argv[3],
                                  method=ToyRegression(config))
print(json.dumps(metrics))
"""
_KILL_SAVE_STEPS = (3, 6, 9, 10, 12, 15, 18, 20)  # every 3 + stage ends


def _kill_point(seed):
  """(mode, step) drawn from ``seed``: a random step, or a random save."""
  rng = np.random.default_rng(seed)
  if rng.random() < 0.5:
    return "during_save", int(rng.choice(_KILL_SAVE_STEPS[:-1]))
  return "between_steps", int(rng.integers(1, 20))


def _run_killable(workdir, mode="none", at=-1):
  import subprocess
  import sys

  code = _KILL_SCRIPT.format(tests_dir=os.path.dirname(__file__))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-c", code, mode, str(at), str(workdir)],
      capture_output=True,
      text=True,
      timeout=300,
      env=env,
  )


_KILL_SEEDS = (0, 1, 3)


def test_kill_seeds_cover_a_save_and_both_stages():
  points = [_kill_point(s) for s in _KILL_SEEDS]
  assert any(mode == "during_save" for mode, _ in points)
  assert any(mode == "between_steps" and at > 10 for mode, at in points)
  assert any(at < 10 for _, at in points)


@pytest.fixture(scope="module")
def uninterrupted_killable_run(tmp_path_factory):
  out = _run_killable(tmp_path_factory.mktemp("full"))
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", _KILL_SEEDS)
def test_killed_at_random_point_resumes_exactly(
    tmp_path, seed, uninterrupted_killable_run
):
  mode, at = _kill_point(seed)
  killed = _run_killable(tmp_path, mode, at)
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert not (tmp_path / "metrics.json").exists()
  if mode == "during_save":  # the interrupted save never counts
    expected = max([0] + [s for s in _KILL_SAVE_STEPS if s < at])
  else:  # all saves up to step `at` had committed
    expected = max([0] + [s for s in _KILL_SAVE_STEPS if s <= at])
  out = _run_killable(tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  if expected:
    assert f"Resumed from step {expected} " in out.stderr
  else:
    assert "Resumed from step" not in out.stderr
  resumed = json.loads(out.stdout.strip().splitlines()[-1])
  assert resumed == uninterrupted_killable_run  # exactly, not approximately
  assert not (tmp_path / "checkpoints_damaged").exists()


@pytest.mark.parametrize(
    "method,changed",
    [
        ("tstl_ca", {"loss.margin": 0.3}),
        ("avc", {"sampling.num_negatives": 2}),
        ("cmd", {"cmd.weight": 0.5}),
        ("synchformer", {"data.audio_noise": 0.5}),
        ("mama", {"loss.margin": 0.3}),
    ],
)
def test_every_method_refuses_a_workdir_of_another_setting(
    tmp_path, method, changed
):
  """A method-specific key changed between runs: the error names the key
  and the workdir, before any model or data is built; nothing is moved."""
  config = load_config_file(
      os.path.join(ROOT, "configs", f"{method}.py"), "quick"
  )
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(
      4,
      {"x": np.zeros(3, np.float32)},
      {
          "stage": 0,
          "config": loop.run_fingerprint(config),
          "config_format": 2,
      },
  )
  ckpt.close()
  before = tree_listing(tmp_path / "checkpoints")
  config.update_from_flattened_dict(changed)
  with pytest.raises(checkpoint_lib.CheckpointMismatch) as info:
    loop.train_and_evaluate(config, str(tmp_path))
  key = next(iter(changed))
  assert f"{key}: " in str(info.value) and str(tmp_path) in str(info.value)
  assert tree_listing(tmp_path / "checkpoints") == before
