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
  # Issue 15 item 10: the quick config must learn more than the digit
  # count, i.e. reach well above 3× chance. Chance on the 500 test canvases:
  # R@1 0.0033 with relevance by digit sequence, 0.002 by exact image id;
  # ranking by digit count alone scores 3.0× chance (README). Measured for
  # this config on the 2-core CPU machine (seed 0): R@1 mean 0.029 (8.8×),
  # exact 0.019 (9.5×), R@10 mean 0.195 (chance 0.032); reconstruction
  # distance 0.229 against the corrupted input's 0.670 (ratio 0.34). The
  # floors sit a margin from those values, above the count-only level.
  assert metrics["r1_mean"] >= 5 * 0.0033
  assert metrics["exact_r1_mean"] >= 5 * 0.002
  assert metrics["r10_mean"] > 0.12
  assert metrics["exact_r10_mean"] <= metrics["r10_mean"]
  assert metrics["cmd_recon_ratio"] == pytest.approx(
      metrics["cmd_recon_dist"] / metrics["cmd_corrupt_dist"]
  )
  assert metrics["cmd_recon_ratio"] < 0.5
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
