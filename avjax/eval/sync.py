"""Synchronisation metrics: offset accuracy, synchronisability, evidence.

All inputs are numpy arrays (or anything ``np.asarray`` accepts); results
are Python floats or numpy arrays.

* ``offset_accuracy``: top-1 offset-class accuracy, or within ±``tolerance``
  classes (the paper's "±1 class" = ±0.2 s).
* ``roc_auc``: area under the ROC curve of scores for binary labels, as the
  Mann-Whitney statistic (ties count ½), in float64.
* ``confusion_matrix``: counts [true, predicted].
* ``segment_spans`` / ``segments_with_events``: which segment of a crop
  holds an event onset (time in [start, start + length) seconds).
* ``evidence_hits``: whether the segment with the highest attribution score
  (over both modalities) holds an event of its modality, and the rate a
  uniformly random segment would have.
"""

from __future__ import annotations

import numpy as np


def offset_accuracy(
    logits: np.ndarray, labels: np.ndarray, tolerance: int = 0
) -> float:
  """Fraction of rows whose argmax is within ``tolerance`` classes of label.

  Args:
    logits: [N, C] scores.
    labels: int [N] true classes.
    tolerance: allowed |predicted - true| in classes (0 = exact top-1).
  """
  logits, labels = np.asarray(logits), np.asarray(labels)
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(
        f"logits [N, C] and labels [N] expected, got "
        f"{logits.shape} and {labels.shape}"
    )
  if tolerance < 0:
    raise ValueError(f"tolerance must be >= 0, got {tolerance}")
  pred = np.argmax(logits, axis=1)
  return float(np.mean(np.abs(pred - labels) <= tolerance))


def chance_tol_accuracy(num_classes: int, tolerance: int) -> float:
  """Accuracy of a uniform random guess within ±tolerance, uniform labels."""
  c = np.arange(num_classes)
  hits = np.abs(c[:, None] - c[None, :]) <= tolerance
  return float(hits.mean())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC of ``scores`` for binary ``labels`` (1 = positive).

  P(score of a random positive > that of a random negative), ties ½; NaN
  when one class is absent.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels).astype(bool)
  if scores.shape != labels.shape or scores.ndim != 1:
    raise ValueError(
        f"scores and labels must be [N], got {scores.shape} and "
        f"{labels.shape}"
    )
  pos, neg = int(labels.sum()), int((~labels).sum())
  if pos == 0 or neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="stable")
  ranks = np.empty(len(scores), np.float64)
  sorted_scores = scores[order]
  # Average ranks over ties (1-based).
  _, first, counts = np.unique(
      sorted_scores, return_index=True, return_counts=True
  )
  avg = first + (counts + 1) / 2.0
  ranks[order] = np.repeat(avg, counts)
  return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> np.ndarray:
  """int64 [num_classes, num_classes] counts, rows = true class."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (labels, predictions), 1)
  return out


def segment_spans(
    num_segments: int, length: float, stride: float
) -> np.ndarray:
  """float64 [S, 2] (start, end) seconds of each segment of a crop."""
  starts = np.arange(num_segments) * stride
  return np.stack([starts, starts + length], axis=1)


def segments_with_events(
    event_times: np.ndarray, spans: np.ndarray
) -> np.ndarray:
  """bool [N, S]: segment s of clip n holds an event onset.

  Args:
    event_times: float [N, E] onsets in seconds from the crop start (NaN =
      no event).
    spans: [S, 2] segment (start, end) seconds.
  """
  t = np.asarray(event_times, np.float64)[:, None, :]  # [N, 1, E]
  start, end = spans[None, :, 0, None], spans[None, :, 1, None]
  with np.errstate(invalid="ignore"):
    inside = (t >= start) & (t < end)
  return inside.any(axis=-1)


def evidence_hits(
    video_scores: np.ndarray,
    audio_scores: np.ndarray,
    video_events: np.ndarray,
    audio_events: np.ndarray,
    spans: np.ndarray,
) -> dict[str, float]:
  """Evidence hit rate of attribution scores against true event times.

  For each clip, the segments of both modalities are ranked by their score;
  a hit is when the top one holds an event onset of its own modality.
  Clips with no event in any segment are left out.

  Args:
    video_scores, audio_scores: [N, S] attribution per segment.
    video_events, audio_events: [N, E] onsets (seconds from the start of the
      video crop / the audio window; NaN = none).
    spans: [S, 2] segment (start, end) seconds (same for both modalities).

  Returns:
    evidence_hit_rate, evidence_random_rate (mean over the clips of the
    fraction of segments holding an event), evidence_hit_rate_video /
    _audio (the top segment of one modality only) and evidence_clips (the
    number of clips counted); rates are NaN when no clip has an event.
  """
  v_ev = segments_with_events(video_events, spans)
  a_ev = segments_with_events(audio_events, spans)
  scores = np.concatenate([video_scores, audio_scores], axis=1)
  events = np.concatenate([v_ev, a_ev], axis=1)
  keep = events.any(axis=1)
  nan = float("nan")
  if not keep.any():
    return {
        "evidence_hit_rate": nan,
        "evidence_random_rate": nan,
        "evidence_hit_rate_video": nan,
        "evidence_hit_rate_audio": nan,
        "evidence_clips": 0.0,
    }
  rows = np.flatnonzero(keep)
  top = np.argmax(scores[rows], axis=1)
  hit = events[rows, top]
  top_v = np.argmax(np.asarray(video_scores)[rows], axis=1)
  top_a = np.argmax(np.asarray(audio_scores)[rows], axis=1)
  return {
      "evidence_hit_rate": float(hit.mean()),
      "evidence_random_rate": float(events[rows].mean()),
      "evidence_hit_rate_video": float(v_ev[rows, top_v].mean()),
      "evidence_hit_rate_audio": float(a_ev[rows, top_a].mean()),
      "evidence_clips": float(len(rows)),
  }
