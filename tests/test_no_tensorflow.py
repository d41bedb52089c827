"""TensorFlow is never imported: not by the builders, the pipelines or a run.

Checking ``sys.modules`` proves nothing in a venv without TensorFlow (the
import would fail and be caught). Here a stub ``tensorflow`` package is put
first on ``sys.path`` of a subprocess; importing it appends the importer's
stack to a log file and then fails like a missing package would, so code
that falls back gracefully still leaves a record. The subprocesses prepare
and read real-layout datasets, and run the launcher on the quick config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from manual_fixtures import TREE_WRITERS

ROOT = Path(__file__).resolve().parents[1]
_STUB = """\
import os
import traceback

with open(os.environ["AVJAX_TF_IMPORT_LOG"], "a", encoding="utf-8") as f:
    f.write("".join(traceback.format_stack()) + "=====\\n")
raise ImportError("stub tensorflow (tests/test_no_tensorflow.py): import "
                  "attempt recorded")
"""


def _run_with_stub(
    tmp_path: Path, args: list[str], timeout: float = 600
) -> tuple[subprocess.CompletedProcess, str]:
  """Runs ``python args`` with the recording stub first on sys.path."""
  stub_dir = tmp_path / "stub"
  (stub_dir / "tensorflow").mkdir(parents=True, exist_ok=True)
  (stub_dir / "tensorflow" / "__init__.py").write_text(_STUB)
  log = tmp_path / "tensorflow_imports.log"
  env = dict(
      os.environ,
      AVJAX_TF_IMPORT_LOG=str(log),
      JAX_PLATFORMS="cpu",
      PYTHONPATH=os.pathsep.join(
          [str(stub_dir)] + [p for p in (os.environ.get("PYTHONPATH"),) if p]
      ),
  )
  proc = subprocess.run(
      [sys.executable, *args],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
      check=False,
  )
  return proc, (log.read_text() if log.exists() else "")


def test_stub_records_an_import(tmp_path):
  # The probe itself can fail: an import of tensorflow is recorded.
  proc, log = _run_with_stub(
      tmp_path,
      [
          "-c",
          "import tensorflow_datasets as tfds\n"
          "try:\n  import tensorflow\nexcept ImportError as e:\n"
          "  print('caught', e)",
      ],
  )
  assert proc.returncode == 0, proc.stderr
  assert "caught stub tensorflow" in proc.stdout
  assert "_find_and_load" in log and "<string>" in log


def test_builders_and_pipelines_import_no_tensorflow(tmp_path):
  manual_dirs = {}
  for dataset in ("flickr8k_audio", "spokencoco", "ave"):
    manual_dirs[dataset] = tmp_path / dataset
    TREE_WRITERS[dataset](manual_dirs[dataset])
  script = textwrap.dedent(f"""
      from avjax.data import pipeline, sources
      data_dir = {str(tmp_path / "data")!r}
      for name, manual_dir in [
          ("flickr8k_audio/img64", {str(manual_dirs["flickr8k_audio"])!r}),
          ("spokencoco/karpathy_img64", {str(manual_dirs["spokencoco"])!r}),
          ("ave/avcmr15", {str(manual_dirs["ave"])!r})]:
        for split in ("train", "validation", "test"):
          source = sources.load_source(name, split, data_dir=data_dir,
                                       manual_dir=manual_dir)
          assert len([source[i] for i in range(len(source))]) == len(source)
        print(name, "ok")
      train = sources.load_source("ave/avcmr15", "train", data_dir=data_dir)
      batch = next(pipeline.make_train_iterator(train, 4, seed=0))
      assert batch["audio"].shape == (4, 128)
      """)
  proc, log = _run_with_stub(tmp_path, ["-c", script])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count(" ok\n") == 3, proc.stdout
  assert not log, f"tensorflow was imported from:\n{log}"


@pytest.mark.slow
def test_launcher_quick_run_imports_no_tensorflow(
    tmp_path, av_digits_pairs_dir
):
  workdir = tmp_path / "work"
  proc, log = _run_with_stub(
      tmp_path,
      [
          "launch/main.py",
          "--config",
          "configs/tstl_ca.py:quick,steps=4",
          "--workdir",
          str(workdir),
          f"--config.data.data_dir={av_digits_pairs_dir}",
      ],
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (workdir / "metrics.json").exists()
  assert "Final test metrics" in proc.stdout
  assert not log, f"tensorflow was imported from:\n{log}"
