"""Source images of AV-digits: scikit-learn's 1,797 real handwritten digits.

The images are the UCI optical-recognition digits shipped with scikit-learn
(8x8 pixels, 17 grey levels 0..16, classes 0..9). They are split once,
stratified by class with a fixed seed, into train / validation / test so that
every source image belongs to exactly one split, and upsampled with bicubic
interpolation for display at larger sizes.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_FRACTIONS: tuple[float, ...] = (0.70, 0.15, 0.15)
NUM_CLASSES = 10
DIGIT_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """All source digits.

  Returns:
    images: float32 [1797, 8, 8], grey levels 0..16 (ink is high).
    labels: int32 [1797], 0..9.
  """
  from sklearn import datasets  # pylint: disable=import-outside-toplevel

  digits = datasets.load_digits()
  images = digits.images.astype(np.float32)
  labels = digits.target.astype(np.int32)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


def split_indices(
    labels: np.ndarray,
    seed: int,
    fractions: tuple[float, ...] = SPLIT_FRACTIONS,
) -> dict[str, np.ndarray]:
  """Stratified, disjoint split of source indices.

  Per class, the indices are permuted with `seed`; the first
  round(f_train * n) go to train, the next round(f_val * n) to validation,
  the rest to test.

  Args:
    labels: int [N] class of each source image.
    seed: permutation seed.
    fractions: (train, validation, test) fractions, summing to 1.

  Returns:
    {split: sorted int32 indices into `labels`}; together a partition of
    range(N).
  """
  if len(fractions) != len(SPLITS) or not np.isclose(sum(fractions), 1.0):
    raise ValueError(
        f"fractions must be {len(SPLITS)} numbers summing to 1, got "
        f"{fractions}"
    )
  rng = np.random.default_rng(seed)
  parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    n_train = int(round(fractions[0] * len(members)))
    n_val = int(round(fractions[1] * len(members)))
    parts["train"].append(members[:n_train])
    parts["validation"].append(members[n_train : n_train + n_val])
    parts["test"].append(members[n_train + n_val :])
  return {
      s: np.sort(np.concatenate(p)).astype(np.int32) for s, p in parts.items()
  }


def resize_digit(image: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize of one 8x8 digit (levels 0..16) to uint8 [size, size].

  Levels are scaled to 0..255 (ink bright on black) and overshoot of the
  cubic kernel is clipped.
  """
  if image.ndim != 2:
    raise ValueError(f"expected one [H, W] image, got shape {image.shape}")
  return resize_grey(image.astype(np.float32) * np.float32(255.0 / 16.0), size)


def resize_grey(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Bicubic resize of one grey image (levels 0..255) to uint8 [H, W].

  The resize the builders apply to digits, shared with inference
  (``avjax.inference``) so that a user's picture of any size goes through
  the same step. Overshoot of the cubic kernel is clipped.

  Args:
    image: [h, w] grey levels 0..255 (any real dtype).
    size: H = W, or (H, W), in pixels.
  """
  if image.ndim != 2:
    raise ValueError(f"expected one [H, W] image, got shape {image.shape}")
  height, width = (size, size) if isinstance(size, (int, np.integer)) else size
  # A float32 array becomes a mode "F" (32-bit float) image.
  scaled = Image.fromarray(np.asarray(image, np.float32))
  resized = np.asarray(
      scaled.resize((int(width), int(height)), Image.Resampling.BICUBIC)
  )
  return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def resize_digits(images: np.ndarray, size: int) -> np.ndarray:
  """`resize_digit` over a stack: float [N, 8, 8] -> uint8 [N, size, size]."""
  return np.stack([resize_digit(im, size) for im in images])
