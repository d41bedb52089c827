r"""Step-time overhead of MAMA's bilevel step against the plain step.

Builds the MAMA method twice from one config — as given (meta-weighting on:
the bilevel step of ``avjax.train.bilevel``) and with ``meta.enabled =
False`` (the plain step on the same margin loss) — initialises both from
the same seed, jits one full training step of each (exactly as
``avjax.train.loop`` runs it, finiteness check included) and times them
side by side on the same batch, interleaving rounds so that load from other
processes hits both alike. Data loading is excluded.

  python launch/bench_bilevel.py --config configs/mama.py
  python launch/bench_bilevel.py --config configs/mama.py:quick --rounds 3 \
      --out runs/bench_bilevel.json

Prints (and with --out writes as JSON) the median step time of each, their
ratio, the compile times and the parameter counts.
"""

from __future__ import annotations


import numpy as np
from absl import app
from absl import flags

_CONFIG = flags.DEFINE_string(
    "config",
    "configs/mama.py",
    "Config file[:arg], e.g. configs/mama.py:quick.",
)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds per variant.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data dir (default: the config's)."
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON output path.")


def _count(tree) -> int:
  import jax  # pylint: disable=import-outside-toplevel

  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def main(argv):
  del argv
  import jax  # pylint: disable=import-outside-toplevel

  from avjax import config_utils  # pylint: disable=import-outside-toplevel
  from avjax.train import timing  # pylint: disable=import-outside-toplevel
  from avjax.methods import mama  # pylint: disable=import-outside-toplevel
  from avjax.train import bilevel  # pylint: disable=import-outside-toplevel
  from avjax.train import loop  # pylint: disable=import-outside-toplevel

  path, _, arg = _CONFIG.value.partition(":")
  config = config_utils.load_config_file(path, arg or None)
  if _DATA_DIR.value:
    config.data.data_dir = _DATA_DIR.value
  if not config.meta.enabled:
    raise ValueError(
        f"--config {_CONFIG.value!r} has meta.enabled = False; "
        "benchmark a config with meta-weighting"
    )
  plain_config = config.copy_and_resolve_references()
  plain_config.meta.enabled = False

  probe = mama.MAMA(config)
  iterator = probe.train_iterator(config.data.batch_size, config.seed, 0, 1)
  batch = jax.device_put(next(iterator))

  variants = {
      "bilevel": loop.first_stage_step(mama.MAMA(config), config, batch),
      "plain": loop.first_stage_step(
          mama.MAMA(plain_config), plain_config, batch
      ),
  }
  timed = timing.interleaved_step_times(
      variants, batch, _ROUNDS.value, _STEPS.value
  )

  params = timed["bilevel"]["state"].params
  result = {
      "config": _CONFIG.value,
      "batch_size": int(config.data.batch_size),
      "meta_batch_size": int(config.meta.batch_size or config.data.batch_size),
      "virtual_step": config.meta.virtual_step,
      "meta_every": int(config.meta.meta_every),
      "device": str(jax.devices()[0]),
      "steps_per_round": _STEPS.value,
      "rounds": _ROUNDS.value,
      "encoder_params": _count(params["encoders"]),
      "weight_net_params": _count(
          timed["bilevel"]["state"].aux[bilevel.META_KEY]["params"]
      ),
  }
  for name, v in timed.items():
    result[f"{name}_step_ms"] = v["step_ms"]
    result[f"{name}_compile_s"] = v["compile_s"]
  result["step_time_ratio"] = (
      result["bilevel_step_ms"] / result["plain_step_ms"]
  )
  timing.print_and_save(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
