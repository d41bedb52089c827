"""MAMA end to end through the shared loop: outputs, a run resumed mid-way
(both data streams restored) equals the uninterrupted run, and the bilevel
benchmark. The quick noise=40 run, which must down-weight the noisy pairs,
is the MAMA notebook's (tests/test_notebooks.py)."""

import json
import os
import shutil

import pytest

from avjax.train import loop

import launch_modules
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
      "r1_text2video",
      "r1_video2text",
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


@pytest.mark.slow
def test_bench_bilevel_reports_both_steps_and_their_ratio(
    av_digits_dir, tmp_path
):
  """launch/bench_bilevel.py end to end (1 round of 2 steps each)."""
  result = tmp_path / "bench.json"
  out = launch_modules.run(
      "bench_bilevel",
      "--config=configs/mama.py:quick",
      "--rounds=1",
      "--steps=2",
      f"--out={result}",
      f"--data_dir={av_digits_dir.prepare('video_text_noise40')}",
      timeout=900,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(result) as f:
    bench = json.load(f)
  # Meta-Weight-Net's 1 → 100 → 1 MLP: 100 + 100 + 100 + 1 parameters.
  assert bench["weight_net_params"] == 301
  assert bench["encoder_params"] > 10 * bench["weight_net_params"]
  assert bench["bilevel_step_ms"] > 0 and bench["plain_step_ms"] > 0
  assert bench["step_time_ratio"] == pytest.approx(
      bench["bilevel_step_ms"] / bench["plain_step_ms"]
  )
