"""Shared helpers for builders that read a user's manual download.

Real datasets (AVE, VEGAS, Flickr8k Audio Captions, SpokenCOCO) cannot be
downloaded by code: the user fetches them and tfds is pointed at the folder
(``DownloadConfig(manual_dir=...)``). This module holds what every such
builder needs:

* :func:`manual_dir_of` / :func:`find_expected`: locate the expected files of a
  published layout and, when any is absent, raise ONE
  :class:`MissingManualFilesError` that names the directory and every missing
  entry (not just the first one found).
* :class:`BadFileLog` (with ``avjax.data.io.errors.BadFileError``): a per-item bad file (missing,
  empty, unreadable) either stops generation with an error naming the file,
  or, when the builder was asked to ``skip_bad_files``, is skipped and counted;
  the count and the file names are logged as one absl warning per split.
* :class:`ManualDownloadBuilder`: the common base carrying ``skip_bad_files``.

The files themselves are read by ``avjax.data.io`` (``audio.read_wav``,
``image.load_image``, ``text.read_json`` ...), which records how.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from avjax.data.io.errors import BadFileError

# An expected entry of a layout: a relative path (a trailing "/" marks a
# directory) or a tuple of alternative relative paths, any one of which will do.
Expected = str | tuple[str, ...]


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
