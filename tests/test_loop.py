"""The shared loop: training, stages, resume, damaged checkpoints, NaN stop."""

import json
import os
import shutil

import numpy as np
import pytest

from avjax.train import loop

from toy_method import ToyRegression, toy_config


def _run(workdir, **overrides):
  config = toy_config(**overrides)
  method = ToyRegression(config)
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
  assert [r["step"] for r in logged if "train/loss" in r] == [2, 4, 6, 8, 10, 12]
  assert [r["train/stage"] for r in logged if "train/stage" in r] == [
      0, 0, 0, 1, 1, 1]
  assert os.listdir(tmp_path / "tensorboard")
  assert os.path.exists(tmp_path / "plots" / "training_curves.png")


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
    _run(tmp_path, **{"data.nan_at_step": 5})
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps == [4]
  assert not os.path.exists(tmp_path / "metrics.json")
  # The kept checkpoint is finite and restorable: resuming without the NaN
  # trigger finishes the run.
  metrics, _ = _run(tmp_path)
  assert np.isfinite(metrics["mse"])


def test_changed_stages_on_resume_is_an_error(tmp_path):
  _run(tmp_path)
  for step in (12, 8, 6):  # keep step 4, saved in stage 'first'
    shutil.rmtree(tmp_path / "checkpoints" / str(step))
  with pytest.raises(ValueError, match="config changed between runs"):
    _run(tmp_path, **{"stages": ({"name": "first", "steps": 4, "scale": 1.0},
                                 {"name": "second", "steps": 8, "scale": 2.0})})
