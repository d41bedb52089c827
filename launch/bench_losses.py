r"""Benchmarks avjax triplet losses against pytorch-metric-learning (CPU).

Usage:
  python launch/bench_losses.py                      # B = 256, 1024, 4096
  python launch/bench_losses.py --batch_sizes=32,64 --repeats=3

For each batch size B (embedding size ``--dim``, ``--num_classes`` labels)
it times one forward + backward pass, on the same NumPy arrays, of

  * avjax ``triplet_semihard`` and ``triplet_batch_hard`` under
    ``jax.jit(jax.value_and_grad(...))`` — compilation excluded (one warm-up
    call), then the median of ``--repeats`` calls ended by
    ``block_until_ready``;
  * pytorch-metric-learning (when importable) ``TripletMarginLoss(margin)``
    with ``TripletMarginMiner(type_of_triplets="semihard")`` resp.
    ``BatchHardMiner``, plain (unnormalised) L2 distance as in avjax, miner +
    loss + ``backward()``, ``torch.set_num_threads`` = this process's cores.

and prints a Markdown table with both times and the ratio pml / avjax.
Semantics differ slightly for semi-hard mining: avjax follows TF-Addons (one
negative per positive pair), pml keeps every triplet with
0 < d_an − d_ap ≤ margin; both are the libraries' semi-hard recipes. pml's
miner enumerates all B³ triplets, so its semi-hard column is skipped above
``--torch_max_cubic_batch`` (B = 4096 would need ~70 GB for the mask alone).
Expected on 2 CPU cores: avjax several times (semi-hard: about two orders of
magnitude at B = 1024) faster than pml.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Callable, Sequence

from absl import app
from absl import flags

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["256", "1024", "4096"],
                                 "Batch sizes B to time.")
_DIM = flags.DEFINE_integer("dim", 128, "Embedding size D.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10,
                                    "Labels drawn uniformly from this many.")
_MARGIN = flags.DEFINE_float("margin", 1.0, "Triplet margin.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per cell.")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds_per_cell", 60.0,
    "Stop repeating a cell once its timed calls exceed this (≥ 1 call).")
_TORCH = flags.DEFINE_bool("torch", True,
                           "Time pytorch-metric-learning when importable.")
_TORCH_MAX_CUBIC = flags.DEFINE_integer(
    "torch_max_cubic_batch", 1024,
    "Largest B for pml's semi-hard miner (O(B³) memory).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random inputs.")


@dataclasses.dataclass
class Row:
  """One table row: a loss at one batch size."""
  loss: str
  batch: int
  avjax_ms: float
  torch_ms: float | None  # None: not measured (see note)
  note: str = ""

  @property
  def ratio(self) -> float | None:
    return None if self.torch_ms is None else self.torch_ms / self.avjax_ms


def num_cores() -> int:
  """CPU cores available to this process."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _median_ms(step: Callable[[], float], repeats: int,
               max_seconds: float) -> float:
  """Median of up to ``repeats`` timings (s → ms) returned by ``step``."""
  times = []
  for _ in range(max(1, repeats)):
    times.append(step())
    if sum(times) > max_seconds:
      break
  return 1e3 * statistics.median(times)


def _time_avjax(loss_fn, emb, labels, margin, repeats, max_seconds) -> float:
  import jax  # pylint: disable=g-import-not-at-top

  step_fn = jax.jit(jax.value_and_grad(loss_fn))
  emb, labels = jax.device_put(emb), jax.device_put(labels)
  jax.block_until_ready(step_fn(emb, labels, margin))  # compile

  def step():
    start = time.perf_counter()
    jax.block_until_ready(step_fn(emb, labels, margin))
    return time.perf_counter() - start

  return _median_ms(step, repeats, max_seconds)


def _import_pml():
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from pytorch_metric_learning import distances  # pylint: disable=g-import-not-at-top
    from pytorch_metric_learning import losses as pml_losses  # pylint: disable=g-import-not-at-top
    from pytorch_metric_learning import miners  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch, distances, pml_losses, miners


def _time_pml(pml, kind, emb, labels, margin, repeats, max_seconds) -> float:
  torch, distances, pml_losses, miners = pml
  dist = distances.LpDistance(normalize_embeddings=False, p=2)
  if kind == "semihard":
    miner = miners.TripletMarginMiner(margin=margin,
                                      type_of_triplets="semihard",
                                      distance=dist)
  else:
    miner = miners.BatchHardMiner(distance=dist)
  loss_fn = pml_losses.TripletMarginLoss(margin=margin, distance=dist)
  labels_t = torch.from_numpy(labels).long()

  def step():
    x = torch.tensor(emb, requires_grad=True)
    start = time.perf_counter()
    loss = loss_fn(x, labels_t, miner(x, labels_t))
    loss.backward()
    return time.perf_counter() - start

  return _median_ms(step, repeats, max_seconds)


def run_benchmark(batch_sizes: Sequence[int] = (256, 1024, 4096),
                  dim: int = 128, num_classes: int = 10, margin: float = 1.0,
                  repeats: int = 5, max_seconds_per_cell: float = 60.0,
                  use_torch: bool = True, torch_max_cubic_batch: int = 1024,
                  seed: int = 0) -> list[Row]:
  """Times avjax (and pml when importable) triplet losses; returns rows."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avjax import losses  # pylint: disable=g-import-not-at-top

  if any(b < 2 for b in batch_sizes) or dim < 1 or num_classes < 1:
    raise ValueError(f"need batch sizes ≥ 2, dim ≥ 1, num_classes ≥ 1; got "
                     f"{batch_sizes}, {dim}, {num_classes}")
  pml = _import_pml() if use_torch else None
  if pml is not None:
    pml[0].set_num_threads(num_cores())
  rng = np.random.default_rng(seed)
  rows = []
  for batch in batch_sizes:
    emb = rng.normal(size=(batch, dim)).astype(np.float32)
    labels = rng.integers(0, num_classes, batch).astype(np.int32)
    warm_pml = pml is not None
    for kind, fn in (("semihard", losses.triplet_semihard),
                     ("batch_hard", losses.triplet_batch_hard)):
      ms = _time_avjax(fn, emb, labels, margin, repeats, max_seconds_per_cell)
      torch_ms, note = None, ""
      if pml is None:
        note = "pml not installed" if use_torch else "pml disabled"
      elif kind == "semihard" and batch > torch_max_cubic_batch:
        note = (f"pml skipped: its miner builds a B³ = {batch ** 3:.1e} "
                "triplet mask")
      else:
        if warm_pml:  # first torch call pays one-off allocator set-up
          _time_pml(pml, "batch_hard", emb[:8], labels[:8], margin, 1, 1.0)
          warm_pml = False
        torch_ms = _time_pml(pml, kind, emb, labels, margin, repeats,
                             max_seconds_per_cell)
      rows.append(Row(kind, batch, ms, torch_ms, note))
  return rows


def format_table(rows: Sequence[Row], cores: int | None = None) -> str:
  """Markdown table of the rows."""
  cores = num_cores() if cores is None else cores
  lines = [f"| loss | B | avjax fwd+bwd (ms) | pml fwd+bwd (ms) | pml / avjax "
           f"| note |",
           "|---|---:|---:|---:|---:|---|"]
  for r in rows:
    torch_ms = "—" if r.torch_ms is None else f"{r.torch_ms:.1f}"
    ratio = "—" if r.ratio is None else f"{r.ratio:.1f}×"
    lines.append(f"| {r.loss} | {r.batch} | {r.avjax_ms:.1f} | {torch_ms} | "
                 f"{ratio} | {r.note} |")
  try:
    load = "load average %.1f / %.1f / %.1f (1 / 5 / 15 min)" % os.getloadavg()
  except OSError:
    load = "load average unavailable"
  lines.append(f"\n{cores} CPU core(s), {load}; median of timed calls, "
               "compilation excluded.")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  except ValueError as e:
    raise app.UsageError(f"--batch_sizes must be integers: {e}") from e
  rows = run_benchmark(batch_sizes, dim=_DIM.value,
                       num_classes=_NUM_CLASSES.value, margin=_MARGIN.value,
                       repeats=_REPEATS.value,
                       max_seconds_per_cell=_MAX_SECONDS.value,
                       use_torch=_TORCH.value,
                       torch_max_cubic_batch=_TORCH_MAX_CUBIC.value,
                       seed=_SEED.value)
  print(format_table(rows), flush=True)


if __name__ == "__main__":
  app.run(main)
