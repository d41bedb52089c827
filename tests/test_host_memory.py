"""host_memory: freed blocks stay in the process; a user's choice stands."""

import os
import subprocess
import sys

import pytest

from avjax.train import host_memory
from avjax.train import loop
from toy_method import ToyRegression, toy_config

# Allocates and frees a 48 MiB array ten times and prints the minor page
# faults of those ten rounds (the first allocation is not counted): by
# default glibc maps every such block afresh (above its 32 MiB ceiling for
# the dynamic mmap threshold), so each round faults its pages in again.
_PROBE = """
import resource, sys
import numpy as np
from avjax.train import host_memory
applied = host_memory.retain_freed_memory() if sys.argv[1] == "1" else False
n = (48 << 20) // 8
x = np.ones(n); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  x = np.ones(n); del x
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

_GLIBC = sys.platform.startswith("linux") and os.confstr(
    "CS_GNU_LIBC_VERSION"
).startswith("glibc")


def _probe(retain: bool, **env) -> tuple[bool, int]:
  clean = {
      k: v
      for k, v in os.environ.items()
      if k != host_memory.OPT_OUT_ENV
      and not k.startswith("MALLOC_")
      and k != "GLIBC_TUNABLES"
  }
  out = subprocess.run(
      [sys.executable, "-c", _PROBE, "1" if retain else "0"],
      env={**clean, **env},
      capture_output=True,
      text=True,
      check=True,
  )
  applied, faults = out.stdout.split()
  return applied == "True", int(faults)


@pytest.mark.skipif(not _GLIBC, reason="glibc malloc only")
def test_freed_blocks_are_not_faulted_in_again():
  applied_before, faults_default = _probe(retain=False)
  applied, faults_retained = _probe(retain=True)
  assert not applied_before and applied
  # Measured: ~5,000 faults by default (fewer than 10 × 12,288 pages since
  # NumPy asks for transparent huge pages), 1 with the thresholds raised.
  assert faults_default > 1000, faults_default
  assert faults_retained < 100, faults_retained


@pytest.mark.skipif(not _GLIBC, reason="glibc malloc only")
@pytest.mark.parametrize(
    "env",
    [
        {host_memory.OPT_OUT_ENV: "1"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
    ids=["opt_out", "malloc_env", "tunables"],
)
def test_users_choice_stands(env):
  applied, faults = _probe(retain=True, **env)
  assert not applied
  assert faults > 1000, faults


def test_the_loop_retains_freed_memory(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(
      host_memory, "retain_freed_memory", lambda: calls.append(1) or True
  )
  config = toy_config()
  loop.train_and_evaluate(config, str(tmp_path), method=ToyRegression(config))
  assert calls == [1]
