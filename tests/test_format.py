"""Every Python file is formatted by pyink in the JAX/Flax house style.

Google style: 2-space indents, 80 columns. Format the tree with

  pyink --pyink-indentation 2 --line-length 80 avjax launch configs tests \
      setup.py
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYINK_ARGS = ["--pyink-indentation", "2", "--line-length", "80"]
PATHS = ["avjax", "launch", "configs", "tests", "setup.py"]


def test_tree_is_pyink_formatted():
  out = subprocess.run(
      [sys.executable, "-m", "pyink", "--check", *PYINK_ARGS, *PATHS],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert out.returncode == 0, (
      "Files not formatted (run: pyink "
      + " ".join(PYINK_ARGS + PATHS)
      + "):\n"
      + out.stderr[-3000:]
  )


def test_check_fails_on_a_four_space_file(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("def f():\n    return 1\n")
  out = subprocess.run(
      [sys.executable, "-m", "pyink", "--check", *PYINK_ARGS, str(bad)],
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert out.returncode == 1 and "would reformat" in out.stderr
