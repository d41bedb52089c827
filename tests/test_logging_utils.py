"""Metric logging: TensorBoard + JSON lines, without importing PyTorch."""

import json
import os
import textwrap

from import_stubs import SEPARATOR
from import_stubs import run_with_import_stub

from avjax.train import logging_utils

# The stand-in `torch` defines what tensorboardX reads from it.
_TORCH_BODY = 'Tensor = type("Tensor", (), {})\n'


def test_writer_writes_both_logs_without_importing_torch(tmp_path):
  workdir = tmp_path / "work"
  script = textwrap.dedent(f"""
      import sys
      from avjax.train import logging_utils
      writer = logging_utils.MetricWriter({str(workdir)!r})
      writer.write_scalars(3, {{"train/loss": 0.5, "train/bad": float("nan")}})
      writer.close()
      assert "torch" not in sys.modules, sys.modules["torch"]
      import torch  # importable again afterwards
      print("torch after:", torch.__name__)
      """)
  proc, log = run_with_import_stub(
      tmp_path, "torch", ["-c", script], _TORCH_BODY, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "torch after: torch" in proc.stdout
  # Only the script's own import reached the stand-in, not tensorboardX's.
  assert log.count(SEPARATOR) == 1 and "<string>" in log, log
  assert "tensorboardX" not in log
  (event_file,) = os.listdir(workdir / "tensorboard")
  assert event_file.startswith("events.out.tfevents.")
  assert os.path.getsize(workdir / "tensorboard" / event_file) > 0
  lines = (workdir / "log.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
      {"step": 3, "train/loss": 0.5, "train/bad": "nan"}
  ]


def test_disabled_writer_writes_nothing(tmp_path):
  writer = logging_utils.MetricWriter(str(tmp_path / "work"), enabled=False)
  writer.write_scalars(1, {"loss": 1.0})
  writer.flush()
  writer.close()
  assert not (tmp_path / "work").exists()
