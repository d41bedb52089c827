"""TensorFlow is never imported: not by the builders, the pipelines or a run.

Checking ``sys.modules`` proves nothing in a venv without TensorFlow (the
import would fail and be caught). Here a stub ``tensorflow`` package is put
first on ``sys.path`` of a subprocess; importing it appends the importer's
stack to a log file and then fails like a missing package would, so code
that falls back gracefully still leaves a record. The subprocesses prepare
and read real-layout datasets, and run the launcher on the quick config.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from import_stubs import run_with_import_stub
from manual_fixtures import TREE_WRITERS

ROOT = Path(__file__).resolve().parents[1]
_FAIL_LIKE_MISSING = """
raise ImportError("stub tensorflow (tests/test_no_tensorflow.py): import "
                  "attempt recorded")
"""


def _run_with_stub(
    tmp_path: Path, args: list[str], timeout: float = 600
) -> tuple[subprocess.CompletedProcess, str]:
  """Runs ``python args`` with a recording ``tensorflow`` stand-in."""
  return run_with_import_stub(
      tmp_path, "tensorflow", args, _FAIL_LIKE_MISSING, timeout
  )


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
      from avjax.data.pipeline import iterators
      from avjax.data.pipeline import sources
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
      batch = next(iterators.make_train_iterator(train, 4, seed=0))
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
