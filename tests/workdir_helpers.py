"""Checks on a run's workdir shared by the launcher tests."""

from __future__ import annotations

import os
import subprocess


def tree_listing(root) -> dict[str, tuple[int, int]]:
  """Relative path -> (size, mtime) of every file under ``root``."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      st = os.stat(path)
      out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
  return out


def assert_refused_resume(
    run, workdir, changed_flag: str, changed_key: str
) -> None:
  """Reruns a finished launcher run with one config key changed: a
  non-zero exit naming the key and the workdir, checkpoints untouched.

  Args:
    run: ``(*extra_flags) -> subprocess.CompletedProcess`` of the launcher
      command that trained ``workdir``.
    workdir: the finished run's directory.
    changed_flag: e.g. ``--config.avc.strategy=hard``.
    changed_key: the dotted key the error must name.
  """
  before = tree_listing(os.path.join(workdir, "checkpoints"))
  out: subprocess.CompletedProcess = run(changed_flag)
  assert out.returncode != 0, out.stdout[-2000:]
  assert changed_key in out.stderr, out.stderr[-3000:]
  assert str(workdir) in out.stderr, out.stderr[-3000:]
  assert tree_listing(os.path.join(workdir, "checkpoints")) == before
