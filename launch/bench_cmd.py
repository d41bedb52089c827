r"""Training-time overhead of the CMD head: contrastive + CMD vs contrastive.

Builds the method twice from one config — as given (with the head) and with
``cmd.weight = 0`` (no head, the ``no_cmd`` baseline) — initialises both from
the same seed, jits one full training step of each (forward, backward,
optimiser update, exactly as ``avjax.train.loop`` runs it) and times them
side by side on the same batch, interleaving rounds of the two so that load
from other processes hits both alike. Data loading is excluded.

  python launch/bench_cmd.py --config configs/cmd.py
  python launch/bench_cmd.py --config configs/cmd.py:symmetric --rounds 10 \
      --out runs/bench_cmd.json

Prints (and with --out writes as JSON) the median step time of each, their
ratio, the compile times, and the parameter counts of the encoders and the
head.
"""

from __future__ import annotations


from absl import app
from absl import flags

_CONFIG = flags.DEFINE_string(
    "config", "configs/cmd.py", "Config file[:arg], e.g. configs/cmd.py:quick."
)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved rounds per variant.")
_BATCH = flags.DEFINE_integer(
    "batch_size", None, "Batch size (default: the config's)."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data dir (default: the config's)."
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON output path.")


def _build(config, batch):
  """(jitted step, initial state, method) for one variant."""
  import functools  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  from avjax.methods import base  # pylint: disable=import-outside-toplevel
  from avjax.methods import cmd as cmd_lib  # pylint: disable=import-outside-toplevel
  from avjax.train.state import TrainState  # pylint: disable=import-outside-toplevel

  method = cmd_lib.CMD(config)
  run = base.RunInfo.from_config(config)
  params = method.init_params(jax.random.PRNGKey(config.seed), batch)
  state = TrainState.create(
      params,
      method.make_optimizer(run.stages[0], run),
      jax.random.PRNGKey(config.seed + 1),
  )
  step = jax.jit(
      functools.partial(method.train_step, stage=run.stages[0], run=run)
  )
  return step, state, method


def main(argv):
  del argv
  import jax  # pylint: disable=import-outside-toplevel

  from avjax import config_utils  # pylint: disable=import-outside-toplevel
  from avjax.train import timing  # pylint: disable=import-outside-toplevel
  from avjax.methods import cmd as cmd_lib  # pylint: disable=import-outside-toplevel

  path, _, arg = _CONFIG.value.partition(":")
  config = config_utils.load_config_file(path, arg or None)
  if _BATCH.value:
    config.data.batch_size = _BATCH.value
  if _DATA_DIR.value:
    config.data.data_dir = _DATA_DIR.value
  if float(config.cmd.weight) <= 0:
    raise ValueError(
        f"--config {_CONFIG.value!r} has no CMD head "
        "(cmd.weight = 0); benchmark a config with the head"
    )
  baseline_config = config.copy_and_resolve_references()
  baseline_config.cmd.weight = 0.0

  probe = cmd_lib.CMD(config)
  iterator = probe.train_iterator(config.data.batch_size, config.seed, 0, 1)
  batch = jax.device_put(next(iterator))

  built = {
      "with_head": _build(config, batch),
      "contrastive": _build(baseline_config, batch),
  }
  timed = timing.interleaved_step_times(
      {name: b[:2] for name, b in built.items()},
      batch,
      _ROUNDS.value,
      _STEPS.value,
  )

  params = timed["with_head"]["state"].params
  result = {
      "config": _CONFIG.value,
      "batch_size": int(config.data.batch_size),
      "device": str(jax.devices()[0]),
      "steps_per_round": _STEPS.value,
      "rounds": _ROUNDS.value,
      "head_params": cmd_lib.count_params(params[cmd_lib.HEAD]),
      "encoder_params": cmd_lib.count_params(params["encoders"]),
  }
  for name, v in timed.items():
    result[f"{name}_step_ms"] = v["step_ms"]
    result[f"{name}_compile_s"] = v["compile_s"]
  result["step_time_ratio"] = (
      result["with_head_step_ms"] / result["contrastive_step_ms"]
  )
  timing.print_and_save(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
