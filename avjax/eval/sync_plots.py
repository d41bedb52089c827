"""PNG plots of synchronisation: offset confusion matrix, evidence timeline.

Like ``avjax.eval.plots``: Agg figures, never pyplot; each function saves
one PNG and returns its path.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
  fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str | os.PathLike) -> str:
  path = os.fspath(path)
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, format="png", dpi=fig.dpi)
  return path


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: list[str],
    path: str | os.PathLike,
    title: str = "",
    dpi: int = 100,
) -> str:
  """Row-normalised confusion matrix [true, predicted] as a heat map.

  The PNG is 6.5 × 6 inches (650 × 600 px at dpi 100).
  """
  matrix = np.asarray(matrix, np.float64)
  if (
      matrix.ndim != 2
      or matrix.shape[0] != matrix.shape[1]
      or (matrix.shape[0] != len(class_names))
  ):
    raise ValueError(
        f"matrix must be [C, C] with C = {len(class_names)} "
        f"names, got {matrix.shape}"
    )
  rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  fig = _figure((6.5, 6.0), dpi)
  ax = fig.add_subplot()
  im = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
  ticks = np.arange(len(class_names))
  ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
  ax.set_yticks(ticks, class_names, fontsize=7)
  ax.set_xlabel("predicted offset (s)")
  ax.set_ylabel("true offset (s)")
  fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class")
  if title:
    ax.set_title(title)
  return _save(fig, path)


def plot_evidence_timeline(
    frames: np.ndarray,
    log_mel: np.ndarray,
    video_scores: np.ndarray,
    audio_scores: np.ndarray,
    spans: np.ndarray,
    fps: float,
    mel_rate: float,
    video_events: np.ndarray,
    audio_events: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    max_thumbnails: int = 16,
    dpi: int = 100,
) -> str:
  """Frames, log-mel and per-segment attribution on one time axis.

  Rows: a strip of frame thumbnails placed at their times; the video
  segments' scores; the audio log-mel; the audio segments' scores. True
  event onsets are dashed vertical lines (video events in the video rows,
  audio events in the audio rows). Times are seconds from the start of the
  video crop (video) and of the audio window (audio). 10 × 6 inches.

  Args:
    frames: [T, H, W] or [T, H, W, C] float in [0, 1] or uint8.
    log_mel: [F, M].
    video_scores, audio_scores: [S] attribution per segment.
    spans: [S, 2] segment (start, end) seconds.
    fps: frames per second; mel_rate: log-mel frames per second.
    video_events, audio_events: [E] onsets in seconds (NaN = none).
    path: output PNG.
  """
  frames = np.asarray(frames)
  if frames.ndim == 4:
    frames = frames.mean(axis=-1) if frames.shape[-1] == 3 else frames[..., 0]
  duration = len(frames) / fps
  fig = _figure((10.0, 6.0), dpi)
  axes = fig.subplots(
      4, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1.5, 1]}
  )
  step = max(1, len(frames) // max_thumbnails)
  shown = np.arange(0, len(frames), step)
  strip = np.concatenate([frames[i] for i in shown], axis=1)
  axes[0].imshow(
      strip,
      cmap="gray",
      aspect="auto",
      extent=(0, len(shown) * step / fps, 0, 1),
  )
  axes[0].set_yticks([])
  axes[0].set_ylabel("frames")
  centers = spans.mean(axis=1)
  width = (spans[0, 1] - spans[0, 0]) * 0.45
  for ax, scores, colour, label in (
      (axes[1], video_scores, "tab:blue", "video\nevidence"),
      (axes[3], audio_scores, "tab:orange", "audio\nevidence"),
  ):
    ax.bar(centers, scores, width=width, color=colour, alpha=0.8)
    top = int(np.argmax(scores))
    ax.axvspan(spans[top, 0], spans[top, 1], color=colour, alpha=0.15)
    ax.set_ylabel(label)
  mel = np.asarray(log_mel)
  axes[2].imshow(
      mel.T,
      origin="lower",
      aspect="auto",
      cmap="magma",
      extent=(0, len(mel) / mel_rate, 0, mel.shape[1]),
  )
  axes[2].set_ylabel("log-mel bin")
  for ax, events in (
      (axes[0], video_events),
      (axes[1], video_events),
      (axes[2], audio_events),
      (axes[3], audio_events),
  ):
    for t in np.asarray(events, np.float64):
      if np.isfinite(t) and 0 <= t <= duration:
        ax.axvline(
            t,
            color="white" if ax is axes[2] else "k",
            linestyle="--",
            linewidth=1,
        )
  axes[-1].set_xlabel(
      "seconds from the start of the crop (video) / of the "
      "audio window (audio); dashed: true event onsets"
  )
  axes[-1].set_xlim(0, duration)
  if title:
    fig.suptitle(title)
  return _save(fig, path)
