"""Smoke test: launch/bench_losses.py still runs end to end at a tiny size."""

import importlib.util
import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run as a subprocess: the script defines absl flags, which must not leak
# into (and collide with) flags of other modules loaded by pytest.
_SCRIPT = os.path.join(_REPO, "launch", "bench_losses.py")
_HAS_PML = all(
    importlib.util.find_spec(m) is not None
    for m in ("torch", "pytorch_metric_learning")
)


def test_script_main_prints_table():
  env = dict(
      os.environ,
      PYTHONPATH=_REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
      JAX_PLATFORMS="cpu",
  )
  proc = subprocess.run(
      [
          sys.executable,
          _SCRIPT,
          "--batch_sizes=32",
          "--num_classes=3,8",
          "--repeats=1",
          "--dim=16",
      ],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [l for l in proc.stdout.splitlines() if l.startswith("| ")]
  assert lines[0].startswith("| loss | B | classes | avjax")
  body = [
      [c.strip() for c in l.split("|")[1:-1]]
      for l in lines[1:]
      if not l.startswith("|---")
  ]
  assert [tuple(c[:3]) for c in body] == [
      ("semihard", "32", "3"),
      ("batch_hard", "32", "3"),
      ("semihard", "32", "8"),
      ("batch_hard", "32", "8"),
  ]
  for cells in body:
    assert float(cells[3]) > 0
    if cells[0] == "semihard":  # ratio to the batch-hard row below it
      assert cells[4].endswith("×") and float(cells[4][:-1]) > 0
    else:
      assert cells[4] == "—"
    if _HAS_PML:
      assert float(cells[5]) > 0 and cells[6].endswith("×")
    else:
      assert "pml not installed" in cells[7]
