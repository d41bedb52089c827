"""MAMA end to end through the shared loop: outputs, and a run resumed
mid-way (both data streams restored) equals the uninterrupted run."""

import json
import os
import shutil

import pytest

from avjax.train import loop

from test_mama import small_config


@pytest.mark.slow
def test_train_resume_equals_uninterrupted(av_digits_dir, tmp_path):
  data_dir = av_digits_dir.prepare("video_text_noise40")
  config = small_config(
      data_dir,
      "quick,noise=40,steps=6",
      checkpoint_every=3,
      max_checkpoints_to_keep=5,
      log_every=3,
  )
  workdir = tmp_path / "run"
  full = loop.train_and_evaluate(config, str(workdir))
  for key in (
      "r1_t2v",
      "r1_v2t",
      "mc_accuracy",
      "weight_noisy",
      "weight_clean",
      "logit_scale",
  ):
    assert key in full, key
  assert os.path.getsize(workdir / "plots" / "weight_vs_loss.png") > 1000
  assert json.load(open(workdir / "metrics.json")) == full
  logged = [json.loads(line) for line in open(workdir / "log.jsonl")]
  meta_steps = [r["train/meta_step"] for r in logged if "train/meta_step" in r]
  assert meta_steps == [1.0, 1.0]
  # Stopped after step 3: drop the later checkpoint and the results, rerun.
  shutil.rmtree(workdir / "checkpoints" / "6")
  os.remove(workdir / "metrics.json")
  resumed = loop.train_and_evaluate(config, str(workdir))
  assert resumed == full
