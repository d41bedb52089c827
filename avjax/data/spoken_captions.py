"""What the spoken-caption builders (Flickr8k Audio, SpokenCOCO) share.

Both datasets pair images with several spoken captions each. A builder parses
its own index files into :class:`ImageGroup` s (one image + its captions);
this module turns groups into examples, decoding each image once per group:

* "audio": int16 [T] at 16 kHz (mono; resampled when the wav's rate differs)
* "audio_length": int32, T
* "image": uint8 [S, S, 3] (shorter side resized to S, center crop)
* "image_id": int32, stable id of the image within the dataset
* "clip_id": int32, stable id of the spoken caption within the dataset
* "image_file", "wav_file": text, the file names as written in the dataset's
  index (read back through ``as_data_source`` as ``bytes``)

A bad image skips (with ``skip_bad_files``) all of its captions; a bad wav
skips one caption; both are counted per split by ``manual.BadFileLog``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from avjax.data import manual

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


def features(image_size: int) -> tfds.features.FeaturesDict:
    """The example spec shared by the spoken-caption builders."""
    return tfds.features.FeaturesDict({
        "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
        "audio_length": tfds.features.Scalar(dtype=np.int32),
        "image": tfds.features.Tensor(shape=(image_size, image_size, 3), dtype=np.uint8),
        "image_id": tfds.features.Scalar(dtype=np.int32),
        "clip_id": tfds.features.Scalar(dtype=np.int32),
        "image_file": tfds.features.Text(),
        "wav_file": tfds.features.Text(),
    })


def generate_examples(groups: Iterable[ImageGroup], image_size: int,
                      bad: manual.BadFileLog) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (clip_id, example) for every caption of every group.

    Raises:
      manual.BadFileError: a missing/unreadable image or wav, unless ``bad``
        skips (then the items are counted and reported at the end).
    """
    kept = 0
    for group in groups:
        try:
            image = manual.load_image(group.image_path, image_size)
        except manual.BadFileError as err:
            bad.handle(err, n_examples=len(group.captions))
            continue
        for cap in group.captions:
            try:
                audio = manual.read_wav(cap.wav_path, SAMPLE_RATE)
            except manual.BadFileError as err:
                bad.handle(err)
                continue
            kept += 1
            yield cap.clip_id, {
                "audio": audio,
                "audio_length": int(audio.shape[0]),
                "image": image,
                "image_id": group.image_id,
                "clip_id": cap.clip_id,
                "image_file": group.image_name,
                "wav_file": cap.wav_name,
            }
    bad.report(kept)
