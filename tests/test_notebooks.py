"""Every notebook in launch/notebooks runs top to bottom (shell lines off)."""

import glob
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "launch", "notebooks",
                                          "*.ipynb")))


def _code(path):
  with open(path, encoding="utf-8") as f:
    nb = json.load(f)
  lines = []
  for cell in nb["cells"]:
    if cell["cell_type"] == "code":
      src = "".join(cell["source"])
      lines += [l for l in src.splitlines()
                if not l.lstrip().startswith(("!", "%"))]
  return "\n".join(lines)


def test_there_are_notebooks():
  assert NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path, monkeypatch, av_digits_pairs_dir):
  monkeypatch.setenv("AVJAX_REPO", ROOT)
  monkeypatch.setenv("AVJAX_DATA_DIR", av_digits_pairs_dir)
  monkeypatch.setenv("AVJAX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  namespace = {}
  exec(compile(_code(path), path, "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["metrics"]["map_mean"] > 0.0
  assert os.path.exists(tmp_path / "run" / "metrics.json")
