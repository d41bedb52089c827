"""End-to-end: launch/bench_cmd.py on configs/cmd.py:quick.

The quick CMD training run itself, with its learning checks, is the CMD
notebook's (tests/test_notebooks.py).
"""

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
  assert bench["with_head_step_ms"] > 0 and bench["contrastive_step_ms"] > 0
  assert bench["step_time_ratio"] == pytest.approx(
      bench["with_head_step_ms"] / bench["contrastive_step_ms"]
  )
