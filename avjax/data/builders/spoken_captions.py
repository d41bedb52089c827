"""What the spoken-caption builders (Flickr8k Audio, SpokenCOCO) share.

Both datasets pair images with several spoken captions each. A builder parses
its own index files into :class:`ImageGroup` s (one image + its captions);
this module turns groups into examples, one per spoken caption:

* "audio": int16 [T] at 16 kHz (mono; resampled when the wav's rate differs)
* "audio_length": int32, T
* "image_id": int32, stable id of the image within the dataset
* "clip_id": int32, stable id of the spoken caption within the dataset
* "image_file", "wav_file": text, the file names as written in the dataset's
  index (read back through ``as_data_source`` as ``bytes``)

Images are stored once per image, not once per caption: each image is
decoded, resized / cropped to S × S (``image_io.load_image``) and JPEG-encoded
(quality ``JPEG_QUALITY``) into an image table of its split next to the
tfds files (``<dataset dir>/images/<split>.{jpg,index.npy}``: the encoded
images back to back, and [N, 3] int64 rows of image_id, byte offset, byte
length). Measured on fixture trees of 224 × 224 crops of real photos
(sklearn's two sample images, 20 images × 5 captions, JPEG quality 90):
the decoded image in every caption's record took 135,663 bytes
per caption (150,528 raw, less array_record's compression); the table takes
about 17,100 bytes per image. Extrapolated at 224 px: Flickr8k (8,000
images, 40,000 captions) 5.4 GB → 0.14 GB of images; SpokenCOCO (123,287
images, 605,495 captions) 82 GB → 2.2 GB (busier photos than the samples
encode larger). ``with_images`` (applied by
``sources.load_source`` through the builders' ``wrap_data_source``) adds
the decoded "image" uint8 [S, S, 3] to every record, so readers see one
self-contained example per caption.

A bad image skips (with ``skip_bad_files``) all of its captions; a bad wav
skips one caption; both are counted per split by ``manual.BadFileLog``.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from avjax.data.builders import manual
from avjax.data.io import audio as audio_io
from avjax.data.io import image as image_io

SAMPLE_RATE = 16000


@dataclasses.dataclass
class SpokenCaptionConfig(tfds.core.BuilderConfig):
  """Config of a spoken-caption dataset.

  Attributes:
    image_size: side S of the stored square RGB images.
    split_protocol: which image split lists define train/validation/test
      (dataset specific, see the builder).
  """

  image_size: int = 224
  split_protocol: str = "original"


@dataclasses.dataclass(frozen=True)
class Caption:
  """One spoken caption: its stable id, wav path and wav name as indexed."""

  clip_id: int
  wav_path: Path
  wav_name: str


@dataclasses.dataclass(frozen=True)
class ImageGroup:
  """One image (stable id, path, name as indexed) with its captions."""

  image_id: int
  image_path: Path
  image_name: str
  captions: tuple[Caption, ...]


JPEG_QUALITY = 90
IMAGE_DIR = "images"


def features(image_size: int) -> tfds.features.FeaturesDict:
  """The record spec shared by the spoken-caption builders (images are in
  the image table; ``image_size`` is the side S stored there)."""
  del image_size  # Recorded in the builder config; images are not records.
  return tfds.features.FeaturesDict(
      {
          "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
          "audio_length": tfds.features.Scalar(dtype=np.int32),
          "image_id": tfds.features.Scalar(dtype=np.int32),
          "clip_id": tfds.features.Scalar(dtype=np.int32),
          "image_file": tfds.features.Text(),
          "wav_file": tfds.features.Text(),
      }
  )


def _table_paths(directory: os.PathLike | str, split: str) -> tuple[Path, Path]:
  base = Path(directory) / IMAGE_DIR
  return base / f"{split}.jpg", base / f"{split}.index.npy"


class ImageTableWriter:
  """Writes the encoded images of one split (see the module docstring).

  Args:
    directory: the dataset's prepared directory (``builder.data_dir``).
    split: split name; the table is ``images/<split>.{jpg,index.npy}``.
  """

  def __init__(self, directory: os.PathLike | str, split: str):
    self.data_path, self.index_path = _table_paths(directory, split)
    self.data_path.parent.mkdir(parents=True, exist_ok=True)
    self._file = open(self.data_path, "wb")
    self._rows: list[tuple[int, int, int]] = []
    self._ids: set[int] = set()

  def add(self, image_id: int, image: np.ndarray) -> None:
    """Appends uint8 [S, S, 3] ``image`` under ``image_id`` (once)."""
    if image_id in self._ids:
      raise ValueError(f"{self.data_path}: image_id {image_id} added " "twice")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    data = buffer.getvalue()
    self._rows.append((image_id, self._file.tell(), len(data)))
    self._ids.add(image_id)
    self._file.write(data)

  def close(self) -> None:
    """Flushes the images and writes the index (tfds moves both into
    place with the rest of the prepared dataset)."""
    self._file.close()
    rows = np.asarray(self._rows, np.int64).reshape(-1, 3)
    np.save(self.index_path, rows)


class ImageTable:
  """Random access to a split's stored images by image_id.

  Raises (on construction):
    FileNotFoundError: naming the missing table file (a dataset prepared
      by an older avjax version: delete its directory to rebuild it).
  """

  def __init__(self, directory: os.PathLike | str, split: str, image_size: int):
    self.data_path, self.index_path = _table_paths(directory, split)
    for path in (self.data_path, self.index_path):
      if not path.is_file():
        raise FileNotFoundError(
            f"image table file {path} is missing; the prepared dataset "
            f"in {directory} is incomplete or from an older avjax "
            "version: delete that directory to prepare it again"
        )
    rows = np.load(self.index_path)
    self._where = {int(i): (int(o), int(n)) for i, o, n in rows}
    self._data = (
        np.memmap(self.data_path, np.uint8, mode="r")
        if self.data_path.stat().st_size
        else np.zeros(0, np.uint8)
    )
    self.image_size = image_size

  def __len__(self) -> int:
    return len(self._where)

  def __getitem__(self, image_id: int) -> np.ndarray:
    """The decoded image: uint8 [S, S, 3]."""
    try:
      offset, length = self._where[int(image_id)]
    except KeyError:
      raise KeyError(f"{self.index_path}: no image_id {image_id}") from None
    with Image.open(io.BytesIO(self._data[offset : offset + length])) as img:
      image = np.asarray(img.convert("RGB"))
    size = self.image_size
    if image.shape != (size, size, 3):
      raise ValueError(
          f"{self.data_path}: image_id {image_id} has shape "
          f"{image.shape}, expected {(size, size, 3)}"
      )
    return image


class with_images:  # pylint: disable=invalid-name
  """A data source view whose records also hold their decoded "image".

  ``len`` and ``[i]`` as ``source``; ``[i]`` adds "image" uint8 [S, S, 3]
  looked up by the record's "image_id" in ``table``.
  """

  def __init__(self, source: Any, table: ImageTable):
    self.source = source
    self.table = table

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = dict(self.source[index])
    record["image"] = self.table[int(record["image_id"])]
    return record

  def __repr__(self) -> str:
    return f"with_images({self.source!r}, {self.table.data_path})"


def wrap_data_source(
    builder: tfds.core.DatasetBuilder, source: Any, split: str
) -> with_images:
  """``source`` of ``split`` (tfds slices allowed) with decoded images."""
  base_split = split.split("[", 1)[0]
  table = ImageTable(
      builder.data_dir, base_split, builder.builder_config.image_size
  )
  return with_images(source, table)


def generate_examples(
    groups: Iterable[ImageGroup],
    image_size: int,
    bad: manual.BadFileLog,
    directory: os.PathLike | str,
    split: str,
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (clip_id, example) for every caption of every group, and
  writes each group's image once to the image table of ``split`` under
  ``directory`` (the builder's data_dir while it is being prepared).

  Raises:
    manual.BadFileError: a missing/unreadable image or wav, unless ``bad``
      skips (then the items are counted and reported at the end).
  """
  kept = 0
  images = ImageTableWriter(directory, split)
  for group in groups:
    try:
      image = image_io.load_image(group.image_path, image_size)
    except manual.BadFileError as err:
      bad.handle(err, n_examples=len(group.captions))
      continue
    stored = False
    for cap in group.captions:
      try:
        audio = audio_io.read_wav(cap.wav_path, SAMPLE_RATE)
      except manual.BadFileError as err:
        bad.handle(err)
        continue
      if not stored:
        images.add(group.image_id, image)
        stored = True
      kept += 1
      yield cap.clip_id, {
          "audio": audio,
          "audio_length": int(audio.shape[0]),
          "image_id": group.image_id,
          "clip_id": cap.clip_id,
          "image_file": group.image_name,
          "wav_file": cap.wav_name,
      }
  images.close()
  bad.report(kept)


class SpokenCaptionExamples:
  """What the spoken-caption builders (Flickr8k Audio, SpokenCOCO) share:
  ``_generate_examples`` over their image groups and ``wrap_data_source``
  adding decoded images. Mix in before ``manual.ManualDownloadBuilder``."""

  def _generate_examples(
      self, groups: list[ImageGroup], image_size: int, split: str
  ) -> Iterator[tuple[int, dict[str, Any]]]:
    return generate_examples(
        groups, image_size, self._bad_file_log(split), self.data_dir, split
    )

  def wrap_data_source(self, source: Any, split: str) -> with_images:
    """Adds each record's decoded "image" (``with_images``)."""
    return wrap_data_source(self, source, split)
