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
  code = _SCRIPT.format(
      tests_dir=os.path.dirname(__file__), workdir=str(workdir)
  )
  out = subprocess.run(
      [sys.executable, "-c", code],
      env=env,
      check=True,
      capture_output=True,
      text=True,
      timeout=300,
  )
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
      8 * mesh.devices.size
  )
  if mesh.devices.size > 1:
    with pytest.raises(ValueError, match="not divisible"):
      sharding.check_batch_size(mesh.devices.size + 1, mesh)


_METHOD_SCRIPT = """
import functools, json, sys
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from avjax import methods
from avjax.config_utils import load_config_file
from avjax.train.stages import StageScheduler
from avjax.train.state import TrainState

config = load_config_file({config_path!r}, {config_arg!r})
config.data.data_dir = {data_dir!r}
method = methods.get_method(config)
it = method.train_iterator(32, 0, 0, 1)
batches = [next(it) for _ in range(3)]
params = method.init_params(jax.random.PRNGKey(0), batches[0])
scheduler = StageScheduler(config.stages)
run = methods.RunInfo.from_config(config)


whole_batch_loss = method.loss_fn


def per_shard_loss(mesh):
  # A broken step: each device sees only its own shard of the batch.
  def loss_fn(params, batch, rng, stage, step):
    def local(p, b):
      return jax.lax.pmean(whole_batch_loss(p, b, rng, stage, step)[0],
                           "data")
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")),
                         out_specs=P(), check_vma=False)(params, batch), {{}}
  return loss_fn


results = {{}}
for name, n in (("one", 1), ("four", 4), ("four_per_shard", 4)):
  mesh = Mesh(np.asarray(jax.devices()[:n]), ("data",))
  if name == "four_per_shard":
    method.loss_fn = per_shard_loss(mesh)
  for stage in scheduler:
    state = TrainState.create(
        params, method.make_optimizer(stage, run),
        jax.random.PRNGKey(1))
    # Run the stage's own loss at the stage's first step.
    state = state.replace(step=jax.numpy.int32(stage.start))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = jax.jit(functools.partial(method.train_step, stage=stage, run=run))
    losses = []
    for batch in batches:
      batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
      state, metrics = step(state, batch)
      losses.append(float(metrics["loss"]))
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)])
    results[f"{{name}}/{{stage.name}}"] = {{"losses": losses,
                                           "params": flat.tolist()}}
print(json.dumps({{"devices": jax.device_count(), "results": results}}))
"""


def _run_method_on_meshes(config, arg, data_dir):
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  env["JAX_PLATFORMS"] = "cpu"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = _METHOD_SCRIPT.format(
      config_path=os.path.join(root, "configs", config),
      config_arg=arg,
      data_dir=data_dir,
  )
  out = subprocess.run(
      [sys.executable, "-c", code],
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 4
  return result["results"]


def _assert_whole_batch_semantics(results, stage_names):
  for stage in stage_names:
    one, four = results[f"one/{stage}"], results[f"four/{stage}"]
    broken = results[f"four_per_shard/{stage}"]
    # 4 devices give the 1-device loss and update (up to float reordering).
    np.testing.assert_allclose(
        four["losses"], one["losses"], rtol=2e-5, atol=1e-6, err_msg=stage
    )
    np.testing.assert_allclose(
        four["params"], one["params"], rtol=1e-4, atol=1e-5, err_msg=stage
    )
    # The comparison is sharp enough to see a step that reads only its shard.
    gap = np.max(np.abs(np.subtract(broken["losses"], one["losses"])))
    assert gap > 1e-3, (stage, gap)


@pytest.mark.slow
def test_tstl_ca_both_stages_four_devices_match_one(av_digits_pairs_dir):
  results = _run_method_on_meshes("tstl_ca.py", "quick", av_digits_pairs_dir)
  _assert_whole_batch_semantics(results, ("semihard", "curriculum"))


@pytest.mark.slow
def test_cmd_infonce_four_devices_match_one(av_digits_captions_dir):
  results = _run_method_on_meshes("cmd.py", "quick", av_digits_captions_dir)
  _assert_whole_batch_semantics(results, ("train",))
