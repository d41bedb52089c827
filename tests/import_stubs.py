"""Runs Python with a recording stand-in package first on ``sys.path``.

Checking ``sys.modules`` proves nothing where the package is not installed
(an import would fail and be caught). A stand-in package placed first on
``PYTHONPATH`` appends its importer's stack to a log file whenever it is
imported, and then does what ``body`` says (fail like a missing package,
or define a few names), so an import attempt leaves a record whether or
not the real package is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEPARATOR = "=====\n"
_RECORD = """\
import os
import traceback

with open(os.environ["AVJAX_STUB_IMPORT_LOG"], "a", encoding="utf-8") as f:
    f.write("".join(traceback.format_stack()) + {separator!r})
"""


def run_with_import_stub(
    tmp_path: Path,
    package: str,
    args: list[str],
    body: str = "",
    timeout: float = 600,
) -> tuple[subprocess.CompletedProcess, str]:
  """Runs ``python args`` (in the repository root) with a stand-in
  ``package`` first on sys.path; returns the process and the import log
  (one stack per import, each ending in ``SEPARATOR``; empty: none)."""
  stub_dir = tmp_path / f"stub_{package}"
  (stub_dir / package).mkdir(parents=True, exist_ok=True)
  (stub_dir / package / "__init__.py").write_text(
      _RECORD.format(separator=SEPARATOR) + body
  )
  log = tmp_path / f"{package}_imports.log"
  env = dict(
      os.environ,
      AVJAX_STUB_IMPORT_LOG=str(log),
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
