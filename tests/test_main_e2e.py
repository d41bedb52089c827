"""End-to-end runs of launch/main.py with TSTL-CA's quick config."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from workdir_helpers import assert_refused_resume
from workdir_helpers import tree_listing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "launch", "main.py")


def _cmd(workdir, data_dir, *extra, config="configs/tstl_ca.py:quick"):
  return [
      sys.executable,
      MAIN,
      f"--config={os.path.join(ROOT, config)}",
      f"--workdir={workdir}",
      f"--config.data.data_dir={data_dir}",
      *extra,
  ]


def _run(workdir, data_dir, *extra, **kwargs):
  return subprocess.run(
      _cmd(workdir, data_dir, *extra, **kwargs),
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=900,
  )


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_quick_run_then_kill_and_resume(tmp_path, av_digits_pairs_dir):
  full = tmp_path / "full"
  out = _run(full, av_digits_pairs_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = _metrics(full)
  for key in ("map_audio2visual", "map_visual2audio", "map_mean"):
    assert 0.0 < metrics[key] <= 1.0
  assert "map_mean" in out.stdout  # printed at the end
  # Chance MAP for 10 balanced classes is ~0.1. This quick config measured
  # map_mean 0.370 (a2v 0.206, v2a 0.535) on the 2-core CPU machine; the
  # floors sit a margin below, so a regression of a few points fails.
  assert metrics["map_mean"] > 0.33
  assert (
      metrics["map_visual2audio"] > 0.48 and metrics["map_audio2visual"] > 0.17
  )
  assert {
      "precision_recall.png",
      "retrieval_examples.png",
      "training_curves.png",
  } <= set(os.listdir(full / "plots"))
  assert os.listdir(full / "tensorboard")

  # Same command, SIGKILLed once the first checkpoint is committed.
  killed = tmp_path / "killed"
  proc = subprocess.Popen(
      _cmd(killed, av_digits_pairs_dir),
      cwd=ROOT,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
  )
  ckpt_dir = killed / "checkpoints"
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if ckpt_dir.is_dir() and any(
        (ckpt_dir / d / "commit_success.txt").exists()
        or (ckpt_dir / d / "_CHECKPOINT_METADATA").exists()
        for d in os.listdir(ckpt_dir)
        if d.isdigit()
    ):
      break
    time.sleep(0.2)
  assert proc.poll() is None, "run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "metrics.json").exists()
  out = _run(killed, av_digits_pairs_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Resumed from step" in out.stderr
  resumed = _metrics(killed)
  assert resumed == metrics  # exactly: same data order, same updates

  # The finished run rerun with another optimiser, or another margin (a
  # method-specific key): a clear error naming the workdir and the field,
  # and every checkpoint left as it was.
  before = tree_listing(full / "checkpoints")
  out = _run(full, av_digits_pairs_dir, "--config.optimizer.name=sgd")
  assert out.returncode != 0
  assert str(full) in out.stderr and "optimizer.name: 'adam' → 'sgd'" in (
      out.stderr
  )
  assert "new --workdir" in out.stderr and "Traceback" not in out.stderr
  assert tree_listing(full / "checkpoints") == before
  assert_refused_resume(
      lambda *flags: _run(full, av_digits_pairs_dir, *flags),
      full,
      "--config.loss.margin=0.3",
      "loss.margin: 0.2 → 0.3",
  )
  assert not (full / "checkpoints_damaged").exists()


@pytest.mark.slow
def test_unknown_config_key_is_named(tmp_path, av_digits_pairs_dir):
  out = _run(tmp_path, av_digits_pairs_dir, "--config.loss.margn=0.3")
  assert out.returncode != 0
  assert "margn" in out.stderr


@pytest.mark.slow
def test_unknown_config_argument_is_named(tmp_path, av_digits_pairs_dir):
  out = _run(tmp_path, av_digits_pairs_dir, config="configs/tstl_ca.py:quik")
  assert out.returncode != 0
  assert "unknown config argument 'quik'" in out.stderr
