"""Importing ``launch/*.py`` scripts into one test process.

Each script defines its absl flags at import time in the global
``absl.flags.FLAGS``, and several share natural names (``--steps``,
``--seeds``, ``--out``), so a second script imported into the same pytest
worker would raise ``DuplicateFlagError``. ``load`` removes the flags the
script is about to define before running it. Tests call the scripts'
functions with explicit arguments and never read flag values (which are
unparsed here anyway), so replacing an earlier script's flag of the same
name changes nothing they check.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch")
_DEFINE = re.compile(r'flags\.DEFINE_\w+\(\s*"(\w+)"')


def load(name: str) -> types.ModuleType:
  """``launch/<name>.py`` as a module (imported once per process)."""
  if name in sys.modules:
    return sys.modules[name]
  path = os.path.join(LAUNCH, f"{name}.py")
  with open(path, encoding="utf-8") as f:
    for flag in _DEFINE.findall(f.read()):
      if flag in flags.FLAGS:
        delattr(flags.FLAGS, flag)
  if LAUNCH not in sys.path:
    sys.path.insert(0, LAUNCH)
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def run(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
  """``python launch/<name>.py *args`` in its own interpreter from the
  repository root, stdout and stderr captured as text."""
  return subprocess.run(
      [sys.executable, os.path.join(LAUNCH, f"{name}.py"), *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=timeout,
  )
