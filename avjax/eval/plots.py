"""PNG plots for evaluation: precision-recall, retrieval grids, attention, logs.

Every function draws on a `matplotlib.figure.Figure` attached to an Agg
canvas (never pyplot), saves one PNG to `path` (creating its folder) and
returns `path` as a string. Such a figure is not registered with pyplot, so
no GUI backend starts, nothing is shown, and the figure is freed with its
last reference, so nothing is left open between calls. Sizes are fixed
(no tight bounding box), so the PNG is exactly figsize * dpi pixels; each
function documents its size.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avjax.eval import retrieval

__all__ = [
    "plot_precision_recall",
    "plot_retrieval_examples",
    "plot_attention_map",
    "plot_training_curves",
]

_CORRECT = "#2ca02c"
_WRONG = "#d62728"
# Figure sizes in inches; multiples of 1/4 so that size * dpi is exact.
_PR_SIZE = (5.0, 4.0)
_CELL_INCHES = 1.5
_ATTENTION_SIZE = (5.0, 4.0)
_CURVE_WIDTH = 6.5
_CURVE_ROW_HEIGHT = 2.25


def _new_figure(figsize: tuple[float, float], dpi: int) -> Figure:
  if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or dpi < 1:
    raise ValueError(f"dpi must be a positive int; got {dpi!r}")
  fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str | os.PathLike) -> str:
  path = os.fspath(path)
  folder = os.path.dirname(path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  fig.savefig(path, format="png", dpi=fig.dpi)
  return path


# ----------------------------------------------------------------------------
# Precision-recall
# ----------------------------------------------------------------------------
def plot_precision_recall(
    scores: np.ndarray | Mapping[str, np.ndarray],
    relevance: np.ndarray | Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "Precision-recall",
    num_levels: int = 101,
    dpi: int = 100,
) -> str:
  """Mean interpolated precision-recall curve(s) of retrieval directions.

  Args:
    scores: [N, M] similarities of one direction, or {name: [N_d, M_d]} for
      one curve per direction (e.g. {"a2v": ..., "v2a": ...}).
    relevance: bool [N, M], or a dict with the same names as `scores`.
    path: output PNG path.
    title: axes title.
    num_levels: recall levels in [0, 1] at which precision is interpolated.
    dpi: resolution; the PNG is 5 x 4 inches = (5*dpi) x (4*dpi) pixels.

  Returns:
    `path`. The legend gives each direction's MAP (non-interpolated).
  """
  if isinstance(scores, Mapping) != isinstance(relevance, Mapping):
    raise ValueError(
        "scores and relevance must both be arrays or both be dicts; got "
        f"{type(scores).__name__} and {type(relevance).__name__}"
    )
  if isinstance(scores, Mapping):
    if not scores:
      raise ValueError("scores is an empty dict; give at least one direction")
    if set(scores) != set(relevance):
      raise ValueError(
          f"scores and relevance name different directions: "
          f"{sorted(scores)} vs {sorted(relevance)}"
      )
    curves = {str(name): (scores[name], relevance[name]) for name in scores}
  else:
    curves = {"": (scores, relevance)}

  fig = _new_figure(_PR_SIZE, dpi)
  ax = fig.add_subplot()
  for name, (s, r) in curves.items():
    recall, precision = retrieval.interpolated_precision_recall(
        s, r, num_levels=num_levels
    )
    ap = retrieval.average_precision_per_query(s, r)
    mean_ap = float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else float("nan")
    label = f"{name} (MAP {mean_ap:.3f})" if name else f"MAP {mean_ap:.3f}"
    ax.plot(recall, precision, label=label)
  ax.set_xlim(0.0, 1.0)
  ax.set_ylim(0.0, 1.02)
  ax.set_xlabel("recall")
  ax.set_ylabel("interpolated precision")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(loc="upper right")
  return _save(fig, path)


# ----------------------------------------------------------------------------
# Retrieval examples
# ----------------------------------------------------------------------------
def _as_image(img: np.ndarray, name: str) -> tuple[np.ndarray, dict[str, Any]]:
  """Returns an imshow-ready image and its keyword arguments."""
  img = np.asarray(img)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim == 2:
    kwargs: dict[str, Any] = {"cmap": "gray"}
  elif img.ndim == 3 and img.shape[-1] in (3, 4):
    kwargs = {}
  else:
    raise ValueError(
        f"{name} must be an image [H, W] or [H, W, C] with C in (1, 3, 4); "
        f"got shape {img.shape}"
    )
  if not np.issubdtype(img.dtype, np.number):
    raise ValueError(f"{name} must be numeric; got dtype {img.dtype}")
  if np.issubdtype(img.dtype, np.floating):
    img = np.clip(np.nan_to_num(img), 0.0, 1.0)
    if img.ndim == 2:
      kwargs.update(vmin=0.0, vmax=1.0)
  elif img.ndim == 2:
    kwargs.update(vmin=0, vmax=255)
  return img, kwargs


def _query_list(queries: Any, query_kind: str) -> tuple[list[np.ndarray], str]:
  if isinstance(queries, np.ndarray) or not isinstance(queries, Sequence):
    arr = np.asarray(queries)
    if arr.ndim not in (3, 4):
      raise ValueError(
          "queries must be [Q, T, n_mels] spectrograms, [Q, H, W, C] images "
          f"or a list of per-query arrays; got shape {arr.shape}"
      )
    items = list(arr)
  else:
    items = [np.asarray(q) for q in queries]
  if not items:
    raise ValueError("queries is empty; give at least one query")
  if query_kind == "auto":
    query_kind = "spectrogram" if items[0].ndim == 2 else "image"
  for i, q in enumerate(items):
    if query_kind == "spectrogram" and q.ndim != 2:
      raise ValueError(
          f"queries[{i}] must be a log-mel spectrogram [T, n_mels]; got shape "
          f"{q.shape}"
      )
  return items, query_kind


def plot_retrieval_examples(
    queries: Any,
    retrieved_images: Any,
    correct_mask: Any,
    path: str | os.PathLike,
    title: str | None = None,
    query_kind: str = "auto",
    dpi: int = 100,
) -> str:
  """Grid of queries (rows) and their top-k retrieved images (columns).

  Args:
    queries: Q queries, either an array [Q, T, n_mels] of log-mel
      spectrograms (audio queries), [Q, H, W, C] images, or a list of
      per-query arrays ([T_q, n_mels] spectrograms may differ in length).
    retrieved_images: [Q, K, H, W] or [Q, K, H, W, C] (C in 1, 3, 4); float
      images are shown on [0, 1], integer ones on [0, 255].
    correct_mask: bool [Q, K]; True draws a green border, False a red one.
    path: output PNG path.
    title: optional figure title.
    query_kind: "auto" (2-D per query = spectrogram, 3-D = image),
      "spectrogram" or "image" (use "image" for grey [H, W] queries).
    dpi: resolution; every cell is 1.5 inches, so the PNG is
      (1.5 * (K + 1) * dpi) x (1.5 * Q * dpi) pixels (width x height).

  Returns:
    `path`.
  """
  if query_kind not in ("auto", "spectrogram", "image"):
    raise ValueError(
        "query_kind must be 'auto', 'spectrogram' or 'image'; got "
        f"{query_kind!r}"
    )
  items, query_kind = _query_list(queries, query_kind)
  retrieved = np.asarray(retrieved_images)
  if retrieved.ndim not in (4, 5) or retrieved.shape[0] != len(items):
    raise ValueError(
        f"retrieved_images must be [Q={len(items)}, K, H, W] or "
        f"[Q={len(items)}, K, H, W, C]; got shape {retrieved.shape}"
    )
  num_queries, top_k = retrieved.shape[:2]
  if top_k == 0:
    raise ValueError(
        f"retrieved_images has no retrieved items; got shape {retrieved.shape}"
    )
  correct = np.asarray(correct_mask)
  if correct.shape != (num_queries, top_k):
    raise ValueError(
        f"correct_mask has shape {correct.shape}, expected "
        f"({num_queries}, {top_k}) to match retrieved_images "
        f"{retrieved.shape}"
    )
  correct = correct.astype(bool)

  fig = _new_figure(
      (_CELL_INCHES * (top_k + 1), _CELL_INCHES * num_queries), dpi
  )
  axes = fig.subplots(num_queries, top_k + 1, squeeze=False)
  for row in range(num_queries):
    ax = axes[row, 0]
    if query_kind == "spectrogram":
      spec = items[row]
      if not np.issubdtype(spec.dtype, np.number):
        raise ValueError(
            f"queries[{row}] must be numeric; got dtype {spec.dtype}"
        )
      ax.imshow(
          spec.T,
          origin="lower",
          aspect="auto",
          cmap="magma",
          interpolation="nearest",
      )
    else:
      img, kwargs = _as_image(items[row], f"queries[{row}]")
      ax.imshow(img, interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if row == 0:
      ax.set_title("query", fontsize=8)
    for col in range(top_k):
      ax = axes[row, col + 1]
      img, kwargs = _as_image(
          retrieved[row, col], f"retrieved_images[{row}, {col}]"
      )
      ax.imshow(img, interpolation="nearest", **kwargs)
      ax.set_xticks([])
      ax.set_yticks([])
      color = _CORRECT if correct[row, col] else _WRONG
      for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(4)
      if row == 0:
        ax.set_title(f"top-{col + 1}", fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  return _save(fig, path)


# ----------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------
def plot_attention_map(
    image: Any,
    attention: Any,
    path: str | os.PathLike,
    title: str = "Attention over image patches",
    alpha: float = 0.5,
    dpi: int = 100,
) -> str:
  """Attention weights over image patches, overlaid on the image.

  Args:
    image: [H, W] or [H, W, C] (C in 1, 3, 4); float in [0, 1] or uint8.
    attention: [num_patches] (a square gh = gw = sqrt(num_patches) grid in
      row-major order) or [gh, gw]; each patch covers H/gh x W/gw pixels.
    path: output PNG path.
    title: axes title.
    alpha: opacity of the attention overlay.
    dpi: resolution; the PNG is 5 x 4 inches = (5*dpi) x (4*dpi) pixels.

  Returns:
    `path`.
  """
  img, kwargs = _as_image(image, "image")
  att = np.asarray(attention)
  if not np.issubdtype(att.dtype, np.number):
    raise ValueError(f"attention must be numeric; got dtype {att.dtype}")
  if att.ndim == 1:
    side = math.isqrt(att.shape[0])
    if side == 0 or side * side != att.shape[0]:
      raise ValueError(
          f"attention of shape {att.shape} is not a square patch grid; pass "
          "it as [gh, gw]"
      )
    att = att.reshape(side, side)
  elif att.ndim != 2 or 0 in att.shape:
    raise ValueError(
        f"attention must be [num_patches] or [gh, gw]; got shape {att.shape}"
    )
  if not np.all(np.isfinite(att)):
    raise ValueError("attention contains NaN or inf values")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")

  height, width = img.shape[:2]
  extent = (-0.5, width - 0.5, height - 0.5, -0.5)
  fig = _new_figure(_ATTENTION_SIZE, dpi)
  ax = fig.add_subplot()
  ax.imshow(img, extent=extent, interpolation="nearest", **kwargs)
  overlay = ax.imshow(
      att.astype(np.float64),
      extent=extent,
      alpha=alpha,
      cmap="jet",
      interpolation="nearest",
  )
  fig.colorbar(overlay, ax=ax, label="attention")
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title(title)
  return _save(fig, path)


# ----------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------
def _read_jsonl(jsonl_path: str) -> list[tuple[int, dict[str, Any]]]:
  if not os.path.isfile(jsonl_path):
    raise FileNotFoundError(f"training log {jsonl_path} does not exist")
  records = []
  with open(jsonl_path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(
            f"{jsonl_path}:{line_no} is not valid JSON ({e.msg})"
        ) from e
      if not isinstance(record, dict) or "step" not in record:
        raise ValueError(
            f"{jsonl_path}:{line_no} must be a JSON object with a 'step' key"
        )
      records.append((line_no, record))
  return records


def _scalar(value: Any, key: str, where: str) -> float:
  # MetricWriter writes non-finite values as the strings "nan" / "inf".
  if isinstance(value, bool) or not isinstance(value, (int, float, str)):
    raise ValueError(f"{where}: {key!r} is not a scalar ({value!r})")
  try:
    return float(value)
  except ValueError as e:
    raise ValueError(f"{where}: {key!r} is not a number ({value!r})") from e


def plot_training_curves(
    jsonl_path: str | os.PathLike,
    path: str | os.PathLike,
    keys: Sequence[str],
    title: str | None = None,
    dpi: int = 100,
) -> str:
  """Plots scalar series from the JSON-lines training log against step.

  Each line of the log is a JSON object with "step" and scalar values
  (non-finite values may be the strings "nan"/"inf", as `MetricWriter`
  writes them). A line without a key is skipped for that key (train and eval
  records can mix). If a step appears more than once (a resumed run repeats
  the steps after its last checkpoint), its last value is plotted.

  Args:
    jsonl_path: the log, e.g. <workdir>/log.jsonl.
    path: output PNG path.
    keys: names of the series, one subplot each (a single str is one key).
    title: optional figure title.
    dpi: resolution; the PNG is 6.5 inches wide and 2.25 inches tall per key:
      (6.5*dpi) x (2.25*len(keys)*dpi) pixels.

  Returns:
    `path`.
  """
  if isinstance(keys, str):
    keys = [keys]
  keys = list(keys)
  if not keys or not all(isinstance(k, str) and k for k in keys):
    raise ValueError(f"keys must be a non-empty list of names; got {keys!r}")
  if "step" in keys:
    raise ValueError("keys must not include 'step' (it is the x axis)")
  jsonl_path = os.fspath(jsonl_path)
  records = _read_jsonl(jsonl_path)

  series: dict[str, dict[int, float]] = {k: {} for k in keys}
  for line_no, record in records:
    where = f"{jsonl_path}:{line_no}"
    step = _scalar(record["step"], "step", where)
    for key in keys:
      if key in record:
        series[key][int(step)] = _scalar(record[key], key, where)
  missing = [k for k in keys if not series[k]]
  if missing:
    available = sorted({k for _, r in records for k in r} - {"step"})
    raise ValueError(
        f"{jsonl_path} has no values for {missing}; available keys: "
        f"{available}"
    )

  fig = _new_figure((_CURVE_WIDTH, _CURVE_ROW_HEIGHT * len(keys)), dpi)
  axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
  for ax, key in zip(axes, keys):
    steps = np.array(sorted(series[key]))
    values = np.array([series[key][s] for s in steps])
    ax.plot(steps, values, marker="." if steps.size < 50 else None)
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
  axes[-1].set_xlabel("step")
  if title:
    fig.suptitle(title)
  return _save(fig, path)
