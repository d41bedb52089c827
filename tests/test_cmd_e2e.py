"""End-to-end: launch/main.py with configs/cmd.py:quick, and bench_cmd.py."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(script, *args):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, script), *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=900,
  )


@pytest.mark.slow
def test_quick_run_writes_metrics_and_plots(tmp_path, av_digits_captions_dir):
  out = _python(
      "launch/main.py",
      f"--config={os.path.join(ROOT, 'configs/cmd.py')}:quick",
      f"--workdir={tmp_path}",
      f"--config.data.data_dir={av_digits_captions_dir}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "metrics.json") as f:
    metrics = json.load(f)
  for direction in ("s2i", "i2s"):
    for k in (1, 5, 10):
      assert 0.0 <= metrics[f"r{k}_{direction}"] <= 1.0
  assert metrics["r10_mean"] >= metrics["r1_mean"]
  assert metrics["head_params"] > 0
  # Measured for this quick config on the 2-core CPU machine, relevance by
  # digit sequence: R@10 mean 0.070 (chance 0.032; R@1 0.007, chance
  # 0.0033; by exact image id R@1 0.005, chance 0.002), reconstruction
  # distance 0.127 against the corrupted input's 0.620 (ratio 0.205). The
  # floors sit a margin from those values.
  assert metrics["r10_mean"] > 0.05
  assert metrics["exact_r10_mean"] <= metrics["r10_mean"]
  assert metrics["cmd_recon_ratio"] == pytest.approx(
      metrics["cmd_recon_dist"] / metrics["cmd_corrupt_dist"]
  )
  assert metrics["cmd_recon_ratio"] < 0.3
  assert 0.01 <= metrics["temperature"] <= 0.5
  plots = set(os.listdir(tmp_path / "plots"))
  assert {
      "retrieval_examples.png",
      "cmd_attention_0.png",
      "training_curves.png",
  } <= plots
  assert "CMD head:" in out.stderr


@pytest.mark.slow
def test_bench_reports_step_time_ratio(tmp_path, av_digits_captions_dir):
  result = tmp_path / "bench.json"
  out = _python(
      "launch/bench_cmd.py",
      "--config=configs/cmd.py:quick",
      "--rounds=1",
      "--steps=2",
      f"--out={result}",
      f"--data_dir={av_digits_captions_dir}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(result) as f:
    bench = json.load(f)
  assert bench["head_params"] > 0
  assert bench["cmd_step_ms"] > 0 and bench["contrastive_step_ms"] > 0
  assert bench["step_time_ratio"] == pytest.approx(
      bench["cmd_step_ms"] / bench["contrastive_step_ms"]
  )
