"""Data parallelism: the loop on 4 forced CPU devices matches 1 device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from avjax.train import sharding

_SCRIPT = """
import json, sys
sys.path.insert(0, {tests_dir!r})
import jax
from avjax.train import loop
from toy_method import ToyRegression, toy_config
config = toy_config()
metrics = loop.train_and_evaluate(config, {workdir!r},
                                  method=ToyRegression(config))
print(json.dumps({{"devices": jax.device_count(), **metrics}}))
"""


def _run_toy(workdir, n_devices):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
  env["JAX_PLATFORMS"] = "cpu"
  code = _SCRIPT.format(tests_dir=os.path.dirname(__file__),
                        workdir=str(workdir))
  out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                       capture_output=True, text=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_match_one(tmp_path):
  one = _run_toy(tmp_path / "one", 1)
  four = _run_toy(tmp_path / "four", 4)
  assert one.pop("devices") == 1 and four.pop("devices") == 4
  for key in one:
    np.testing.assert_allclose(four[key], one[key], rtol=1e-5, err_msg=key)


def test_batch_size_must_divide_devices():
  mesh = sharding.make_mesh()
  assert sharding.check_batch_size(8 * mesh.devices.size, mesh) == (
      8 * mesh.devices.size)
  if mesh.devices.size > 1:
    with pytest.raises(ValueError, match="not divisible"):
      sharding.check_batch_size(mesh.devices.size + 1, mesh)
