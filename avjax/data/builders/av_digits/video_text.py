"""AV-digits `video_text` (MAMA): moving-digit videos with generated captions.

A video is 8 frames of 32×32 (grey, uint8) in which 1–3 real handwritten
digits (scikit-learn's, 10×10 px) appear one after the other and move in a
straight line: direction (left / right / up / down), speed (slowly = 1.5 px
per frame, quickly = 3 px per frame) and the frame of appearance (0 for the
first digit, 2–3 for the second, 4–5 for the third) are random. Digits may
overlap (brightest pixel wins). A digit starts where it stays inside the
frame for its whole path.

Captions. The canonical caption lists the digits in order of appearance:
"a 3 moves left slowly, then a 7 appears at the top and moves down
quickly". Regions are the 3×3 cells of the frame holding the digit's first
centre ("top left", "top", ..., "center", ..., "bottom right").
``NUM_PARAPHRASES`` paraphrases per video, drawn from a small grammar of
synonyms and sentence shapes (digit words or numerals, "slides", "heads",
"next", "shows up", ...), stand in for the paper's captions written by a
vision-language model: same content, other words. They are stored
newline-separated in ``paraphrases``; the method adds them as extra
training pairs when asked.

Splits. ``train``, ``meta`` (a small clean, balanced meta set, MAMA /
Meta-Weight-Net), ``validation`` and ``test``. Train and meta videos use the
source digits of AV-digits' train split (as Meta-Weight-Net's meta set is
held out from the training data), validation / test those of their own
split, so no source digit is shared between train and evaluation.

Controls (``VideoTextOptions``, fields of the builder config):
  * ``noise_fraction``: that fraction of the train pairs is noisy: their
    captions are those of other train videos (a random cycle over the noisy
    subset, so no noisy pair keeps its own caption; the paraphrases follow
    the caption). ``caption`` is what the model trains on;
    ``clean_caption`` and ``noisy`` record the truth (for the
    weight-vs-loss plot, never for training). Meta, validation and test
    pairs are never noisy.
  * ``longtail_ratio``: digit classes of the train split are drawn with
    p(c) ∝ ratio^(−c/9) (class 0 the most frequent, ``ratio`` times class 9)
    and directions with p(k) ∝ ratio^(−k/3) over (left, right, up, down);
    1 gives the uniform distribution. The other splits are always balanced.

Determinism: everything random in example i of split s comes from
``np.random.default_rng([seed, KIND_IDS["video_text"], split_id, i])``;
the noisy subset and its cycle from ``[seed, kind_id, 99, round(1e6 f)]``,
so the clean videos of all `video_text*` configs with the same long-tail
setting are identical.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from avjax.data.builders.av_digits import digits as digits_lib

KIND_IDS = {"video_text": 3}
KINDS = tuple(KIND_IDS)
SPLITS: tuple[str, ...] = ("train", "meta", "validation", "test")
# The source digits each split draws from (see the module docstring).
SOURCE_SPLIT = {
    "train": "train",
    "meta": "train",
    "validation": "validation",
    "test": "test",
}
SPLIT_SIZES = {"train": 3000, "meta": 500, "validation": 500, "test": 500}
NUM_FRAMES = 8
FRAME_SIZE = 32
DIGIT_SIZE = 10
MAX_DIGITS = 3
NUM_PARAPHRASES = 3
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
_STEPS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
SPEEDS: tuple[str, ...] = ("slowly", "quickly")
_PIXELS_PER_FRAME = (1.5, 3.0)
_APPEAR_FRAMES = ((0,), (2, 3), (4, 5))
REGIONS = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
_NOISE_STREAM = 99


@dataclasses.dataclass(frozen=True)
class VideoTextOptions:
  """Controls of a `video_text` config (see the module docstring).

  Attributes:
    noise_fraction: fraction of noisy train pairs, in [0, 1).
    longtail_ratio: head/tail frequency ratio of train classes (≥ 1).
    split_sizes: videos per split (keys: ``SPLITS``).
  """

  noise_fraction: float = 0.0
  longtail_ratio: float = 1.0
  split_sizes: tuple[tuple[str, int], ...] = tuple(SPLIT_SIZES.items())

  def __post_init__(self):
    if not 0.0 <= self.noise_fraction < 1.0:
      raise ValueError(
          f"video_text noise_fraction={self.noise_fraction} must "
          "be in [0, 1)"
      )
    if not self.longtail_ratio >= 1.0:
      raise ValueError(
          f"video_text longtail_ratio={self.longtail_ratio} " "must be >= 1"
      )
    sizes = dict(self.split_sizes)
    if set(sizes) != set(SPLITS) or min(sizes.values()) < 1:
      raise ValueError(
          f"video_text split_sizes needs a positive size for each "
          f"of {SPLITS}, got {sizes}"
      )

  @property
  def sizes(self) -> dict[str, int]:
    return {s: int(dict(self.split_sizes)[s]) for s in SPLITS}


@dataclasses.dataclass(frozen=True)
class Event:
  """One digit of a video: class, motion and first frame."""

  label: int
  source: int
  direction: int
  speed: int
  appear: int
  start: tuple[float, float]  # (row, col) of the top-left corner


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng(
      [seed, KIND_IDS["video_text"], SPLITS.index(split), index]
  )


def class_probabilities(ratio: float, count: int, span: int) -> np.ndarray:
  """p(k) ∝ ratio^(−k/span), k = 0..count−1 (uniform for ratio 1)."""
  p = float(ratio) ** (-np.arange(count) / span)
  return p / p.sum()


def _start(
    rng: np.random.Generator, direction: str, speed: int, visible: int
) -> tuple[float, float]:
  travel = _PIXELS_PER_FRAME[speed] * (visible - 1)
  room = FRAME_SIZE - DIGIT_SIZE
  dr, dc = _STEPS[direction]

  def along(step: int) -> float:
    if step > 0:
      return float(rng.uniform(0, room - travel))
    if step < 0:
      return float(rng.uniform(travel, room))
    return float(rng.uniform(0, room))

  return along(dr), along(dc)


def draw_events(
    rng: np.random.Generator,
    split: str,
    sources: np.ndarray,
    labels: np.ndarray,
    options: VideoTextOptions,
) -> list[Event]:
  """The digits of one video, in order of appearance."""
  longtail = split == "train" and options.longtail_ratio > 1.0
  ratio = options.longtail_ratio if longtail else 1.0
  p_class = class_probabilities(ratio, digits_lib.NUM_CLASSES, 9)
  p_dir = class_probabilities(ratio, len(DIRECTIONS), 3)
  num = int(rng.integers(1, MAX_DIGITS + 1))
  events = []
  for k in range(num):
    label = int(rng.choice(digits_lib.NUM_CLASSES, p=p_class))
    source = int(rng.choice(sources[labels[sources] == label]))
    direction = int(rng.choice(len(DIRECTIONS), p=p_dir))
    speed = int(rng.integers(len(SPEEDS)))
    appear = int(rng.choice(_APPEAR_FRAMES[k]))
    start = _start(rng, DIRECTIONS[direction], speed, NUM_FRAMES - appear)
    events.append(Event(label, source, direction, speed, appear, start))
  return events


def region(event: Event) -> str:
  """Name of the 3×3 cell holding the digit's first centre."""
  third = FRAME_SIZE / 3
  row = min(int((event.start[0] + DIGIT_SIZE / 2) // third), 2)
  col = min(int((event.start[1] + DIGIT_SIZE / 2) // third), 2)
  return REGIONS[row][col]


def caption(events: list[Event]) -> str:
  """The canonical caption (see the module docstring)."""
  parts = []
  for k, e in enumerate(events):
    motion = f"moves {DIRECTIONS[e.direction]} {SPEEDS[e.speed]}"
    if k == 0:
      parts.append(f"a {e.label} {motion}")
    else:
      parts.append(
          f"then a {e.label} appears at the {region(e)} and " f"{motion}"
      )
  return ", ".join(parts)


_NAMES = ("a {n}", "the digit {n}", "a {w}", "the number {n}", "one {w}")
_VERBS = ("moves", "slides", "goes", "travels", "heads", "drifts")
_DIR_WORDS = {
    "left": ("left", "to the left", "leftward"),
    "right": ("right", "to the right", "rightward"),
    "up": ("up", "upward", "towards the top"),
    "down": ("down", "downward", "towards the bottom"),
}
_SPEED_WORDS = (
    ("slowly", "at a slow pace", "gently"),
    ("quickly", "fast", "at high speed"),
)
_THEN = ("then", "after that", "next", "later")
_APPEARS = ("appears", "shows up", "comes in", "pops up")


def paraphrase(events: list[Event], rng: np.random.Generator) -> str:
  """One paraphrase of ``caption(events)`` with the same content."""
  pick = lambda options: options[int(rng.integers(len(options)))]
  parts = []
  for k, e in enumerate(events):
    name = pick(_NAMES).format(n=e.label, w=digits_lib.DIGIT_WORDS[e.label])
    motion = (
        f"{pick(_VERBS)} {pick(_DIR_WORDS[DIRECTIONS[e.direction]])} "
        f"{pick(_SPEED_WORDS[e.speed])}"
    )
    if k == 0:
      parts.append(f"{name} {motion}")
    elif rng.random() < 0.5:
      parts.append(
          f"{pick(_THEN)} {name} {pick(_APPEARS)} at the "
          f"{region(e)} and {motion}"
      )
    else:
      parts.append(
          f"{pick(_THEN)}, at the {region(e)}, {name} "
          f"{pick(_APPEARS)} and {motion}"
      )
  return "; ".join(parts) if rng.random() < 0.3 else ", ".join(parts)


def render(
    events: list[Event], digit_images: dict[int, np.ndarray]
) -> np.ndarray:
  """uint8 [NUM_FRAMES, FRAME_SIZE, FRAME_SIZE] frames of the events."""
  frames = np.zeros((NUM_FRAMES, FRAME_SIZE, FRAME_SIZE), np.uint8)
  for e in events:
    image = digit_images[e.source]
    dr, dc = _STEPS[DIRECTIONS[e.direction]]
    v = _PIXELS_PER_FRAME[e.speed]
    for t in range(e.appear, NUM_FRAMES):
      moved = v * (t - e.appear)
      r = int(round(e.start[0] + dr * moved))
      c = int(round(e.start[1] + dc * moved))
      r = min(max(r, 0), FRAME_SIZE - DIGIT_SIZE)
      c = min(max(c, 0), FRAME_SIZE - DIGIT_SIZE)
      window = frames[t, r : r + DIGIT_SIZE, c : c + DIGIT_SIZE]
      np.maximum(window, image, out=window)
  return frames


def describe(
    seed: int,
    split: str,
    index: int,
    sources: np.ndarray,
    labels: np.ndarray,
    options: VideoTextOptions,
) -> tuple[list[Event], str, list[str]]:
  """(events, canonical caption, paraphrases) of one video, no pixels."""
  rng = example_rng(seed, split, index)
  events = draw_events(rng, split, sources, labels, options)
  return (
      events,
      caption(events),
      [paraphrase(events, rng) for _ in range(NUM_PARAPHRASES)],
  )


def noisy_partners(seed: int, size: int, fraction: float) -> np.ndarray:
  """int [size]: whose caption train video i carries (i itself if clean).

  ``round(fraction · size)`` videos, chosen at random, are put on a random
  cycle, each taking the caption of the next one (so none keeps its own).
  """
  partners = np.arange(size)
  count = int(round(fraction * size))
  if count < 2:
    return partners
  rng = np.random.default_rng(
      [seed, KIND_IDS["video_text"], _NOISE_STREAM, int(round(1e6 * fraction))]
  )
  chosen = rng.permutation(size)[:count]
  partners[chosen] = np.roll(chosen, -1)
  return partners


class Generator:
  """Generates the examples of one split (and the tokenizer's captions)."""

  def __init__(self, seed: int, options: VideoTextOptions):
    self.seed = seed
    self.options = options
    images, self.labels = digits_lib.load_digits()
    self.split_sources = digits_lib.split_indices(self.labels, seed)
    self._images = images
    self._resized: dict[int, np.ndarray] = {}

  def sources(self, split: str) -> np.ndarray:
    return self.split_sources[SOURCE_SPLIT[split]]

  def describe(self, split: str, index: int):
    return describe(
        self.seed, split, index, self.sources(split), self.labels, self.options
    )

  def partners(self, split: str) -> np.ndarray:
    size = self.options.sizes[split]
    if split != "train":
      return np.arange(size)
    return noisy_partners(self.seed, size, self.options.noise_fraction)

  def training_captions(self) -> list[str]:
    """Every caption and paraphrase of the train split (tokenizer corpus)."""
    texts = []
    for i in range(self.options.sizes["train"]):
      _, text, paraphrases = self.describe("train", i)
      texts.append(text)
      texts.extend(paraphrases)
    return texts

  def _digit(self, source: int) -> np.ndarray:
    if source not in self._resized:
      self._resized[source] = digits_lib.resize_digit(
          self._images[source], DIGIT_SIZE
      )
    return self._resized[source]

  def example(
      self, split: str, index: int, video_id: int, partner: int
  ) -> dict[str, Any]:
    events, clean, paraphrases = self.describe(split, index)
    if partner != index:
      _, text, shown = self.describe(split, partner)
    else:
      text, shown = clean, paraphrases
    pad = lambda values: np.asarray(
        list(values) + [-1] * (MAX_DIGITS - len(values)), np.int32
    )
    return {
        "frames": render(
            events, {e.source: self._digit(e.source) for e in events}
        ),
        "caption": text,
        "paraphrases": "\n".join(shown),
        "clean_caption": clean,
        "noisy": np.int32(partner != index),
        "caption_source": np.int32(partner),
        "digits": pad([e.label for e in events]),
        "directions": pad([e.direction for e in events]),
        "speeds": pad([e.speed for e in events]),
        "num_digits": np.int32(len(events)),
        "video_id": np.int32(video_id),
    }


def features() -> tfds.features.FeaturesDict:
  scalar = lambda doc: tfds.features.Scalar(dtype=np.int32, doc=doc)
  per_digit = lambda doc: tfds.features.Tensor(
      shape=(MAX_DIGITS,), dtype=np.int32, doc=doc
  )
  return tfds.features.FeaturesDict(
      {
          "frames": tfds.features.Tensor(
              shape=(NUM_FRAMES, FRAME_SIZE, FRAME_SIZE),
              dtype=np.uint8,
              encoding=tfds.features.Encoding.ZLIB,
              doc="Grey frames, ink bright (0..255).",
          ),
          "caption": tfds.features.Text(
              doc="The training caption (another video's for noisy pairs)."
          ),
          "paraphrases": tfds.features.Text(
              doc=f"{NUM_PARAPHRASES} paraphrases of `caption`, one per line."
          ),
          "clean_caption": tfds.features.Text(doc="The video's true caption."),
          "noisy": scalar("1 if `caption` belongs to another video."),
          "caption_source": scalar(
              "Index in the split of the caption's video."
          ),
          "digits": per_digit("Digit classes in order of appearance, -1 pad."),
          "directions": per_digit("Index into DIRECTIONS, -1 pad."),
          "speeds": per_digit("Index into SPEEDS, -1 pad."),
          "num_digits": scalar("Number of digits (1-3)."),
          "video_id": scalar("Video id, unique in the config."),
      }
  )


def _examples(generator: Generator, split: str, first_id: int):
  partners = generator.partners(split)
  for i in range(generator.options.sizes[split]):
    yield i, generator.example(split, i, first_id + i, int(partners[i]))


def split_generators(
    seed: int, options: VideoTextOptions, metadata: dict
) -> dict[str, Any]:
  """The builder's split generators; trains and stores the tokenizer.

  The caption tokenizer (``avjax.data.pipeline.tokenizer``) is trained on the train
  split's captions and paraphrases and saved as JSON in
  ``metadata["tokenizer"]`` (tfds writes ``builder.info.metadata`` next to
  the data).
  """
  from avjax.data.pipeline import tokenizer  # pylint: disable=import-outside-toplevel

  generator = Generator(seed, options)
  metadata["tokenizer"] = tokenizer.CaptionTokenizer.train(
      generator.training_captions()
  ).to_json()
  metadata["noise_fraction"] = options.noise_fraction
  metadata["longtail_ratio"] = options.longtail_ratio
  sizes = options.sizes
  first_ids = np.concatenate([[0], np.cumsum([sizes[s] for s in SPLITS])])
  return {
      split: _examples(generator, split, int(first))
      for split, first in zip(SPLITS, first_ids)
  }
