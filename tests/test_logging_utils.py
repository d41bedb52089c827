"""Metric logging: TensorBoard + JSON lines, without importing PyTorch."""

import json
import os
import subprocess
import sys
import textwrap

from avjax.train import logging_utils

# A stand-in `torch` first on sys.path: importing it leaves a record, so the
# test sees an import attempt whether or not PyTorch is installed.
_STUB = """\
import os
with open(os.environ["AVJAX_TORCH_IMPORT_LOG"], "a", encoding="utf-8") as f:
    f.write("imported\\n")
Tensor = type("Tensor", (), {})
"""


def test_writer_writes_both_logs_without_importing_torch(tmp_path):
  stub_dir = tmp_path / "stub"
  (stub_dir / "torch").mkdir(parents=True)
  (stub_dir / "torch" / "__init__.py").write_text(_STUB)
  log = tmp_path / "torch_imports.log"
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
  env = dict(
      os.environ,
      AVJAX_TORCH_IMPORT_LOG=str(log),
      PYTHONPATH=os.pathsep.join(
          [str(stub_dir)] + [p for p in (os.environ.get("PYTHONPATH"),) if p]
      ),
  )
  proc = subprocess.run(
      [sys.executable, "-c", script],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "torch after: torch" in proc.stdout
  # Only the script's own import reached the stub, not tensorboardX's.
  assert log.read_text() == "imported\n"
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
