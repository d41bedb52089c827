r"""Benchmarks avjax triplet losses against pytorch-metric-learning (CPU).

Usage:
  python launch/bench_losses.py       # B = 256, 1024, 4096 × C = 10, 128
  python launch/bench_losses.py --batch_sizes=32,64 --num_classes=4 --repeats=3

For each batch size B and label count C (embedding size ``--dim``, labels
drawn uniformly from C classes) it times one forward + backward pass, on the
same NumPy arrays, of

  * avjax ``triplet_semihard`` and ``triplet_batch_hard`` under
    ``jax.jit(jax.value_and_grad(...))`` — compilation excluded (one warm-up
    call), calls ended by ``block_until_ready``;
  * pytorch-metric-learning (when importable) ``TripletMarginLoss(margin)``
    with ``TripletMarginMiner(type_of_triplets="semihard")`` resp.
    ``BatchHardMiner``, plain (unnormalised) L2 distance as in avjax, miner +
    loss + ``backward()``, ``torch.set_num_threads`` = this process's cores,
    ``OMP_WAIT_POLICY=PASSIVE`` (unless set) so that PyTorch's idle OpenMP
    threads do not spin through the JAX calls timed between its own.

The cells of one (B, C) run in interleaved rounds (each round times every
cell once) and report medians, so a load change on a shared machine hits
all of them alike. It prints a Markdown table with the times, the ratio
pml / avjax and, for semi-hard, the ratio to avjax batch-hard.
Semantics differ slightly for semi-hard mining: avjax follows TF-Addons (one
negative per positive pair), pml keeps every triplet with
0 < d_an − d_ap ≤ margin; both are the libraries' semi-hard recipes. pml's
miner enumerates all B³ triplets, so its semi-hard column is skipped above
``--torch_max_cubic_batch`` (B = 4096 would need ~70 GB for the mask alone).
Freed host memory stays in the process (``avjax.train.host_memory``), as
in the training loop. Measured on 2 CPU cores (README): semi-hard takes
2.0-8.8× the time of batch-hard at B = 256-4096 with 10 and 128 classes;
at B = 1024 avjax is 57-106× (semi-hard) and 6.7-14.5× (batch-hard) faster
than pml. Under heavy load pml's times inflate far more than avjax's:
compare ratios within one run.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Callable, Sequence

from absl import app
from absl import flags

_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["256", "1024", "4096"], "Batch sizes B to time."
)
_DIM = flags.DEFINE_integer("dim", 128, "Embedding size D.")
_NUM_CLASSES = flags.DEFINE_list(
    "num_classes",
    ["10", "128"],
    "Class counts C to time; labels are drawn uniformly from C classes.",
)
_MARGIN = flags.DEFINE_float("margin", 1.0, "Triplet margin.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds per (B, C).")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds_per_cell",
    60.0,
    "Stop repeating a cell once its timed calls exceed this (≥ 1 call).",
)
_TORCH = flags.DEFINE_bool(
    "torch", True, "Time pytorch-metric-learning when importable."
)
_TORCH_MAX_CUBIC = flags.DEFINE_integer(
    "torch_max_cubic_batch",
    1024,
    "Largest B for pml's semi-hard miner (O(B³) memory).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random inputs.")


@dataclasses.dataclass
class Row:
  """One table row: a loss at one batch size and class count."""

  loss: str
  batch: int
  classes: int
  avjax_ms: float
  torch_ms: float | None  # None: not measured (see note)
  note: str = ""
  vs_batch_hard: float | None = None  # avjax_ms / avjax batch-hard ms

  @property
  def ratio(self) -> float | None:
    return None if self.torch_ms is None else self.torch_ms / self.avjax_ms


def num_cores() -> int:
  """CPU cores available to this process."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _interleaved_medians_ms(
    steps: Sequence[Callable[[], float]], repeats: int, max_seconds: float
) -> list[float]:
  """Median (ms) of each step's timings (s), taken in interleaved rounds.

  Each round calls every step once; a step whose summed time exceeds
  ``max_seconds`` sits out the remaining rounds (it keeps ≥ 1 timing).
  """
  times = [[] for _ in steps]
  for _ in range(max(1, repeats)):
    for step, spent in zip(steps, times):
      if not spent or sum(spent) <= max_seconds:
        spent.append(step())
  return [1e3 * statistics.median(t) for t in times]


def _avjax_step(loss_fn, emb, labels, margin) -> Callable[[], float]:
  """Compiles (and warms) ``value_and_grad(loss_fn)``; returns a timer."""
  import jax  # pylint: disable=g-import-not-at-top

  step_fn = jax.jit(jax.value_and_grad(loss_fn))
  emb, labels = jax.device_put(emb), jax.device_put(labels)
  jax.block_until_ready(step_fn(emb, labels, margin))  # compile

  def step():
    start = time.perf_counter()
    jax.block_until_ready(step_fn(emb, labels, margin))
    return time.perf_counter() - start

  return step


def _import_pml():
  # PyTorch's OpenMP workers otherwise busy-wait after each call and take
  # the cores from the JAX call timed next (measured, B = 1024, 2 cores:
  # avjax batch-hard 12-16 ms interleaved against 8-10 ms alone; with
  # passive waiting 8-10 ms interleaved too, and pml's own times unchanged
  # at 45-48 ms). It must be set before torch loads its OpenMP runtime; a
  # value the user set stands.
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from pytorch_metric_learning import distances  # pylint: disable=g-import-not-at-top
    from pytorch_metric_learning import losses as pml_losses  # pylint: disable=g-import-not-at-top
    from pytorch_metric_learning import miners  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch, distances, pml_losses, miners


def _pml_step(pml, kind, emb, labels, margin) -> Callable[[], float]:
  """pml miner + loss + ``backward()`` as a timer."""
  torch, distances, pml_losses, miners = pml
  dist = distances.LpDistance(normalize_embeddings=False, p=2)
  if kind == "semihard":
    miner = miners.TripletMarginMiner(
        margin=margin, type_of_triplets="semihard", distance=dist
    )
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

  return step


def run_benchmark(
    batch_sizes: Sequence[int] = (256, 1024, 4096),
    dim: int = 128,
    num_classes: int | Sequence[int] = (10, 128),
    margin: float = 1.0,
    repeats: int = 5,
    max_seconds_per_cell: float = 60.0,
    use_torch: bool = True,
    torch_max_cubic_batch: int = 1024,
    seed: int = 0,
) -> list[Row]:
  """Times avjax (and pml when importable) triplet losses; returns rows."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avjax import losses  # pylint: disable=g-import-not-at-top

  if isinstance(num_classes, int):
    num_classes = (num_classes,)
  if (
      any(b < 2 for b in batch_sizes)
      or dim < 1
      or not num_classes
      or any(c < 1 for c in num_classes)
  ):
    raise ValueError(
        f"need batch sizes ≥ 2, dim ≥ 1, num_classes ≥ 1; got "
        f"{batch_sizes}, {dim}, {num_classes}"
    )
  pml = _import_pml() if use_torch else None
  if pml is not None:
    pml[0].set_num_threads(num_cores())
    # The first torch call pays one-off allocator and thread-pool set-up.
    rng = np.random.default_rng(seed)
    _pml_step(
        pml,
        "batch_hard",
        rng.normal(size=(8, dim)).astype(np.float32),
        np.arange(8) % 2,
        margin,
    )()
  rng = np.random.default_rng(seed)
  rows = []
  for batch in batch_sizes:
    for classes in num_classes:
      emb = rng.normal(size=(batch, dim)).astype(np.float32)
      labels = rng.integers(0, classes, batch).astype(np.int32)
      cells, steps = [], []
      for kind, fn in (
          ("semihard", losses.triplet_semihard),
          ("batch_hard", losses.triplet_batch_hard),
      ):
        cells.append(Row(kind, batch, classes, 0.0, None))
        steps.append(_avjax_step(fn, emb, labels, margin))
        if pml is None:
          cells[-1].note = "pml not installed" if use_torch else "pml disabled"
        elif kind == "semihard" and batch > torch_max_cubic_batch:
          cells[-1].note = (
              f"pml skipped: its miner builds a B³ = "
              f"{batch ** 3:.1e} triplet mask"
          )
        else:
          steps.append(_pml_step(pml, kind, emb, labels, margin))
      times = iter(
          _interleaved_medians_ms(steps, repeats, max_seconds_per_cell)
      )
      for row in cells:
        row.avjax_ms = next(times)
        if not row.note:
          row.torch_ms = next(times)
      cells[0].vs_batch_hard = cells[0].avjax_ms / cells[1].avjax_ms
      rows.extend(cells)
  return rows


def format_table(rows: Sequence[Row], cores: int | None = None) -> str:
  """Markdown table of the rows."""
  cores = num_cores() if cores is None else cores
  lines = [
      "| loss | B | classes | avjax fwd+bwd (ms) | avjax / batch-hard "
      "| pml fwd+bwd (ms) | pml / avjax | note |",
      "|---|---:|---:|---:|---:|---:|---:|---|",
  ]
  for r in rows:
    vs_hard = "—" if r.vs_batch_hard is None else f"{r.vs_batch_hard:.1f}×"
    torch_ms = "—" if r.torch_ms is None else f"{r.torch_ms:.1f}"
    ratio = "—" if r.ratio is None else f"{r.ratio:.1f}×"
    lines.append(
        f"| {r.loss} | {r.batch} | {r.classes} | {r.avjax_ms:.1f} | "
        f"{vs_hard} | {torch_ms} | {ratio} | {r.note} |"
    )
  try:
    load = "load average %.1f / %.1f / %.1f (1 / 5 / 15 min)" % os.getloadavg()
  except OSError:
    load = "load average unavailable"
  lines.append(
      f"\n{cores} CPU core(s), {load}; medians of interleaved "
      "rounds, compilation excluded."
  )
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    batch_sizes = [int(b) for b in _BATCH_SIZES.value]
    num_classes = [int(c) for c in _NUM_CLASSES.value]
  except ValueError as e:
    raise app.UsageError(
        f"--batch_sizes and --num_classes must be integers: {e}"
    ) from e
  # Freed host memory stays mapped, as in the training loop: otherwise every
  # call pays page faults for its B × B buffers, and batch-hard's time moved
  # between 5 and 18 ms at B = 1024 from one run to the next.
  from avjax.train import host_memory  # pylint: disable=g-import-not-at-top

  host_memory.retain_freed_memory()
  rows = run_benchmark(
      batch_sizes,
      dim=_DIM.value,
      num_classes=num_classes,
      margin=_MARGIN.value,
      repeats=_REPEATS.value,
      max_seconds_per_cell=_MAX_SECONDS.value,
      use_torch=_TORCH.value,
      torch_max_cubic_batch=_TORCH_MAX_CUBIC.value,
      seed=_SEED.value,
  )
  print(format_table(rows), flush=True)


if __name__ == "__main__":
  app.run(main)
