"""End-to-end runs of launch/main.py with the AVC quick config."""

import json
import os
import subprocess
import sys

import pytest

from workdir_helpers import assert_refused_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "launch", "main.py")


def _run(workdir, data_dir, arg, *extra):
  cmd = [
      sys.executable,
      MAIN,
      f"--config={os.path.join(ROOT, 'configs', 'avc.py')}:{arg}",
      f"--workdir={workdir}",
      f"--config.data.data_dir={data_dir}",
      *extra,
  ]
  return subprocess.run(
      cmd, cwd=ROOT, capture_output=True, text=True, timeout=900
  )


@pytest.mark.slow
def test_quick_soft_positive_run_writes_probe_metrics(
    tmp_path, av_digits_pairs_dir
):
  out = _run(tmp_path, av_digits_pairs_dir, "quick,strategy=soft")
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "metrics.json") as f:
    metrics = json.load(f)
  for key in (
      "probe_acc_audio",
      "probe_acc_visual",
      "probe_val_acc_audio",
      "probe_val_acc_visual",
      "fewshot_acc_audio",
      "fewshot_acc_visual",
  ):
    assert 0.0 <= metrics[key] <= 1.0, key
  # Ten balanced classes: chance is 0.1. This quick config measured probe
  # accuracies audio 0.893 / visual 0.770 and few-shot 0.630 / 0.488 on the
  # 2-core CPU machine; the floors sit a margin below.
  assert metrics["probe_acc_audio"] > 0.84
  assert metrics["probe_acc_visual"] > 0.72
  assert metrics["fewshot_acc_audio"] > 0.55
  assert metrics["fewshot_acc_visual"] > 0.40
  assert "training_curves.png" in os.listdir(tmp_path / "plots")
  with open(tmp_path / "log.jsonl") as f:
    logged = [json.loads(line) for line in f]
  soft = [
      r["train/soft_positive_frac"]
      for r in logged
      if "train/soft_positive_frac" in r
  ]
  assert soft and min(soft) > 0.9  # Batches of 64 over 10 classes.
  # A method-specific setting changed on the same workdir: refused.
  assert_refused_resume(
      lambda *flags: _run(
          tmp_path, av_digits_pairs_dir, "quick,strategy=soft", *flags
      ),
      tmp_path,
      "--config.loss.temperature.init=0.9",
      "loss.temperature.init",
  )


@pytest.mark.slow
def test_labels_file_with_unknown_clips_is_an_error(
    tmp_path, av_digits_pairs_dir
):
  preds = tmp_path / "preds.csv"
  preds.write_text("clip_id,label\n123456,3\n")
  out = _run(
      tmp_path / "run",
      av_digits_pairs_dir,
      "quick,strategy=soft",
      f"--config.sampling.labels_file={preds}",
  )
  assert out.returncode != 0
  assert "unknown clip id(s) not in the data: [123456]" in out.stderr
