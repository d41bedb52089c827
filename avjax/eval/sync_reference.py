"""A non-learned audio-visual offset reference: envelope cross-correlation.

What the data allow without training: from a video crop and an audio window
(the same arrays the model sees), one envelope per video frame for each
modality, and for every candidate offset the Pearson correlation of the two
envelopes over the frames where they overlap. The predicted offset is the
most correlated candidate; the best correlation is a synchronisability
score (an unsynchronisable window correlates with no candidate).

Cues (``cue``):
  * ``"onset"``: visual = ink that appears, Σ max(frame_f - frame_{f-1}, 0)
    over pixels (0 at the first frame); audio = rise of the log-RMS of the
    frame's samples, max(l_f - l_{f-1}, 0) with l_f = log(RMS + 1) of int16
    samples [f·P, (f+1)·P), P = sample_rate / fps. For sudden events: the
    flashes and spoken digits of AV-digits `sync`.
  * ``"pitch"``: visual = height of the ink's centre of mass (rows counted
    from the bottom; frames without ink get the crop's mean height); audio
    = log of the power-weighted mean frequency of the frame's spectrum. For
    AV-digits `sync_dense`, whose tone's pitch follows the digit's height.

Offset convention (``avjax.data.pipeline.sync``): offset ``o`` s means the
audio window starts ``o`` s later than the video crop, so audio frame k is
video frame k + o·fps; candidate offsets are rounded to whole frames.
"""

from __future__ import annotations

import numpy as np

CUES = ("onset", "pitch")


def _frames(video: np.ndarray) -> np.ndarray:
  """uint8 [N, L, H, W] or [N, L, H, W, C] → float64 [N, L, H·W·C]."""
  video = np.asarray(video)
  if video.ndim not in (4, 5):
    raise ValueError(
        f"video must be [N, L, H, W] or [N, L, H, W, C], got {video.shape}"
    )
  n, length = video.shape[:2]
  return video.reshape((n, length, -1)).astype(np.float64)


def _audio_frames(audio: np.ndarray, length: int, per_frame: int):
  """int16 [N, M] → float64 [N, length, per_frame] (M >= length·per_frame)."""
  audio = np.asarray(audio)
  if audio.ndim != 2 or audio.shape[1] < length * per_frame:
    raise ValueError(
        f"audio must be [N, >= {length * per_frame}] samples for {length} "
        f"frames of {per_frame}, got {audio.shape}"
    )
  return (
      audio[:, : length * per_frame]
      .reshape((audio.shape[0], length, per_frame))
      .astype(np.float64)
  )


def visual_envelope(video: np.ndarray, cue: str) -> np.ndarray:
  """float64 [N, L]: the visual envelope of each frame (module docstring)."""
  x = _frames(video)
  if cue == "onset":
    rise = np.maximum(np.diff(x, axis=1), 0.0).sum(axis=-1)
    return np.concatenate([np.zeros((x.shape[0], 1)), rise], axis=1)
  if cue == "pitch":
    video = np.asarray(video, np.float64)
    if video.ndim == 5:
      video = video.mean(axis=-1)
    rows = np.arange(video.shape[2], dtype=np.float64)
    ink = video.sum(axis=3)  # [N, L, H]
    total = ink.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
      row = (ink * rows).sum(axis=2) / total
    height = (video.shape[2] - 1) - row
    mean = np.nanmean(np.where(total > 0, height, np.nan), axis=1)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return np.where(total > 0, height, mean[:, None])
  raise ValueError(f"unknown reference cue {cue!r}; one of {CUES}")


def audio_envelope(
    audio: np.ndarray, length: int, fps: float, sample_rate: int, cue: str
) -> np.ndarray:
  """float64 [N, length]: the audio envelope per video frame of the window.

  Args:
    audio: int16 [N, M] windows (M >= length · sample_rate / fps).
    length: video frames of the crop.
    fps, sample_rate: rates; sample_rate / fps must be a whole number.
    cue: "onset" or "pitch".
  """
  per_frame = sample_rate / fps
  if not float(per_frame).is_integer():
    raise ValueError(
        f"sample_rate / fps = {sample_rate} / {fps} is not a whole number "
        "of samples per frame"
    )
  x = _audio_frames(audio, length, int(per_frame))
  if cue == "onset":
    level = np.log(np.sqrt(np.mean(x**2, axis=-1)) + 1.0)
    rise = np.maximum(np.diff(level, axis=1), 0.0)
    return np.concatenate([np.zeros((x.shape[0], 1)), rise], axis=1)
  if cue == "pitch":
    window = np.hanning(x.shape[-1])
    power = np.abs(np.fft.rfft(x * window, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    total = power.sum(axis=-1)
    centroid = (power * freqs).sum(axis=-1) / np.maximum(total, 1e-12)
    return np.log(np.maximum(centroid, 1.0))
  raise ValueError(f"unknown reference cue {cue!r}; one of {CUES}")


def correlate(
    visual: np.ndarray, audio: np.ndarray, shifts: np.ndarray
) -> np.ndarray:
  """Pearson correlation [N, C] of visual[f] with audio[f - shift_c].

  Over the overlap f in [max(0, s), min(L, L + s)); 0 where an envelope is
  constant there (or the overlap is under 2 frames). Feature sequences
  [N, L, D] are correlated as one signal: each dimension centred over the
  overlap, products and squares summed over f and the D dimensions.

  Args:
    visual, audio: float [N, L] envelopes (or [N, L, D] features) on the
      video's frame grid.
    shifts: int [C] candidate shifts in frames (audio frame k ↔ video frame
      k + shift).
  """
  visual, audio = np.asarray(visual), np.asarray(audio)
  if visual.shape != audio.shape or visual.ndim not in (2, 3):
    raise ValueError(
        "envelopes must both be [N, L] (or features [N, L, D]), got "
        f"{visual.shape} and {audio.shape}"
    )
  if visual.ndim == 2:
    visual, audio = visual[..., None], audio[..., None]
  length = visual.shape[1]
  out = np.zeros((visual.shape[0], len(shifts)))
  for c, shift in enumerate(np.asarray(shifts, int)):
    lo, hi = max(0, shift), min(length, length + shift)
    if hi - lo < 2:
      continue
    v = visual[:, lo:hi] - visual[:, lo:hi].mean(axis=1, keepdims=True)
    a = audio[:, lo - shift : hi - shift]
    a = a - a.mean(axis=1, keepdims=True)
    norm = np.sqrt((v**2).sum(axis=(1, 2)) * (a**2).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
      out[:, c] = np.where(norm > 1e-12, (v * a).sum(axis=(1, 2)) / norm, 0.0)
  return out


def offset_scores(
    video: np.ndarray,
    audio: np.ndarray,
    fps: float,
    sample_rate: int,
    offsets: np.ndarray,
    cue: str = "onset",
) -> np.ndarray:
  """Reference score [N, C] of each candidate offset (seconds) per example.

  Args:
    video: uint8 [N, L, H, W(, C)] crops.
    audio: int16 [N, M] audio windows (M >= L · sample_rate / fps), the
      window of example n starting ``o_n`` s after its crop (unknown o_n).
    fps, sample_rate: the rates of both.
    offsets: float [C] candidate offsets in seconds (the class grid).
    cue: "onset" or "pitch" (module docstring).

  Returns:
    float64 [N, C] correlations; argmax over C is the reference's offset
    class, the max its synchronisability score.
  """
  if cue not in CUES:
    raise ValueError(f"unknown reference cue {cue!r}; one of {CUES}")
  v = visual_envelope(video, cue)
  a = audio_envelope(audio, v.shape[1], fps, sample_rate, cue)
  shifts = np.round(np.asarray(offsets, np.float64) * fps).astype(int)
  return correlate(v, a, shifts)
