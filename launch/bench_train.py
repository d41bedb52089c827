r"""Training throughput against the machine's peak: step time, FLOPs, MFU.

For each config (default: every method's README config) and each of its
curriculum stages, builds the method, its data iterator and the state
exactly as ``avjax.train.loop`` does, jits the loop's own step
(``loop.checked_train_step``: forward, backward, optimiser update and the
finiteness check) and measures, all in one process and side by side:

* the step time (compile excluded; median over interleaved rounds, so load
  from other processes hits every step and the peak measurement alike);
* examples per second (the config's global batch / step time);
* the step's FLOPs two ways: XLA's ``cost_analysis()`` of the compiled step
  (which also counts elementwise work), and an analytic count of its matrix
  multiplications and convolutions read off the step's jaxpr
  (``2 · output size · contraction size`` per ``dot_general``, the same with
  the kernel window for ``conv_general_dilated``; loops multiplied by their
  trip count);
* achieved FLOP/s and the model FLOPs utilisation (MFU): achieved / peak,
  where the peak is a large float32 matmul (``--peak_n``) timed in the same
  rounds;
* the input pipeline's batches per second (``next()`` on the method's own
  grain iterator, features included) against the step rate.

Host memory is set up as the loop sets it (``host_memory``: freed blocks
stay in the process).

  python launch/bench_train.py
  python launch/bench_train.py --configs configs/cmd.py:quick --rounds 3

Prints a Markdown table (and with --out writes JSON). With
``--profile_dir`` it then traces a few steps of each stage with
``jax.profiler`` and prints where each step's time goes, per XLA operation
(``avjax.train.step_profile``); the traces stay in the directory for
TensorBoard's profile plugin or Perfetto.

  python launch/bench_train.py --configs configs/avc.py --profile_dir /tmp/p
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from typing import Any

from absl import app
from absl import flags

_DEFAULT_CONFIGS = (
    "configs/tstl_ca.py",
    "configs/avc.py",
    "configs/cmd.py",
    "configs/synchformer.py",
    "configs/mama.py",
)
_CONFIGS = flags.DEFINE_list(
    "configs",
    None,
    "Config specs (file[:arg]); default: every method's "
    "default config that exists.",
)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per round and stage.")
_PIPELINE_BATCHES = flags.DEFINE_integer(
    "pipeline_batches", 40, "Batches drawn to time the input pipeline."
)
_PEAK_N = flags.DEFINE_integer(
    "peak_n", 2048, "Size of the float32 matmul timed as peak."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data dir (default: the configs')."
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON output path.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    None,
    "If set, replaces every config's data.batch_size (to see how the "
    "step's MFU moves with the batch).",
    lower_bound=1,
)
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir",
    None,
    "If set, also trace --profile_steps steps of each stage with "
    "jax.profiler into <dir>/<stage> and print where each step's time "
    "goes, by XLA operation (avjax.train.step_profile).",
)
_PROFILE_STEPS = flags.DEFINE_integer(
    "profile_steps",
    3,
    "Steps traced per stage with --profile_dir.",
    lower_bound=1,
)
_PROFILE_TOP = flags.DEFINE_integer(
    "profile_top",
    10,
    "Instructions listed per stage with --profile_dir.",
    lower_bound=0,
)


def matmul_conv_flops(jaxpr) -> float:
  """FLOPs of every dot_general / conv in a (closed) jaxpr, recursively.

  2 per multiply-add: a dot's output size times its contraction size; a
  conv's output size times its window (kernel taps × input features per
  group; taps over padding included, taps over the zeros of an input
  dilation not).
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.extend import core  # pylint: disable=import-outside-toplevel

  def size(aval) -> int:
    return int(np.prod(aval.shape)) if aval.shape else 1

  def walk(jpr, times: float) -> float:
    total = 0.0
    for eqn in jpr.eqns:
      name = eqn.primitive.name
      if name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        k = int(np.prod([lhs.shape[d] for d in lhs_contract]))
        total += times * 2.0 * size(eqn.outvars[0].aval) * k
      elif name == "conv_general_dilated":
        rhs = eqn.invars[1].aval
        dn = eqn.params["dimension_numbers"]
        out_feature_dim = dn.rhs_spec[0]
        window = size(rhs) // rhs.shape[out_feature_dim]
        # A strided conv's input gradient is a conv over the output
        # gradient with zeros inserted between its values (lhs dilation):
        # only 1 / prod(dilation) of its window taps meet a value.
        dilation = np.prod(eqn.params.get("lhs_dilation") or (1,))
        total += times * 2.0 * size(eqn.outvars[0].aval) * window / dilation
      trip = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
      for param in eqn.params.values():
        subs = param if isinstance(param, (list, tuple)) else [param]
        for sub in subs:
          if isinstance(sub, core.ClosedJaxpr):
            total += walk(sub.jaxpr, times * trip)
          elif isinstance(sub, core.Jaxpr):
            total += walk(sub, times * trip)
    return total

  return walk(jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr, 1.0)


def _xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def _timed(fn, n: int) -> float:
  """Seconds per call of ``fn`` (which returns something to block on)."""
  import jax  # pylint: disable=import-outside-toplevel

  t0 = time.perf_counter()
  out = None
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / n


class _StageBench:
  """One jitted training step of one stage of one config."""

  def __init__(self, spec: str, config, method, stage, run, state, batch):
    import jax  # pylint: disable=import-outside-toplevel
    from avjax.train import loop  # pylint: disable=import-outside-toplevel

    self.name = f"{spec} [{stage.name}]"
    self.batch_size = int(config.data.batch_size)
    fn = loop.checked_train_step(method, stage, run)
    self.analytic_flops = matmul_conv_flops(jax.make_jaxpr(fn)(state, batch))
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(state, batch).compile()
    self.compile_s = time.perf_counter() - t0
    self.xla_flops = _xla_flops(compiled)
    self._step, self._state, self._batch = compiled, state, batch
    self.times: list[float] = []

  def profile(self, steps: int, trace_dir: str):
    """Per-operation self times of ``steps`` traced steps."""
    from avjax.train import step_profile  # pylint: disable=import-outside-toplevel

    return step_profile.profile_compiled(
        self._step,
        (self._state, self._batch),
        steps,
        trace_dir,
        carry=lambda out, args: (out[0], args[1]),
    )

  def run(self, n: int) -> None:
    def one():
      self._state, metrics = self._step(self._state, self._batch)
      return metrics

    self.times.append(_timed(one, n))


def _build(
    spec: str, data_dir: str | None, batch_size: int | None = None
) -> tuple[list[_StageBench], Any]:
  import jax  # pylint: disable=import-outside-toplevel

  from avjax import methods  # pylint: disable=import-outside-toplevel
  from avjax.config_utils import load_config_file  # pylint: disable=import-outside-toplevel
  from avjax.train import loop  # pylint: disable=import-outside-toplevel
  from avjax.train import sharding  # pylint: disable=import-outside-toplevel
  from avjax.train.state import TrainState  # pylint: disable=import-outside-toplevel

  path, _, arg = spec.partition(":")
  config = load_config_file(path, arg or None)
  if data_dir:
    config.data.data_dir = data_dir
  if batch_size is not None:
    config.data.batch_size = batch_size
  method = methods.get_method(config)
  mesh = sharding.make_mesh()
  run = methods.RunInfo.from_config(config, mesh)
  iterator = method.train_iterator(config.data.batch_size, config.seed, 0, 1)
  host_batch = next(iterator)
  params_rng, _ = jax.random.split(jax.random.PRNGKey(config.seed))
  params = method.init_params(params_rng, host_batch)
  aux = method.init_aux(params_rng, params)
  batch = sharding.shard_batch(host_batch, mesh)
  benches = []
  txs, _ = loop.stage_optimizers(method, run)
  for stage in run.stages:
    tx = txs[stage.index]
    state = TrainState.create(params, tx, jax.random.PRNGKey(1), aux=aux)
    state = sharding.replicate(
        state.replace(step=jax.numpy.int32(stage.start)), mesh
    )
    benches.append(_StageBench(spec, config, method, stage, run, state, batch))
  return benches, iterator


# Batches drawn before timing the pipeline: twice the training iterators'
# prefetch buffer (4), so the batches its threads made while the steps
# compiled are gone and the timed ones are made at the steady rate.
_DRAIN = 8


def _pipeline_rate(iterator, n: int) -> float:
  for _ in range(_DRAIN):
    next(iterator)
  t0 = time.perf_counter()
  for _ in range(n):
    next(iterator)
  return n / (time.perf_counter() - t0)


def _profile_all(benches: list[_StageBench]) -> dict[str, Any]:
  """Traces each stage, prints where its time goes; name -> Profile."""
  from avjax.train import step_profile  # pylint: disable=import-outside-toplevel

  profiles = {}
  for bench in benches:
    name = "".join(c if c.isalnum() else "_" for c in bench.name).strip("_")
    profile = bench.profile(
        _PROFILE_STEPS.value, os.path.join(_PROFILE_DIR.value, name)
    )
    print(f"\n### {bench.name}\n")
    print(step_profile.format_profile(profile, _PROFILE_TOP.value))
    profiles[bench.name] = profile
  return profiles


def main(argv):
  del argv
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from avjax.train import host_memory  # pylint: disable=import-outside-toplevel

  host_memory.retain_freed_memory()
  specs = _CONFIGS.value or [
      c for c in _DEFAULT_CONFIGS if os.path.exists(c.partition(":")[0])
  ]
  n = _PEAK_N.value
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  peak_times: list[float] = []

  all_benches, pipeline_rates = [], {}
  for spec in specs:
    benches, iterator = _build(spec, _DATA_DIR.value, _BATCH_SIZE.value)
    all_benches += benches
    pipeline_rates[spec] = _pipeline_rate(iterator, _PIPELINE_BATCHES.value)

  for _ in range(_ROUNDS.value):
    peak_times.append(_timed(lambda: matmul(a), 3))
    for bench in all_benches:
      bench.run(_STEPS.value)

  peak = 2.0 * n**3 / statistics.median(peak_times)
  rows = []
  for bench in all_benches:
    step_s = statistics.median(bench.times)
    spec = bench.name.split(" [")[0]
    rows.append(
        {
            "step": bench.name,
            "step_ms": 1e3 * step_s,
            "examples_per_s": bench.batch_size / step_s,
            "xla_gflop": bench.xla_flops / 1e9,
            "analytic_gflop": bench.analytic_flops / 1e9,
            "achieved_gflops": bench.xla_flops / step_s / 1e9,
            "mfu_xla": bench.xla_flops / step_s / peak,
            "mfu_analytic": bench.analytic_flops / step_s / peak,
            "pipeline_batches_per_s": pipeline_rates[spec],
            "pipeline_vs_step": pipeline_rates[spec] * step_s,
            "compile_s": bench.compile_s,
        }
    )
  print(
      f"Peak: {n}x{n} float32 matmul, {peak / 1e9:.1f} GFLOP/s "
      f"(median of {_ROUNDS.value} rounds), {jax.device_count()} "
      f"{jax.devices()[0].platform} device(s)."
  )
  if _BATCH_SIZE.value is not None:
    print(f"Every config's data.batch_size set to {_BATCH_SIZE.value}.")
  print()
  print(
      "| step | ms | examples/s | GFLOP (XLA) | GFLOP (matmul+conv) | "
      "GFLOP/s | MFU (XLA) | MFU (matmul+conv) | pipeline batches/s | "
      "pipeline ÷ step rate |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    print(
        f"| {r['step']} | {r['step_ms']:.1f} | {r['examples_per_s']:.0f} | "
        f"{r['xla_gflop']:.2f} | {r['analytic_gflop']:.2f} | "
        f"{r['achieved_gflops']:.1f} | {100 * r['mfu_xla']:.0f} % | "
        f"{100 * r['mfu_analytic']:.0f} % | "
        f"{r['pipeline_batches_per_s']:.1f} | "
        f"{r['pipeline_vs_step']:.1f}× |"
    )
  if _PROFILE_DIR.value:
    profiles = _profile_all(all_benches)
    for row in rows:
      row["profile_ms_by_category"] = dict(profiles[row["step"]].by_category())
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump({"peak_gflops": peak / 1e9, "rows": rows}, f, indent=2)
  if any(math.isnan(r["xla_gflop"]) for r in rows):
    print("\nXLA gave no FLOP count for some steps (NaN above).")


if __name__ == "__main__":
  app.run(main)
