"""AV-digits `sync` and `sync_dense`: short videos with a tied soundtrack.

Synchformer (``avjax.methods.synchformer``) learns to tell how far a
soundtrack is shifted against its video. These two configs give it clips
whose audio-visual evidence is, as in VGGSound-Sparse, either **sparse**
(`sync`) or **dense** (`sync_dense`).

Timeline (version 2.0.0: the paper's geometry). A clip is ``VIDEO_FRAMES``
grey frames of ``FRAME_SIZE``² pixels at ``FPS`` (6.4 s), and a soundtrack at
``SAMPLE_RATE`` Hz that starts ``AUDIO_MARGIN_SECONDS`` (4.8 s) before frame 0
and ends as long after the last frame (16 s). Audio sample ``n`` is at video
time ``n / SAMPLE_RATE - AUDIO_MARGIN_SECONDS``. Synchformer crops
``CROP_FRAMES`` frames (4.8 s, 14 half-overlapping segments of 0.64 s) at any
of ``VIDEO_FRAMES - CROP_FRAMES + 1`` starts; the margins let the training
pipeline shift the audio by any offset of ±2.0 s (plus jitter) and by a whole
crop length (stage 3's unsynchronisable windows) with real signal, never
padding, so audio and video overlap by at least 4.8 - 2.0 = 2.8 s for every
offset class. Events are generated over the whole soundtrack's time span;
the video shows those inside it. (Versions 1.x: 3.2 s videos with 2.6 s
margins for a 2.56 s crop, whose overlap fell to 0.56 s at ±2 s.)

`sync` (sparse): at a few random moments a handwritten digit (16×16, at a
random place) flashes for ``EVENT_FRAMES`` frames (0.24 s), and the digit's
word, spoken by the clip's speaker, starts exactly at the flash's first
frame. Onsets lie on the frame grid; gaps between onsets are
U{15..35} frames (0.6–1.4 s), so about a quarter of the frames show a digit
and most of the soundtrack is silent. The same digit is seen and heard, so
events can be paired by identity as well as by time.

`sync_dense`: one digit moves on a smooth random path during the whole clip
(each coordinate a sum of three sinusoids of 0.3–1.2 Hz), and the soundtrack
is a continuous tone whose pitch follows the digit's height (300 Hz at the
bottom, 1,200 Hz at the top, log scale) and whose loudness follows its
horizontal position. Every instant carries evidence.

Audio is stored clean (speech or tone, no noise: array_record's own record
compression then shrinks the silence of `sync`); the training pipeline adds
noise. Video and audio are raw bytes, not zlib: inflating them on every read
and deflating them at build time took about half of the training pipeline's
and of the build's CPU time. Speakers: each split has its own pool of
jittered espeak-ng speakers (``mixing.draw_speaker``, whose rate residue
keeps splits' recordings disjoint), and each word of a speaker is
synthesised once and reused within the split. Digits come from
the split's own source images (``digits.split_indices``), so train,
validation and test share no source image or recording.

Fixed evaluation draws. Each example stores ``eval_offsets`` (offset
classes) and ``eval_starts`` (crop start frames, in [0, MAX_EVAL_START]),
``NUM_EVAL_DRAWS`` of each, drawn at generation: validation and test
numbers use exactly these (the training pipeline ignores them and draws its
own). True event times are stored for the evidence-attribution metric.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from avjax.data.builders.av_digits import digits as digits_lib
from avjax.data.builders.av_digits import mixing
from avjax.data.builders.av_digits import speech

KINDS = ("sync", "sync_dense")
# Seeds of the sync configs' examples (far from the other configs' ids).
KIND_IDS = {"sync": 20, "sync_dense": 21}

FPS = 25
FRAME_SIZE = 32
CROP_FRAMES = 120  # 4.8 s: the crop the data are made for
VIDEO_FRAMES = 160  # 6.4 s: 41 crop starts
SAMPLE_RATE = speech.SAMPLE_RATE
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MAX_OFFSET_SECONDS = 2.0  # offset classes span ±2 s
AUDIO_MARGIN_FRAMES = CROP_FRAMES  # 4.8 s: a whole-crop shift fits
AUDIO_MARGIN_SECONDS = AUDIO_MARGIN_FRAMES / FPS
AUDIO_MARGIN_SAMPLES = AUDIO_MARGIN_FRAMES * SAMPLES_PER_FRAME
AUDIO_SAMPLES = (VIDEO_FRAMES + 2 * AUDIO_MARGIN_FRAMES) * SAMPLES_PER_FRAME

DIGIT_SIZE = 16
EVENT_FRAMES = 6
EVENT_GAP_FRAMES = (15, 35)  # inclusive range between onsets
MAX_EVENTS = 32
SPEECH_PEAK = 0.7  # of int16 full scale, per word
SPEAKERS_PER_SPLIT = {"train": 24, "validation": 8, "test": 8}

DENSE_FREQ_HZ = (0.3, 1.2)
DENSE_PITCH_HZ = (300.0, 1200.0)
DENSE_LOUDNESS = (0.15, 0.45)  # of full scale, left → right

NUM_EVAL_DRAWS = 3
MAX_EVAL_START = VIDEO_FRAMES - CROP_FRAMES
NUM_OFFSET_CLASSES = 21

# Train splits stay under tfds's 1 GB in-memory shuffle buffer (beyond it
# tfds spills to disk through TensorFlow, which avjax never imports): a
# `sync` clip takes 676 kB (16 s of int16 audio, 160 frames of 32×32).
SPLIT_SIZES = {
    "sync": {"train": 1000, "validation": 200, "test": 200},
    "sync_dense": {"train": 800, "validation": 100, "test": 100},
}


def example_rng(
    seed: int, kind: str, split: str, index: int
) -> np.random.Generator:
  """The random generator of one example, keyed on (kind, split, index)."""
  return np.random.default_rng(
      [seed, KIND_IDS[kind], digits_lib.SPLITS.index(split), index]
  )


def features(kind: str) -> dict[str, tfds.features.FeatureConnector]:
  """tfds features of a sync config (the same for both kinds)."""
  del kind
  scalar = lambda doc: tfds.features.Scalar(dtype=np.int32, doc=doc)
  return {
      "video": tfds.features.Tensor(
          shape=(VIDEO_FRAMES, FRAME_SIZE, FRAME_SIZE),
          dtype=np.uint8,
          encoding=tfds.features.Encoding.BYTES,
          doc=f"Grey frames at {FPS} fps, ink bright (0..255).",
      ),
      "audio": tfds.features.Tensor(
          shape=(AUDIO_SAMPLES,),
          dtype=np.int16,
          encoding=tfds.features.Encoding.BYTES,
          doc=(
              f"{SAMPLE_RATE} Hz soundtrack; sample n is at video time "
              f"n / {SAMPLE_RATE} - {AUDIO_MARGIN_SECONDS} s."
          ),
      ),
      "audio_lead": scalar("Audio samples before video frame 0."),
      "event_frames": tfds.features.Tensor(
          shape=(MAX_EVENTS,),
          dtype=np.int32,
          doc="Onset frame of each event on the video's frame grid (may be "
          "< 0 or >= the frame count: heard only), padded with "
          "-10000.",
      ),
      "event_digits": tfds.features.Tensor(
          shape=(MAX_EVENTS,),
          dtype=np.int32,
          doc="Digit class of each event, padded with -1.",
      ),
      "num_events": scalar("Events of the clip (0 in sync_dense)."),
      "eval_offsets": tfds.features.Tensor(
          shape=(NUM_EVAL_DRAWS,),
          dtype=np.int32,
          doc="Fixed offset classes (0..20) for validation / test.",
      ),
      "eval_starts": tfds.features.Tensor(
          shape=(NUM_EVAL_DRAWS,),
          dtype=np.int32,
          doc=f"Fixed crop start frames in [0, {MAX_EVAL_START}].",
      ),
      "clip_id": scalar("Clip id, unique in the config."),
      "voice": scalar(
          "Index into avjax.data.builders.av_digits.speech.VOICE_SETTINGS (-1: "
          "none)."
      ),
  }


def split_sizes(kind: str) -> dict[str, int]:
  return dict(SPLIT_SIZES[kind])


@dataclasses.dataclass(frozen=True)
class SplitMaterial:
  """What the examples of one split draw from.

  Attributes:
    digits: uint8 [S, DIGIT_SIZE, DIGIT_SIZE] the split's source digits.
    labels: int [S] their classes.
    words: per speaker, the 10 digit words (int16 [N] each), or () for
      `sync_dense`.
    voices: per speaker, its index in speech.VOICE_SETTINGS.
  """

  digits: np.ndarray
  labels: np.ndarray
  words: tuple[tuple[np.ndarray, ...], ...]
  voices: tuple[int, ...]


def split_material(
    kind: str, split: str, seed: int, synthesize: bool = True
) -> SplitMaterial:
  """Loads the split's digits and synthesises its speakers' words."""
  images, labels = digits_lib.load_digits()
  sources = digits_lib.split_indices(labels, seed)[split]
  digits = digits_lib.resize_digits(images[sources], DIGIT_SIZE)
  words, voices = (), ()
  if kind == "sync" and synthesize:
    rng = np.random.default_rng(
        [seed, KIND_IDS[kind], 99, digits_lib.SPLITS.index(split)]
    )
    speakers = [
        mixing.draw_speaker(rng, digits_lib.SPLITS.index(split))
        for _ in range(SPEAKERS_PER_SPLIT[split])
    ]
    words = tuple(
        tuple(mixing.speak(w, s) for w in digits_lib.DIGIT_WORDS)
        for s in speakers
    )
    voices = tuple(s.voice_index for s in speakers)
  return SplitMaterial(digits, labels[sources], words, voices)


def _eval_draws(rng: np.random.Generator) -> dict[str, np.ndarray]:
  return {
      "eval_offsets": rng.integers(
          0, NUM_OFFSET_CLASSES, NUM_EVAL_DRAWS
      ).astype(np.int32),
      "eval_starts": rng.integers(0, MAX_EVAL_START + 1, NUM_EVAL_DRAWS).astype(
          np.int32
      ),
  }


def event_onsets(rng: np.random.Generator) -> np.ndarray:
  """Onset frames (video frame grid) of a sparse clip's events.

  They cover the soundtrack's span [-AUDIO_MARGIN_FRAMES, VIDEO_FRAMES +
  AUDIO_MARGIN_FRAMES), the last one early enough for a word to fit.
  """
  start = -AUDIO_MARGIN_FRAMES + int(rng.integers(0, EVENT_GAP_FRAMES[1]))
  end = VIDEO_FRAMES + AUDIO_MARGIN_FRAMES - EVENT_GAP_FRAMES[0]
  onsets = [start]
  while True:
    nxt = onsets[-1] + int(
        rng.integers(EVENT_GAP_FRAMES[0], EVENT_GAP_FRAMES[1] + 1)
    )
    if nxt >= end or len(onsets) == MAX_EVENTS:
      break
    onsets.append(nxt)
  return np.asarray(onsets, np.int32)


def make_sparse(
    split: str, index: int, clip_id: int, seed: int, material: SplitMaterial
) -> dict[str, np.ndarray | int]:
  """One `sync` example (keys as in `features`)."""
  rng = example_rng(seed, "sync", split, index)
  speaker = int(rng.integers(len(material.words)))
  onsets = event_onsets(rng)
  chosen = rng.integers(0, len(material.digits), size=len(onsets))
  places = rng.integers(0, FRAME_SIZE - DIGIT_SIZE + 1, size=(len(onsets), 2))
  video = np.zeros((VIDEO_FRAMES, FRAME_SIZE, FRAME_SIZE), np.uint8)
  mix = np.zeros((AUDIO_SAMPLES,), np.float64)
  for onset, source, (row, col) in zip(onsets, chosen, places):
    digit = int(material.labels[source])
    first, last = max(onset, 0), min(onset + EVENT_FRAMES, VIDEO_FRAMES)
    if first < last:
      video[first:last, row : row + DIGIT_SIZE, col : col + DIGIT_SIZE] = (
          np.maximum(
              video[first:last, row : row + DIGIT_SIZE, col : col + DIGIT_SIZE],
              material.digits[source],
          )
      )
    word = material.words[speaker][digit].astype(np.float64)
    word *= SPEECH_PEAK * 32767.0 / max(np.max(np.abs(word)), 1.0)
    at = (onset + AUDIO_MARGIN_FRAMES) * SAMPLES_PER_FRAME
    part = word[: AUDIO_SAMPLES - at]
    mix[at : at + part.size] += part
  n = len(onsets)
  pad = lambda values, fill: np.concatenate(
      [values, np.full((MAX_EVENTS - n,), fill)]
  ).astype(np.int32)
  return {
      "video": video,
      "audio": np.clip(np.round(mix), -32768, 32767).astype(np.int16),
      "audio_lead": np.int32(AUDIO_MARGIN_SAMPLES),
      "event_frames": pad(onsets, -10000),
      "event_digits": pad(material.labels[chosen], -1),
      "num_events": np.int32(n),
      **_eval_draws(rng),
      "clip_id": np.int32(clip_id),
      "voice": np.int32(material.voices[speaker]),
  }


def smooth_path(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
  """A random smooth curve in [-1, 1] at `times` (seconds): 3 sinusoids."""
  freqs = rng.uniform(*DENSE_FREQ_HZ, size=3)
  phases = rng.uniform(0, 2 * np.pi, size=3)
  amps = rng.uniform(0.5, 1.0, size=3)
  waves = amps[:, None] * np.sin(
      2 * np.pi * freqs[:, None] * times[None] + phases[:, None]
  )
  return waves.sum(0) / amps.sum()


def make_dense(
    split: str, index: int, clip_id: int, seed: int, material: SplitMaterial
) -> dict[str, np.ndarray | int]:
  """One `sync_dense` example (keys as in `features`)."""
  rng = example_rng(seed, "sync_dense", split, index)
  source = int(rng.integers(len(material.digits)))
  path_rng_y, path_rng_x = rng.spawn(2)
  span = FRAME_SIZE - DIGIT_SIZE
  audio_t = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE - AUDIO_MARGIN_SECONDS
  height = smooth_path(path_rng_y, audio_t)  # +1 = top of the frame
  across = smooth_path(path_rng_x, audio_t)
  frame_samples = (np.arange(VIDEO_FRAMES) + AUDIO_MARGIN_FRAMES) * (
      SAMPLES_PER_FRAME
  )
  rows = np.round((1 - height[frame_samples]) / 2 * span).astype(int)
  cols = np.round((across[frame_samples] + 1) / 2 * span).astype(int)
  video = np.zeros((VIDEO_FRAMES, FRAME_SIZE, FRAME_SIZE), np.uint8)
  for k, (r, c) in enumerate(zip(rows, cols)):
    video[k, r : r + DIGIT_SIZE, c : c + DIGIT_SIZE] = material.digits[source]
  lo, hi = np.log2(DENSE_PITCH_HZ[0]), np.log2(DENSE_PITCH_HZ[1])
  pitch = 2.0 ** (lo + (height + 1) / 2 * (hi - lo))
  loud = DENSE_LOUDNESS[0] + (across + 1) / 2 * (
      DENSE_LOUDNESS[1] - DENSE_LOUDNESS[0]
  )
  phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
  tone = loud * np.sin(phase + rng.uniform(0, 2 * np.pi))
  return {
      "video": video,
      "audio": np.round(tone * 32767.0).astype(np.int16),
      "audio_lead": np.int32(AUDIO_MARGIN_SAMPLES),
      "event_frames": np.full((MAX_EVENTS,), -10000, np.int32),
      "event_digits": np.full((MAX_EVENTS,), -1, np.int32),
      "num_events": np.int32(0),
      **_eval_draws(rng),
      "clip_id": np.int32(clip_id),
      "voice": np.int32(-1),
  }


def make_example(
    kind: str,
    split: str,
    index: int,
    clip_id: int,
    seed: int,
    material: SplitMaterial,
) -> dict[str, np.ndarray | int]:
  """One example of config `kind` (deterministic in its arguments)."""
  if kind == "sync":
    return make_sparse(split, index, clip_id, seed, material)
  if kind == "sync_dense":
    return make_dense(split, index, clip_id, seed, material)
  raise ValueError(f"unknown sync kind {kind!r}; one of {KINDS}")
