"""Synchformer on a user's video: audio-visual offset per window and overall.

The video is decoded at the model's frame rate and frame size and its audio
at the model's sample rate (``avjax.data.io.video.read_video``: FFmpeg's area
resize and swresample), frames turned grey when the model was trained on
grey video, and the audio stored as int16 as in the datasets. Windows of
``crop_frames`` frames (the model's crop, 2.56 s by default) start every
``stride`` frames (half a crop by default, and one more window ends at the
last frame); each is paired with the audio of the same time span and run
through the method's ``predict_fns()["sync_offsets"]`` (the evaluation's
forward pass: offset logits, synchronisability logits, per-segment
evidence).

Offset convention (``avjax.data.pipeline.sync``): an offset of ``o`` s means
the audio is ``o`` s *ahead* of the picture (a sound is heard ``o`` s
before its image is seen); 0 is in sync. The overall prediction averages
the windows' class probabilities and takes the most probable class.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from avjax.data.io import audio as audio_io
from avjax.data.io import video as video_lib
from avjax.eval import sharded
from avjax.inference import readers
from avjax.inference import records as records_lib
from avjax.methods import base

# The prediction a method offers offsets with (``Method.predict_fns``).
SYNC_OFFSETS = "sync_offsets"

PyTree = Any


@dataclasses.dataclass
class WindowPrediction:
  """One window's prediction.

  Attributes:
    start_seconds: window start in the video (s).
    offset_seconds: most probable offset (s).
    probabilities: float [num_offsets] offset class probabilities.
    confidence: probability of the chosen class.
    sync_probability: probability that the window is synchronisable.
  """

  start_seconds: float
  offset_seconds: float
  probabilities: np.ndarray
  confidence: float
  sync_probability: float


@dataclasses.dataclass
class OffsetPrediction:
  """A video's predicted audio-visual offset.

  Attributes:
    name: the video file (or "<array>").
    offset_seconds: overall offset (s; > 0: audio ahead of the picture).
    offset_class: its class index.
    offsets: float [num_offsets] seconds of each class.
    probabilities: float [num_offsets] mean class probabilities.
    confidence: overall probability of the chosen class.
    sync_probability: mean synchronisability probability.
    windows: per-window predictions, in time order.
    plot: the evidence-attribution PNG, when one was asked for.
  """

  name: str
  offset_seconds: float
  offset_class: int
  offsets: np.ndarray
  probabilities: np.ndarray
  confidence: float
  sync_probability: float
  windows: list[WindowPrediction]
  plot: str | None = None

  def to_json(self) -> dict[str, Any]:
    """A JSON-serialisable dict of the prediction."""
    return {
        "video": self.name,
        "offset_seconds": self.offset_seconds,
        "offset_class": self.offset_class,
        "confidence": self.confidence,
        "sync_probability": self.sync_probability,
        "offsets": [float(o) for o in self.offsets],
        "probabilities": [float(p) for p in self.probabilities],
        "windows": [
            {
                "start_seconds": w.start_seconds,
                "offset_seconds": w.offset_seconds,
                "confidence": w.confidence,
                "sync_probability": w.sync_probability,
                "probabilities": [float(p) for p in w.probabilities],
            }
            for w in self.windows
        ],
        "plot": self.plot,
    }


def _softmax(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def _conform(
    video: video_lib.Video, sync_spec: Any, spec: records_lib.RecordSpec
) -> tuple[np.ndarray, np.ndarray]:
  """uint8 [T, H, W, C] frames and int16 [N] audio at the model's rates."""
  frames, audio = np.asarray(video.frames), video.audio
  if audio is None or not np.size(audio):
    raise ValueError("video has no audio")
  audio = records_lib.to_int16(np.asarray(audio))
  if video.sample_rate != sync_spec.sample_rate:
    audio = audio_io.resample(
        audio, int(video.sample_rate), sync_spec.sample_rate
    )
  if not np.isclose(video.fps, sync_spec.fps):
    times = np.arange(len(frames)) / video.fps
    index = video_lib._resample_times(  # pylint: disable=protected-access
        times, len(frames) / video.fps, sync_spec.fps
    )
    frames = frames[index]
  if frames.ndim == 3:
    frames = frames[..., None]
  size = spec.video_size
  if frames.shape[1:3] != tuple(size) or (
      frames.shape[-1] != spec.video_channels
  ):
    rgb = frames if frames.shape[-1] == 3 else frames[..., 0]
    frames = np.stack(
        [
            records_lib.image_record(f, size, spec.video_channels, "video")
            for f in rgb
        ]
    )
    if frames.ndim == 3:
      frames = frames[..., None]
  return frames, audio


def window_starts(num_frames: int, crop: int, stride: int) -> list[int]:
  """Start frames of the windows: every ``stride``, plus one at the end."""
  if num_frames < crop:
    return []
  starts = list(range(0, num_frames - crop + 1, stride))
  if starts[-1] != num_frames - crop:
    starts.append(num_frames - crop)
  return starts


def predict_offset(
    method: Any,
    params: PyTree,
    spec: records_lib.RecordSpec,
    video: str | os.PathLike | video_lib.Video,
    stride_frames: int | None = None,
    plot_path: str | None = None,
    batch_size: int = 8,
) -> OffsetPrediction:
  """Offset of one video (see the module docstring).

  Args:
    method: a ``Synchformer`` method.
    params: its parameters.
    spec: the dataset's record shapes (frame size and channels).
    video: a video file, or a decoded ``avjax.data.io.video.Video`` (frames
      uint8 [T, H, W(, C)], float audio in [-1, 1]) at any rates.
    stride_frames: window stride in model frames (default half a crop).
    plot_path: write the evidence-attribution plot of the most confident
      window there (PNG).
    batch_size: windows per forward pass.

  Raises:
    UnreadableFileError: naming the file when it cannot be decoded, has no
      audio track, or is shorter than one window.
  """
  s = method.spec
  name = "<array>"
  if isinstance(video, (str, os.PathLike)):
    name = os.fspath(video)
    video = readers.read_video(
        name,
        fps=s.fps,
        frame_size=spec.video_size,
        sample_rate=s.sample_rate,
        need_audio=True,
    )
  try:
    frames, audio = _conform(video, s, spec)
  except ValueError as e:
    raise readers.UnreadableFileError(name, str(e)) from e
  crop = s.crop_frames
  stride = int(stride_frames or max(1, crop // 2))
  starts = [
      st
      for st in window_starts(len(frames), crop, stride)
      if int(round(st / s.fps * s.sample_rate)) + s.crop_samples <= len(audio)
  ]
  if not starts:
    raise readers.UnreadableFileError(
        name,
        f"video too short for the model's window of {s.crop_seconds:g} s "
        f"({crop} frames at {s.fps:g} fps with audio): it has "
        f"{len(frames) / s.fps:.2f} s of video and "
        f"{len(audio) / s.sample_rate:.2f} s of audio",
    )
  firsts = [int(round(st / s.fps * s.sample_rate)) for st in starts]
  windows = np.stack([audio[f : f + s.crop_samples] for f in firsts])
  clips = np.stack([frames[st : st + crop] for st in starts])
  outs: dict[str, list[np.ndarray]] = {}
  for i in range(0, len(starts), batch_size):
    n = len(clips[i : i + batch_size])
    pad = lambda x: sharded.pad_rows(x, batch_size)
    batch = {
        "video": pad(clips[i : i + batch_size]),
        "audio_shifted": pad(windows[i : i + batch_size]),
        "audio_check": pad(windows[i : i + batch_size]),
    }
    predict = base.jitted_predictions(method, (SYNC_OFFSETS,))
    for k, v in predict(params, batch)[SYNC_OFFSETS].items():
      outs.setdefault(k, []).append(np.asarray(v)[:n])
  out = {k: np.concatenate(v) for k, v in outs.items()}
  probs = _softmax(out["offset"])
  sync = _softmax(out["sync"])[:, 1]
  offsets = s.offsets()
  per_window = [
      WindowPrediction(
          start_seconds=float(st / s.fps),
          offset_seconds=float(offsets[int(np.argmax(p))]),
          probabilities=p,
          confidence=float(np.max(p)),
          sync_probability=float(q),
      )
      for st, p, q in zip(starts, probs, sync)
  ]
  mean = probs.mean(axis=0)
  best = int(np.argmax(mean))
  plot = None
  if plot_path:
    from avjax.eval import sync_plots  # pylint: disable=import-outside-toplevel

    w = int(np.argmax(probs.max(axis=1)))
    none = np.full((1,), np.nan, np.float32)
    plot = sync_plots.plot_evidence_timeline(
        clips[w],
        out["mel"][w],
        out["score_video"][w],
        out["score_audio"][w],
        method.segment_spans(),
        s.fps,
        s.sample_rate / s.mel.hop_length,
        none,
        none,
        plot_path,
        title=(
            f"{os.path.basename(name)} at {starts[w] / s.fps:.2f} s: offset "
            f"{offsets[int(np.argmax(probs[w]))]:+.1f} s "
            f"(p = {probs[w].max():.2f})"
        ),
    )
  return OffsetPrediction(
      name=name,
      offset_seconds=float(offsets[best]),
      offset_class=best,
      offsets=offsets,
      probabilities=mean,
      confidence=float(mean[best]),
      sync_probability=float(sync.mean()),
      windows=per_window,
      plot=plot,
  )
