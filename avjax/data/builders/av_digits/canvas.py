"""Caption canvases of AV-digits: several real digits on one image.

Layout. The 64x64 canvas is divided into a 3x3 grid of 21-pixel cells
(rows/columns start at 0, 21, 42; the last pixel row/column stays empty).
A canvas holds 2 to 4 digits, each in its own cell, drawn at a random size of
14 to 18 pixels at a random position fully inside its cell, so digits never
overlap.

Reading order (the order of the spoken caption). Row-major over cells: the
top row of cells first, and within a row from left to right. Since a digit
never leaves its cell, the order is recoverable from the pixels: a digit's
row is floor(top / 21) and its column floor(left / 21); sort by (row, left).

Caption text. The digit words in reading order ("three one four"); with
probability 0.25 one of a few short lead-in phrases is prepended ("the
digits three one four"). Two canvases with the same digits in a different
order therefore always get different captions.
"""

from __future__ import annotations

import numpy as np

from avjax.data.builders.av_digits import digits as digits_lib

CANVAS_SIZE = 64
GRID = 3
CELL = 21
TILE_SIZE_RANGE = (14, 18)  # inclusive
MIN_DIGITS, MAX_DIGITS = 2, 4
PREFIXES: tuple[str, ...] = (
    "the digits",
    "here are",
    "i see",
    "the numbers",
    "this shows",
)
PREFIX_PROBABILITY = 0.25


def draw_boxes(rng: np.random.Generator, num_digits: int) -> np.ndarray:
  """Random non-overlapping digit boxes, in reading order.

  Args:
    rng: random generator.
    num_digits: number of boxes, in [MIN_DIGITS, MAX_DIGITS].

  Returns:
    int32 [num_digits, 4] boxes (top, left, bottom, right), bottom/right
    exclusive, sorted in reading order (see module docstring).
  """
  if not MIN_DIGITS <= num_digits <= MAX_DIGITS:
    raise ValueError(
        f"num_digits must be in [{MIN_DIGITS}, {MAX_DIGITS}], got "
        f"{num_digits}"
    )
  cells = np.sort(rng.choice(GRID * GRID, size=num_digits, replace=False))
  boxes = np.zeros((num_digits, 4), np.int32)
  for i, cell in enumerate(cells):
    row, col = divmod(int(cell), GRID)
    size = int(rng.integers(TILE_SIZE_RANGE[0], TILE_SIZE_RANGE[1] + 1))
    top = row * CELL + int(rng.integers(0, CELL - size + 1))
    left = col * CELL + int(rng.integers(0, CELL - size + 1))
    boxes[i] = (top, left, top + size, left + size)
  return boxes


def reading_order(boxes: np.ndarray) -> np.ndarray:
  """Permutation that sorts boxes [K, 4] into reading order (row, left)."""
  boxes = np.asarray(boxes)
  rows = boxes[:, 0] // CELL
  return np.lexsort((boxes[:, 1], rows))


def render_canvas(sources: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Draws source digits into their boxes.

  Args:
    sources: float [K, 8, 8] source digits (levels 0..16).
    boxes: int [K, 4] square boxes (top, left, bottom, right).

  Returns:
    uint8 [CANVAS_SIZE, CANVAS_SIZE], ink bright on black.
  """
  if len(sources) != len(boxes):
    raise ValueError(f"{len(sources)} source digits for {len(boxes)} boxes")
  canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE), np.uint8)
  for source, (top, left, bottom, right) in zip(sources, boxes):
    size = bottom - top
    if right - left != size:
      raise ValueError(f"box {(top, left, bottom, right)} is not square")
    canvas[top:bottom, left:right] = digits_lib.resize_digit(source, size)
  return canvas


def caption_text(digit_labels: np.ndarray, prefix: str | None = None) -> str:
  """Spoken caption: optional lead-in, then the digit words in order."""
  words = [digits_lib.DIGIT_WORDS[int(d)] for d in digit_labels]
  if prefix:
    words = [prefix] + words
  return " ".join(words)


def draw_prefix(rng: np.random.Generator) -> str | None:
  """A lead-in phrase with probability PREFIX_PROBABILITY, else None."""
  if rng.uniform() < PREFIX_PROBABILITY:
    return PREFIXES[int(rng.integers(len(PREFIXES)))]
  return None
