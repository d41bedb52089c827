r"""Runs a config over several variants and seeds; prints a mean ± std table.

Every README results table comes from one command of this script, e.g.:

  python launch/sweep.py --config configs/tstl_ca.py \
      --variants 'one_stage;' --seeds 0,1,2 \
      --metrics map_audio2visual,map_visual2audio,map_mean --workdir runs/tstl_ca_table

``--variants`` is a ';'-separated list of config arguments (an empty item is
the default config); each run uses ``<variant>,seed=<s>`` and trains in
``<workdir>/<variant or default>/seed<s>`` through the same loop as
``launch/main.py``. A finished run (metrics.json present) is not re-run, and
an interrupted one resumes from its checkpoint, so a sweep can be restarted.
The markdown table goes to stdout and to ``<workdir>/table.md``; per-run
metrics, wall times and the process's CPU time during the run (user +
system over all its threads, so comparable across machine loads) go to
``<workdir>/runs.json``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

_CONFIG = flags.DEFINE_string("config", None, "Path of a config file.")
_VARIANTS = flags.DEFINE_string(
    "variants", "", "';'-separated config arguments; '' is the default."
)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_METRICS = flags.DEFINE_list("metrics", None, "metrics.json keys to tabulate.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the runs.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    None,
    "JAX persistent compilation cache directory shared by the runs (runs of "
    "one variant then compile once); default <workdir>/jax_cache.",
)
_OVERRIDES = flags.DEFINE_multi_string(
    "set", [], "Config override key=value (Python literal) for every run."
)
flags.mark_flags_as_required(["config", "metrics", "workdir"])


def apply_overrides(config, overrides: list[str]):
  """Applies ``key=value`` strings; unknown keys raise naming the key."""
  import ast

  for item in overrides:
    key, _, value = item.partition("=")
    try:
      parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      parsed = value
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      if p not in node:
        raise KeyError(f"--set {item!r}: config has no key {key!r}")
      node = node[p]
    if leaf not in node:
      raise KeyError(f"--set {item!r}: config has no key {key!r}")
    node[leaf] = parsed
  return config


def format_table(
    rows: dict[str, list[dict]],
    metrics: list[str],
    times: dict[str, list[float]],
) -> str:
  """Markdown table: one row per variant, mean ± std over its seeds.

  A metric that no run of a variant reports (e.g. the evidence rates of a
  dataset without event times) reads "—" in that variant's row.

  Raises:
    KeyError: a metric some but not all seeds of a variant report, or one
      that no run of any variant reports (a misspelt name).
  """
  for m in metrics:
    if not any(m in r for runs in rows.values() for r in runs):
      raise KeyError(f"no run reports metric {m!r}")
  head = "| variant | " + " | ".join(metrics) + " | seeds | min/run |"
  lines = [head, "|" + "---|" * (len(metrics) + 3)]
  for variant, runs in rows.items():
    cells = []
    for m in metrics:
      present = [r[m] for r in runs if m in r]
      if not present:
        cells.append("—")
        continue
      if len(present) != len(runs):
        raise KeyError(
            f"variant {variant!r}: metric {m!r} is reported by "
            f"{len(present)} of its {len(runs)} runs"
        )
      vals = np.array(present, np.float64)
      cells.append(f"{vals.mean():.3f} ± {vals.std():.3f}")
    minutes = np.mean(times[variant]) / 60 if times[variant] else float("nan")
    lines.append(
        f"| {variant} | "
        + " | ".join(cells)
        + f" | {len(runs)} | {minutes:.1f} |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  from avjax import config_utils
  from avjax.train import logging_utils
  from avjax.train import loop

  logging_utils.quiet_library_logs()
  import jax

  jax.config.update(
      "jax_compilation_cache_dir",
      _COMPILATION_CACHE.value or os.path.join(_WORKDIR.value, "jax_cache"),
  )
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

  variants = _VARIANTS.value.split(";")
  rows, times, record = {}, {}, []
  for variant in variants:
    label = variant or "default"
    rows[label], times[label] = [], []
    for seed in _SEEDS.value:
      arg = ",".join(filter(None, [variant, f"seed={seed}"]))
      workdir = os.path.join(
          _WORKDIR.value, label.replace(",", "+"), f"seed{seed}"
      )
      metrics_path = os.path.join(workdir, "metrics.json")
      time_path = os.path.join(workdir, "wall_seconds.json")
      cpu_path = os.path.join(workdir, "cpu_seconds.json")
      cpu_seconds = None
      if os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
          metrics = json.load(f)
        seconds = None
        if os.path.exists(time_path):
          with open(time_path, encoding="utf-8") as f:
            seconds = json.load(f)
        if os.path.exists(cpu_path):
          with open(cpu_path, encoding="utf-8") as f:
            cpu_seconds = json.load(f)
      else:
        config = apply_overrides(
            config_utils.load_config_file(_CONFIG.value, arg), _OVERRIDES.value
        )
        t0, c0 = time.time(), time.process_time()
        metrics = loop.train_and_evaluate(config, workdir)
        seconds = time.time() - t0
        cpu_seconds = time.process_time() - c0
        with open(time_path, "w", encoding="utf-8") as f:
          json.dump(seconds, f)
        with open(cpu_path, "w", encoding="utf-8") as f:
          json.dump(cpu_seconds, f)
      if seconds is not None:
        times[label].append(seconds)
      missing = [m for m in _METRICS.value if m not in metrics]
      if missing and not record:  # The sweep's first run: a misspelt name?
        raise KeyError(
            f"{metrics_path} has no metric(s) {missing}; it has "
            f"{sorted(metrics)}"
        )
      rows[label].append(metrics)
      record.append(
          {
              "variant": label,
              "seed": seed,
              "seconds": seconds,
              "cpu_seconds": cpu_seconds,
              "metrics": metrics,
          }
      )
      logging.info(
          "%s seed %s: %s",
          label,
          seed,
          {m: metrics.get(m) for m in _METRICS.value},
      )
  table = format_table(rows, _METRICS.value, times)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(
      os.path.join(_WORKDIR.value, "table.md"), "w", encoding="utf-8"
  ) as f:
    f.write(table + "\n")
  with open(
      os.path.join(_WORKDIR.value, "runs.json"), "w", encoding="utf-8"
  ) as f:
    json.dump(record, f, indent=2)
  print(table)


if __name__ == "__main__":
  app.run(main)
