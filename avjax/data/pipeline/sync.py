"""grain pipelines for audio-visual synchronisation (Synchformer).

A sync record (AV-digits `sync` / `sync_dense`, `vggsound_sparse`, `lrs3`)
holds ``video`` uint8 [T, H, W] or [T, H, W, 3] at ``fps``, ``audio`` int16
[N] at ``sample_rate`` and ``audio_lead``: the number of audio samples before
video frame 0 (so audio sample n is at video time (n - lead) / sample_rate).

Offsets (Synchformer): ``num_offsets`` classes evenly spaced over
[-max_offset, +max_offset] seconds (21 classes, 0.2 s apart, by default).
Offset o means the audio window is taken o seconds *later* than the video
crop: a crop starting at video time s pairs with audio [s + o, s + o + L).
So with o > 0 a sound is heard o seconds before its image is seen, and the
model must say by how much.

Per training example (``TrainCrops``, a grain ``RandomMap`` run when the
example is made, seeded by grain per element, so a resumed iterator repeats
exactly the same crops):
  * a crop start frame s, uniform over the starts for which every window
    below fits inside the recording — the same range for every offset, so
    the crop position tells nothing about the offset;
  * an offset class c, uniform, and the offset o = grid[c] + jitter,
    jitter ~ U(-jitter, +jitter) seconds (±0.05 s in the official code);
  * three int16 audio windows of L seconds: ``synced``
    (o = 0, stage 1), ``shifted`` (o, stage 2) and ``sync_check`` (stage 3:
    with probability ½ the shifted window, label 1 "synchronisable",
    otherwise the audio shifted by ± the whole crop length, label 0). The
    unsynchronisable shift is jittered too, as in the official code, by
    U(0, jitter) towards the crop (the AV-digits margins are exactly one
    crop long): were only the synchronisable windows jittered, their sound
    onsets alone would fall off the frame grid, a cue that tells the labels
    apart in training and not in evaluation (which has no jitter).
Evaluation (``eval_examples``) replaces every random draw by the record's
stored ``eval_offsets`` / ``eval_starts`` (no jitter): draw r of
record i is unsynchronisable in stage 3 when i + r is odd, shifted by +L
when i // 2 is even, else -L.

Batches stay small integers (uint8 video, int16 audio); noise, scaling and
the log-mel of the one window a stage reads are computed on device in the
jitted step (``avjax.models.sync.log_mel``): computing three log-mels per
example in numpy took longer than the training step on 2 cores.

Decision: the windows fit in real signal or the clip is rejected (a
``ClipTooShortError`` naming the clip); nothing is zero-padded, since
padding would mark the shifted windows and leak the offset.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from avjax.data.pipeline import features as features_lib

Batch = dict[str, np.ndarray]


class ClipTooShortError(ValueError):
  """A clip cannot hold the crop with every offset shift in real signal."""


@dataclasses.dataclass(frozen=True)
class SyncSpec:
  """Timing of crops, offsets and features (seconds, Hz, frames).

  Attributes:
    fps: video frame rate of the records.
    sample_rate: audio rate of the records (Hz).
    crop_frames: frames per crop (L = crop_frames / fps seconds).
    num_offsets: offset classes (odd, so class num_offsets // 2 is 0 s).
    max_offset: seconds of the largest offset class.
    jitter: training offset jitter, ± seconds.
    unsync_shift: stage-3 negatives are shifted by ± crop length.
    mel: log-mel parameters (computed on device, ``avjax.models.sync``).
  """

  fps: float = 25.0
  sample_rate: int = 16000
  crop_frames: int = 120
  num_offsets: int = 21
  max_offset: float = 2.0
  jitter: float = 0.05
  mel: features_lib.MelSpec = features_lib.MelSpec(n_mels=40)

  def __post_init__(self):
    if self.num_offsets < 1 or self.num_offsets % 2 == 0:
      raise ValueError(
          f"num_offsets must be odd and >= 1, got " f"{self.num_offsets}"
      )
    if self.crop_frames < 1 or self.fps <= 0 or self.sample_rate <= 0:
      raise ValueError(
          f"bad sync timing: crop_frames={self.crop_frames}, "
          f"fps={self.fps}, sample_rate={self.sample_rate}"
      )
    if self.mel.sample_rate != self.sample_rate:
      raise ValueError(
          f"mel.sample_rate {self.mel.sample_rate} != "
          f"sample_rate {self.sample_rate}"
      )

  @property
  def crop_seconds(self) -> float:
    return self.crop_frames / self.fps

  @property
  def crop_samples(self) -> int:
    return int(round(self.crop_seconds * self.sample_rate))

  @property
  def mel_frames(self) -> int:
    """Log-mel frames kept per window: crop_samples // hop."""
    return self.crop_samples // self.mel.hop_length

  def offsets(self) -> np.ndarray:
    """float64 [num_offsets] seconds of each class, ascending."""
    if self.num_offsets == 1:
      return np.zeros((1,))
    return np.linspace(-self.max_offset, self.max_offset, self.num_offsets)

  @functools.cached_property
  def _offset_grid(self) -> tuple[float, ...]:
    return tuple(float(x) for x in self.offsets())

  def offset_seconds(self, offset_class: int) -> float:
    """Seconds of class ``offset_class`` (``offsets()[offset_class]``)."""
    return self._offset_grid[offset_class]

  @property
  def max_shift(self) -> float:
    """Largest |audio shift| any window needs (seconds)."""
    return max(self.max_offset + self.jitter, self.crop_seconds)


def _fitting_starts(
    spec: SyncSpec,
    num_frames: int,
    num_samples: int,
    lead: int,
    min_shift: float,
    max_shift: float,
) -> tuple[int, int]:
  """Crop start frames [lo, hi] whose audio windows, shifted by every
  shift in [min_shift, max_shift] seconds, lie in real signal (lo > hi when
  none does)."""
  lead_s = lead / spec.sample_rate
  audio_end_s = (num_samples - lead) / spec.sample_rate
  tol = 1e-9
  lo = max(0, math.ceil((-min_shift - lead_s) * spec.fps - tol))
  hi = min(
      num_frames - spec.crop_frames,
      math.floor(
          (audio_end_s - max_shift - spec.crop_seconds) * spec.fps + tol
      ),
  )
  return lo, hi


def _fits(
    spec: SyncSpec,
    num_frames: int,
    num_samples: int,
    lead: int,
    shifts: Sequence[float],
) -> bool:
  """Whether some crop start holds the audio windows of all ``shifts``."""
  lo, hi = _fitting_starts(
      spec, num_frames, num_samples, lead, min(0.0, *shifts), max(0.0, *shifts)
  )
  return lo <= hi


def fit_unsync_shift(
    spec: SyncSpec,
    num_frames: int,
    num_samples: int,
    lead: int,
    shift: float,
    sign: int,
    clip: str,
) -> tuple[int, float]:
  """(sign, seconds) of an unsynchronisable shift that fits with ``shift``.

  The whole crop length on the side ``sign`` if it fits, else on the other
  side, else as far as the clip allows on either side (whole frames),
  provided that lies beyond every grid offset plus jitter; otherwise a
  ClipTooShortError naming the clip.
  """
  for sg in (sign, -sign):
    if _fits(
        spec, num_frames, num_samples, lead, (shift, sg * spec.crop_seconds)
    ):
      return sg, spec.crop_seconds
  lo, hi = _fitting_starts(
      spec, num_frames, num_samples, lead, min(0.0, shift), max(0.0, shift)
  )
  lead_s = lead / spec.sample_rate
  audio_end_s = (num_samples - lead) / spec.sample_rate
  room = {
      1: audio_end_s - spec.crop_seconds - lo / spec.fps,
      -1: hi / spec.fps + lead_s,
  }
  best = max((sign, -sign), key=lambda sg: room[sg])
  seconds = math.floor(room[best] * spec.fps) / spec.fps
  if lo > hi or seconds <= spec.max_offset + spec.jitter:
    raise ClipTooShortError(
        f"clip {clip}: {num_frames / spec.fps:.2f} s of video and "
        f"{num_samples / spec.sample_rate:.2f} s of audio leave no room for "
        "an unsynchronisable shift beyond "
        f"±{spec.max_offset + spec.jitter:.2f} s with a "
        f"{spec.crop_seconds:.2f} s crop"
    )
  return best, seconds


def start_range(
    spec: SyncSpec,
    num_frames: int,
    num_samples: int,
    lead: int,
    clip: str,
    shifts: Sequence[float] | None = None,
) -> tuple[int, int]:
  """Inclusive range of crop start frames whose every window fits.

  Args:
    shifts: the audio shifts (seconds) the example needs; by default every
      shift any example may need (±``max_shift``), so the crop position is
      drawn independently of the offset.

  Raises:
    ClipTooShortError: naming ``clip`` and its lengths, when none fits.
  """
  if shifts is None:
    shifts = (-spec.max_shift, spec.max_shift)
  lo, hi = _fitting_starts(
      spec, num_frames, num_samples, lead, min(0.0, *shifts), max(0.0, *shifts)
  )
  if lo > hi:
    raise ClipTooShortError(
        f"clip {clip}: {num_frames} frames ({num_frames / spec.fps:.2f} s) "
        f"and {num_samples} audio samples ({num_samples / spec.sample_rate:.2f}"
        f" s, {lead / spec.sample_rate:.2f} s before the first frame) "
        "cannot hold a "
        f"{spec.crop_seconds:.2f} s crop with audio shifts from "
        f"{min(0.0, *shifts):+.2f} to {max(0.0, *shifts):+.2f} s; it needs "
        f"a video of at least {spec.crop_seconds:.2f} s and audio reaching "
        "that far beyond the crop"
    )
  return lo, hi


def audio_window(
    spec: SyncSpec, audio: np.ndarray, lead: int, start: int, shift: float
) -> np.ndarray:
  """[crop_samples] audio of video time [start/fps + shift, +L) (a view)."""
  first = lead + int(round((start / spec.fps + shift) * spec.sample_rate))
  if first < 0 or first + spec.crop_samples > audio.shape[0]:
    raise ClipTooShortError(
        f"audio window [{first}, "
        f"{first + spec.crop_samples}) outside the "
        f"{audio.shape[0]} samples"
    )
  return audio[first : first + spec.crop_samples]


def _clip_name(record: dict[str, Any]) -> str:
  for key in ("clip_name", "clip_id"):
    if key in record:
      value = record[key]
      return value.decode() if isinstance(value, bytes) else str(value)
  return "<unnamed>"


def _event_times(
    record: dict[str, Any], spec: SyncSpec, start: int, shift: float
) -> tuple[np.ndarray, np.ndarray]:
  """Event onsets in seconds from the video crop and the audio window start.

  NaN where there is no event (padding).
  """
  frames = np.asarray(record.get("event_frames", np.zeros((0,))), np.float64)
  count = int(record.get("num_events", 0))
  times = np.full(frames.shape, np.nan)
  times[:count] = frames[:count] / spec.fps
  video_t = times - start / spec.fps
  audio_t = times - (start / spec.fps + shift)
  return video_t.astype(np.float32), audio_t.astype(np.float32)


def make_example(
    record: dict[str, Any],
    spec: SyncSpec,
    start: int,
    offset_class: int,
    jitter: float,
    unsync: bool,
    unsync_sign: int,
    unsync_seconds: float | None = None,
) -> Batch:
  """One sync example from a record (see the module docstring).

  Returns:
    video uint8 [L, H, W] or [L, H, W, 3]; audio_synced / audio_shifted /
    audio_check int16 [crop_samples]; offset_label, sync_label int32;
    offset_seconds float32 (the applied shift, jitter included); video_events /
    audio_events float32 [E] (seconds from the crop / audio window start,
    NaN padding).
  """
  video = np.asarray(record["video"])
  if video.ndim == 3:
    video = video[..., None]
  audio, lead = np.asarray(record["audio"]), int(record["audio_lead"])
  shift = spec.offset_seconds(offset_class) + jitter
  synced = audio_window(spec, audio, lead, start, 0.0)
  shifted = audio_window(spec, audio, lead, start, shift)
  magnitude = spec.crop_seconds if unsync_seconds is None else unsync_seconds
  check = (
      audio_window(spec, audio, lead, start, unsync_sign * magnitude)
      if unsync
      else shifted
  )
  video_events, audio_events = _event_times(record, spec, start, shift)
  return {
      "video": video[start : start + spec.crop_frames],
      "audio_synced": synced,
      "audio_shifted": shifted,
      "audio_check": check,
      "offset_label": np.int32(offset_class),
      "sync_label": np.int32(0 if unsync else 1),
      "offset_seconds": np.float32(shift),
      "video_events": video_events,
      "audio_events": audio_events,
  }


def _unsync_jitter(spec: SyncSpec, rng: np.random.Generator) -> float:
  """U(0, jitter) seconds off an unsynchronisable shift's magnitude."""
  return float(rng.uniform(0.0, spec.jitter)) if spec.jitter else 0.0


class TrainCrops(grain.transforms.RandomMap):
  """Random crop, offset (+ jitter) and stage-3 label per example."""

  def __init__(self, spec: SyncSpec):
    self.spec = spec

  def random_map(
      self, element: dict[str, Any], rng: np.random.Generator
  ) -> Batch:
    spec = self.spec
    video, audio = element["video"], element["audio"]
    lead, clip = int(element["audio_lead"]), _clip_name(element)
    lo, hi = _fitting_starts(
        spec, len(video), len(audio), lead, -spec.max_shift, spec.max_shift
    )
    if lo <= hi:  # Room for every shift: the crop says nothing of them.
      start = int(rng.integers(lo, hi + 1))
      offset_class = int(rng.integers(spec.num_offsets))
      jitter = (
          float(rng.uniform(-spec.jitter, spec.jitter)) if spec.jitter else 0.0
      )
      unsync = bool(rng.integers(2))
      sign = 1 if rng.integers(2) else -1
      seconds = spec.crop_seconds - _unsync_jitter(spec, rng)
      return make_example(
          element, spec, start, offset_class, jitter, unsync, sign, seconds
      )
    # A short real clip (e.g. 10 s VGGSound): draw the shifts first, then a
    # crop where this example's windows fit; an unsynchronisable shift
    # takes the side with room (both sides if both fit).
    offset_class = int(rng.integers(spec.num_offsets))
    jitter = (
        float(rng.uniform(-spec.jitter, spec.jitter)) if spec.jitter else 0.0
    )
    unsync = bool(rng.integers(2))
    shift = spec.offset_seconds(offset_class) + jitter
    sign = 1 if rng.integers(2) else -1
    seconds = None
    if unsync:
      sign, seconds = fit_unsync_shift(
          spec, len(video), len(audio), lead, shift, sign, clip
      )
      # Jittered, but still beyond every synchronisable shift.
      room = seconds - (spec.max_offset + spec.jitter)
      seconds -= min(_unsync_jitter(spec, rng), room / 2)
    needed = (shift, sign * seconds) if unsync else (shift,)
    lo, hi = start_range(spec, len(video), len(audio), lead, clip, needed)
    start = int(rng.integers(lo, hi + 1))
    return make_example(
        element, spec, start, offset_class, jitter, unsync, sign, seconds
    )


def eval_example(
    record: dict[str, Any], spec: SyncSpec, index: int, draw: int
) -> Batch:
  """The fixed evaluation example ``draw`` of record ``index``."""
  offset_class = int(np.asarray(record["eval_offsets"])[draw])
  if not 0 <= offset_class < spec.num_offsets:
    raise ValueError(
        f"clip {_clip_name(record)}: stored eval offset class "
        f"{offset_class} outside [0, {spec.num_offsets})"
    )
  unsync = (index + draw) % 2 == 1
  sign = 1 if (index // 2) % 2 == 0 else -1
  n_frames, n_samples = len(record["video"]), len(record["audio"])
  lead = int(record["audio_lead"])
  shift = spec.offset_seconds(offset_class)
  lo, hi = _fitting_starts(
      spec, n_frames, n_samples, lead, -spec.max_shift, spec.max_shift
  )
  needed, seconds = None, None
  if lo > hi:  # A short real clip: fit this example's windows only.
    if unsync:
      sign, seconds = fit_unsync_shift(
          spec, n_frames, n_samples, lead, shift, sign, _clip_name(record)
      )
    needed = (shift, sign * seconds) if unsync else (shift,)
  lo, hi = start_range(
      spec, n_frames, n_samples, lead, _clip_name(record), needed
  )
  start = int(np.clip(np.asarray(record["eval_starts"])[draw], lo, hi))
  out = make_example(
      record, spec, start, offset_class, 0.0, unsync, sign, seconds
  )
  out["clip_index"] = np.int32(index)
  return out


def _to_batch(element: Batch) -> Batch:
  """Video to uint8 [B, L, H, W, C] (grey gets C = 1); the rest as is."""
  video = np.asarray(element["video"])
  if video.ndim == 4:
    element = dict(element, video=video[..., None])
  return element


def make_train_iterator(
    source: Sequence[Any],
    spec: SyncSpec,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    prefetch: int = 4,
) -> grain.DatasetIterator:
  """Endless, checkpointable iterator of training batches.

  Each host reads ``source[process_index::process_count]``, reshuffled every
  epoch with ``seed``; crops and offsets are drawn per element by
  ``TrainCrops`` from grain's per-element seed.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"need 0 <= process_index < process_count, got "
        f"{process_index}, {process_count}"
    )
  shard = len(range(process_index, len(source), process_count))
  if shard < batch_size:
    raise ValueError(
        f"process {process_index}/{process_count} holds {shard} "
        f"clips, fewer than batch_size {batch_size}"
    )
  ds = grain.MapDataset.source(source)
  if process_count > 1:
    ds = ds[process_index::process_count]
  ds = ds.seed(seed).shuffle().repeat().random_map(TrainCrops(spec))
  ds = ds.batch(batch_size, drop_remainder=True).map(_to_batch)
  options = grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=prefetch
  )
  return iter(ds.to_iter_dataset(options))


def eval_examples(
    source: Sequence[Any],
    spec: SyncSpec,
    num_draws: int | None = None,
    max_clips: int | None = None,
) -> grain.MapDataset:
  """The fixed evaluation examples of a split: record-major, draw-minor.

  Args:
    source: the split's records (with ``eval_offsets`` / ``eval_starts``).
    spec: timing.
    num_draws: draws per record (default: all stored).
    max_clips: use only the first ``max_clips`` records.

  Returns:
    A grain MapDataset of unbatched examples (``eval_example``).
  """
  count = len(source) if max_clips is None else min(len(source), max_clips)
  if count == 0:
    raise ValueError("cannot evaluate an empty split")
  stored = len(np.asarray(source[0]["eval_offsets"]))
  draws = stored if num_draws is None else num_draws
  if not 1 <= draws <= stored:
    raise ValueError(f"num_draws must be in [1, {stored}], got {draws}")
  return grain.MapDataset.range(count * draws).map(
      lambda i: eval_example(
          source[int(i) // draws], spec, int(i) // draws, int(i) % draws
      )
  )


def load_eval(
    source: Sequence[Any],
    spec: SyncSpec,
    num_draws: int | None = None,
    max_clips: int | None = None,
    batch_size: int = 256,
) -> Batch:
  """All fixed evaluation examples of a split as numpy arrays."""
  ds = (
      eval_examples(source, spec, num_draws, max_clips)
      .batch(batch_size, drop_remainder=False)
      .map(_to_batch)
  )
  parts: dict[str, list[np.ndarray]] = {}
  for batch in ds.to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
  ):
    for key, value in batch.items():
      parts.setdefault(key, []).append(np.asarray(value))
  return {k: np.concatenate(v) for k, v in parts.items()}
