"""Shared helpers for builders that read a user's manual download.

Real datasets (AVE, VEGAS, Flickr8k Audio Captions, SpokenCOCO) cannot be
downloaded by code: the user fetches them and tfds is pointed at the folder
(``DownloadConfig(manual_dir=...)``). This module holds what every such
builder needs:

* :func:`manual_dir_of` / :func:`find_expected`: locate the expected files of a
  published layout and, when any is absent, raise ONE
  :class:`MissingManualFilesError` that names the directory and every missing
  entry (not just the first one found).
* :func:`read_wav`: any wav libsndfile can open (PCM 8/16/24/32-bit, float,
  WAVE_FORMAT_EXTENSIBLE, mono or multichannel) → mono int16 at a target rate.
* :func:`load_image`: any image PIL can open → RGB uint8 [S, S, 3].
* :class:`BadFileError` and :class:`BadFileLog`: a per-item bad file (missing,
  empty, unreadable) either stops generation with an error naming the file,
  or, when the builder was asked to ``skip_bad_files``, is skipped and counted;
  the count and the file names are logged as one absl warning per split.
* :class:`ManualDownloadBuilder`: the common base carrying ``skip_bad_files``.

Decisions the datasets leave open (recorded here once for all builders):

* Multichannel audio is averaged to mono before resampling.
* Float wavs are taken as full scale ±1.0, clipped, and scaled by 32768
  (so 16-bit PCM read as float round-trips exactly).
* Resampling uses ``scipy.signal.resample_poly`` (polyphase, Kaiser window),
  output length ``ceil(n * target / source)``.
* Images are resized so the SHORTER side equals ``size`` (bicubic) and then
  center-cropped to ``size × size``: the aspect ratio is kept, as CLIP-style
  and ResNet-style encoders expect. JPEGs are first decoded at the smallest
  DCT-reduced scale (1/2, 1/4, 1/8) that still covers ``size × size``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image, UnidentifiedImageError
from scipy import signal

# An expected entry of a layout: a relative path (a trailing "/" marks a
# directory) or a tuple of alternative relative paths, any one of which will do.
Expected = str | tuple[str, ...]

INT16_SCALE = 32768.0


class MissingManualFilesError(FileNotFoundError):
  """The manual directory lacks files of the published layout.

  Attributes:
    manual_dir: the directory that was searched.
    missing: every missing entry, as written in the layout
      ("one of: a | b" for alternatives).
  """

  def __init__(
      self,
      dataset: str,
      manual_dir: Path,
      missing: Sequence[str],
      instructions: str = "",
  ):
    self.manual_dir = Path(manual_dir)
    self.missing = list(missing)
    state = (
        "does not exist"
        if not self.manual_dir.exists()
        else f"is missing {len(self.missing)} expected file(s)"
    )
    lines = [
        f"{dataset}: the manual directory {self.manual_dir} {state}. "
        "Expected (relative to that directory):"
    ]
    lines += [f"  - {m}" for m in self.missing]
    if instructions:
      lines += ["", "How to get the data:", instructions.strip()]
    super().__init__("\n".join(lines))


class BadFileError(ValueError):
  """One item's file is missing, empty or cannot be decoded.

  Attributes:
    path: the file at fault.
    reason: short description ("missing", "empty wav", "unreadable wav: ...").
  """

  def __init__(self, path: os.PathLike | str, reason: str):
    self.path = Path(path)
    self.reason = reason
    super().__init__(f"{reason}: {self.path}")


def _describe(entry: Expected) -> str:
  if isinstance(entry, tuple):
    return "one of: " + " | ".join(entry)
  return entry


def _exists(path: Path, rel: str) -> bool:
  return path.is_dir() if rel.endswith("/") else path.is_file()


def find_expected(
    base_dir: os.PathLike | str,
    expected: Sequence[Expected],
    *,
    dataset: str,
    instructions: str = "",
) -> dict[str, Path]:
  """Locates every expected entry of a layout under ``base_dir``.

  Args:
    base_dir: the manual directory (or another root, e.g. an image root).
    expected: relative paths; "x/" means a directory; a tuple lists
      alternatives, the first existing one is used.
    dataset: dataset name, for the error message.
    instructions: appended to the error message (download instructions).

  Returns:
    A dict from each entry's key (the entry itself, or the FIRST alternative
    of a tuple, trailing "/" removed) to the existing absolute path.

  Raises:
    MissingManualFilesError: naming ``base_dir`` and every missing entry.
  """
  base = Path(base_dir)
  found: dict[str, Path] = {}
  missing: list[str] = []
  for entry in expected:
    options = entry if isinstance(entry, tuple) else (entry,)
    hit = next(
        (
            base / rel.rstrip("/")
            for rel in options
            if _exists(base / rel.rstrip("/"), rel)
        ),
        None,
    )
    if hit is None:
      missing.append(_describe(entry))
    else:
      found[options[0].rstrip("/")] = hit
  if missing:
    raise MissingManualFilesError(dataset, base, missing, instructions)
  return found


def manual_dir_of(dl_manager: Any) -> Path:
  """The manual directory configured for this build, existing or not.

  tfds's ``dl_manager.manual_dir`` raises a bare AssertionError when the
  directory is absent or empty; builders want to list every missing file
  instead, so the configured path is read from the manager in that case.
  """
  try:
    return Path(dl_manager.manual_dir)
  except AssertionError:
    configured = getattr(dl_manager, "_manual_dir", None)
    if configured is None:
      raise
    return Path(os.fspath(configured))


def _to_int16(x: np.ndarray) -> np.ndarray:
  return np.clip(np.round(x * INT16_SCALE), -32768, 32767).astype(np.int16)


_UNKNOWN_SIZE = 0xFFFFFFFF  # Size field of a wav written as a stream.


def check_wav_complete(path: os.PathLike | str) -> None:
  """Checks that a RIFF/WAVE file holds every byte its chunks declare.

  libsndfile reads a truncated wav without complaint (it returns the
  samples that are there), so the chunk list is walked here: each chunk's
  declared size (padded to even) must fit in the file, and the ``data``
  chunk must be present. Files that are not RIFF/WAVE (RF64, AIFF, ...)
  and data chunks of unknown size (0xFFFFFFFF, streaming writers) are left
  to libsndfile.

  Raises:
    BadFileError: naming the file, the chunk, its declared size and the
      bytes present.
  """
  path = Path(path)
  file_size = path.stat().st_size
  with open(path, "rb") as f:
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
      return
    offset = 12
    while offset + 8 <= file_size:
      f.seek(offset)
      chunk_id, size = f.read(4), int.from_bytes(f.read(4), "little")
      body = offset + 8
      if chunk_id == b"data":
        if size != _UNKNOWN_SIZE and body + size > file_size:
          raise BadFileError(
              path,
              f"truncated wav file (data chunk declares "
              f"{size} bytes, the file holds {file_size - body} "
              "bytes of it)",
          )
        return
      if body + size > file_size:
        raise BadFileError(
            path,
            f"truncated wav file ({chunk_id!r} chunk at byte "
            f"{offset} declares {size} bytes, the file holds "
            f"{file_size - body}; no data chunk)",
        )
      offset = body + size + (size & 1)
  raise BadFileError(
      path, f"truncated wav file (no data chunk in its " f"{file_size} bytes)"
  )


def read_wav(path: os.PathLike | str, target_rate: int = 16000) -> np.ndarray:
  """Reads a wav file as mono int16 samples at ``target_rate`` Hz.

  Args:
    path: wav file (any PCM/float subtype libsndfile opens).
    target_rate: output sample rate in Hz.

  Returns:
    int16 array [T]; multichannel input is averaged, other rates are
    resampled with a polyphase filter (T = ceil(n * target_rate / rate)).

  Raises:
    BadFileError: missing file, unreadable/garbage file, a truncated file
      (fewer bytes than its chunks declare), or zero samples.
  """
  path = Path(path)
  if not path.is_file():
    raise BadFileError(path, "missing wav file")
  check_wav_complete(path)
  try:
    data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
  except (RuntimeError, ValueError, EOFError) as err:
    raise BadFileError(path, f"unreadable wav file ({err})") from err
  if data.shape[0] == 0:
    raise BadFileError(path, "empty wav file (0 samples)")
  mono = data.mean(axis=1)
  if rate != target_rate:
    g = math.gcd(int(rate), int(target_rate))
    mono = signal.resample_poly(mono, target_rate // g, int(rate) // g)
  return _to_int16(mono)


def load_image(path: os.PathLike | str, size: int) -> np.ndarray:
  """Decodes an image as RGB uint8 [size, size, 3].

  The shorter side is resized to ``size`` (bicubic), then the center
  ``size × size`` square is kept.

  Raises:
    BadFileError: missing or undecodable image.
  """
  path = Path(path)
  if not path.is_file():
    raise BadFileError(path, "missing image file")
  try:
    with Image.open(path) as img:
      # JPEG: decode directly at a reduced scale that still covers
      # size × size (much faster for large photos; a no-op otherwise).
      img.draft("RGB", (size, size))
      img = img.convert("RGB")
  except (UnidentifiedImageError, OSError, ValueError) as err:
    raise BadFileError(path, f"unreadable image file ({err})") from err
  w, h = img.size
  scale = size / min(w, h)
  new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
  img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  img = img.crop((left, top, left + size, top + size))
  return np.asarray(img, dtype=np.uint8)


def _decode_utf8(data: bytes, path: os.PathLike | str) -> str:
  """``data`` as UTF-8 text (a BOM is dropped); ValueError naming the file,
  line and column of the first undecodable byte."""
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as err:
    line = data.count(b"\n", 0, err.start) + 1
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    raise ValueError(
        f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at "
        f"column {column}); save the file as UTF-8"
    ) from None


def read_text(path: os.PathLike | str) -> str:
  """A UTF-8 text file's contents (index files, split lists, JSON).

  Raises:
    ValueError: naming the file and line of the first undecodable byte.
  """
  with open(path, "rb") as f:
    return _decode_utf8(f.read(), path)


def read_lines(path: os.PathLike | str) -> list[str]:
  """The lines of a UTF-8 text file, without line ends (see ``read_text``)."""
  return read_text(path).splitlines()


def read_json(path: os.PathLike | str) -> Any:
  """A UTF-8 JSON file, parsed.

  Raises:
    ValueError: naming the file, and the line and column where decoding or
      parsing failed (e.g. a truncated download).
  """
  text = read_text(path)
  try:
    return json.loads(text)
  except json.JSONDecodeError as err:
    hint = " (truncated?)" if err.pos >= len(text.rstrip()) else ""
    raise ValueError(
        f"{path}:{err.lineno}:{err.colno}: not valid JSON"
        f"{hint} ({err.msg} at line {err.lineno} column "
        f"{err.colno})"
    ) from None


def check_unique(
    items: Iterable[str], what: str, source: os.PathLike | str
) -> None:
  """Raises ValueError naming ``source`` when ``items`` has duplicates."""
  seen: set[str] = set()
  dups: list[str] = []
  for item in items:
    if item in seen:
      dups.append(item)
    seen.add(item)
  if dups:
    raise ValueError(f"{source}: duplicate {what}: {sorted(set(dups))[:10]}")


def invert_listing(
    listing: Mapping[str, Sequence[str]], source: str
) -> dict[str, str]:
  """Maps each item to its split; raises ValueError if one is in two splits."""
  owner: dict[str, str] = {}
  clashes: list[str] = []
  for split, items in listing.items():
    for item in items:
      if item in owner and owner[item] != split:
        clashes.append(f"{item} ({owner[item]} and {split})")
      owner.setdefault(item, split)
  if clashes:
    raise ValueError(f"{source}: item(s) listed in two splits: {clashes[:10]}")
  return owner


class BadFileLog:
  """Stops on, or skips and counts, bad files of one split.

  Args:
    where: "<dataset>/<split>", used in messages.
    skip: False → :meth:`handle` re-raises the error; True → it records it.
  """

  def __init__(self, where: str, skip: bool):
    self.where = where
    self.skip = skip
    self.skipped_examples = 0
    self.files: dict[Path, str] = {}

  def handle(self, err: BadFileError, n_examples: int = 1) -> None:
    """Raises ``err`` unless skipping; otherwise counts ``n_examples``."""
    if not self.skip:
      raise BadFileError(
          err.path,
          f"{self.where}: {err.reason} (set "
          "--config.data.skip_bad_files=True, or pass "
          "skip_bad_files=True to the builder, to skip "
          "and count such files)",
      ) from err
    self.skipped_examples += n_examples
    self.files.setdefault(err.path, err.reason)

  def report(self, kept_examples: int) -> None:
    """Logs one warning with the count and names of skipped files.

    Raises:
      ValueError: every example of the split was skipped.
    """
    if not self.files:
      return
    names = "\n".join(f"  {p} ({r})" for p, r in self.files.items())
    logging.warning(
        "%s: skipped %d example(s) because of %d bad file(s):\n%s",
        self.where,
        self.skipped_examples,
        len(self.files),
        names,
    )
    if kept_examples == 0:
      raise ValueError(
          f"{self.where}: all {self.skipped_examples} "
          "examples were skipped as bad files; see the "
          "warning above."
      )


class ManualDownloadBuilder(
    tfds.core.GeneratorBasedBuilder, skip_registration=True
):
  """Base of the manual-download builders: adds ``skip_bad_files``.

  Args:
    skip_bad_files: False (default) → a missing/empty/unreadable item file
      stops generation with an error naming it; True → such items are
      skipped and counted in one absl warning per split.
    **kwargs: passed to ``tfds.core.GeneratorBasedBuilder``.
  """

  def __init__(self, *, skip_bad_files: bool = False, **kwargs: Any):
    self.skip_bad_files = bool(skip_bad_files)
    super().__init__(**kwargs)

  def _bad_file_log(self, split: str) -> BadFileLog:
    return BadFileLog(f"{self.name}/{split}", self.skip_bad_files)

  def _find_manual(
      self, dl_manager: Any, expected: Sequence[Expected]
  ) -> dict[str, Path]:
    return find_expected(
        manual_dir_of(dl_manager),
        expected,
        dataset=self.name,
        instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS or "",
    )
