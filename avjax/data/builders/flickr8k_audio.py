"""Flickr8k Audio Captions (Harwath & Glass 2015): speech ↔ image pairs for CMD.

Published layout, as distributed (``flickr_audio.tar.gz`` from MIT SLS, the
Flickr8k image and text zips) and as read by public code — verified against
atosystem/SpeechCLIP ``avssl/data/flickr_dataset.py`` (``flickr_audio/wavs``,
``Flickr_8k.{split}Images.txt``), zerospeech/platalea-style loaders
(``flickr_audio/wav2capt.txt`` parsed as ``wav image #k``) and image-captioning
code using ``Flicker8k_Dataset/`` (sic) and ``Flickr8k_text/``::

    <manual_dir>/
      flickr_audio/wav2capt.txt        "<wav name> <image name> #<caption 0-4>"
      flickr_audio/wavs/<wav name>     16 kHz mono wavs, e.g. 1000268201_693b08cb0e_0.wav
      Flicker8k_Dataset/<image name>   (or Flickr8k_Dataset/Flicker8k_Dataset/)
      Flickr_8k.trainImages.txt        6,000 image names (or under Flickr8k_text/)
      Flickr_8k.devImages.txt          1,000
      Flickr_8k.testImages.txt         1,000

Splits: train / validation / test = the official train / dev / test image
lists; every spoken caption of an image follows its image (no image or
recording is shared between splits).

Ids: ``image_id`` = index of the image in the sorted union of the three split
lists; ``clip_id`` = 0-based index of the caption's line among the non-empty
lines of ``wav2capt.txt``. Both are independent of skipping and of splits.
Captions of images in no split list are left out (logged as info).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from avjax.data.builders import manual
from avjax.data.builders import spoken_captions
from avjax.data.io import text as text_io

SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "validation": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
WAV2CAPT = "flickr_audio/wav2capt.txt"
WAV_DIR = "flickr_audio/wavs/"
IMAGE_DIRS = ("Flicker8k_Dataset/", "Flickr8k_Dataset/Flicker8k_Dataset/")

INSTRUCTIONS = """\
1. Spoken captions: download flickr_audio.tar.gz from
   https://groups.csail.mit.edu/sls/downloads/flickraudio/ and extract it into
   <manual_dir> (gives flickr_audio/wav2capt.txt and flickr_audio/wavs/).
2. Images and split lists: Flickr8k_Dataset.zip and Flickr8k_text.zip (the
   original Flickr8k release, e.g. mirrored at
   https://github.com/jbrownlee/Datasets/releases/tag/Flickr8k); extract into
   <manual_dir>.

Expected layout:
  <manual_dir>/flickr_audio/wav2capt.txt
  <manual_dir>/flickr_audio/wavs/*.wav
  <manual_dir>/Flicker8k_Dataset/*.jpg      (or Flickr8k_Dataset/Flicker8k_Dataset/)
  <manual_dir>/Flickr_8k.trainImages.txt    (each list may also sit in Flickr8k_text/)
  <manual_dir>/Flickr_8k.devImages.txt
  <manual_dir>/Flickr_8k.testImages.txt
"""


def parse_wav2capt(path: Path) -> list[tuple[str, str, int]]:
  """Parses wav2capt.txt into (wav name, image name, caption index) rows.

  Raises:
    ValueError: a file that is not UTF-8 or holds no caption, a malformed
      line (names file and line number) or a wav listed twice.
  """
  rows: list[tuple[str, str, int]] = []
  for lineno, line in enumerate(text_io.read_lines(path), start=1):
    if not line.strip():
      continue
    parts = line.split()
    if (
        len(parts) != 3
        or not parts[2].startswith("#")
        or not parts[2][1:].isdigit()
    ):
      raise ValueError(
          f"{path}:{lineno}: expected '<wav> <image> "
          f"#<caption index>', got {line.strip()!r}"
      )
    rows.append((parts[0], parts[1], int(parts[2][1:])))
  if not rows:
    raise ValueError(
        f"{path}: no caption line (empty file?); expected "
        "'<wav> <image> #<caption index>' per line"
    )
  manual.check_unique((r[0] for r in rows), "wav names", path)
  return rows


def read_image_list(path: Path) -> list[str]:
  """Image names of a Flickr_8k.*Images.txt file, in file order, deduplicated.

  Raises:
    ValueError: naming the file when it is not UTF-8 or lists no image.
  """
  names = [line.strip() for line in text_io.read_lines(path) if line.strip()]
  if not names:
    raise ValueError(f"{path} lists no image (empty file?)")
  return list(dict.fromkeys(names))


def build_groups(
    wav2capt: Path,
    wav_dir: Path,
    image_dir: Path,
    split_lists: dict[str, list[str]],
    list_files: dict[str, Path] | None = None,
) -> dict[str, list[spoken_captions.ImageGroup]]:
  """Groups the captions of wav2capt.txt by image, per split.

  Raises:
    ValueError: a split none of whose listed images has a caption in
      wav2capt.txt (naming both files; tfds would only say that no
      example was yielded).
  """
  owner = manual.invert_listing(split_lists, "Flickr8k split lists")
  image_ids = {name: i for i, name in enumerate(sorted(owner))}
  by_image: dict[str, list[tuple[int, spoken_captions.Caption]]] = defaultdict(
      list
  )
  unlisted = 0
  rows = parse_wav2capt(wav2capt)
  for clip_id, (wav, image, index) in enumerate(rows):
    if image not in owner:
      unlisted += 1
      continue
    by_image[image].append(
        (index, spoken_captions.Caption(clip_id, wav_dir / wav, wav))
    )
  if unlisted:
    logging.info(
        "flickr8k_audio: %d caption(s) of %s name images in no split "
        "list; left out",
        unlisted,
        wav2capt,
    )
  groups: dict[str, list[spoken_captions.ImageGroup]] = {}
  for split, names in split_lists.items():
    groups[split] = [
        spoken_captions.ImageGroup(
            image_ids[name],
            image_dir / name,
            name,
            tuple(cap for _, cap in sorted(by_image[name], key=lambda x: x[0])),
        )
        for name in names
        if by_image.get(name)
    ]
    without = sum(1 for name in names if not by_image.get(name))
    if not groups[split]:
      listed = (list_files or {}).get(split, f"the {split} list")
      raise ValueError(
          f"flickr8k_audio/{split}: none of its {len(names)} image(s) "
          f"listed in {listed} has a spoken caption in {wav2capt} "
          f"(it lists e.g. {names[0]!r}; wav2capt.txt names images "
          f"like {rows[0][1]!r})"
      )
    if without:
      logging.info(
          "flickr8k_audio/%s: %d listed image(s) have no spoken "
          "caption in %s",
          split,
          without,
          wav2capt,
      )
  return groups


class Flickr8kAudio(
    spoken_captions.SpokenCaptionExamples, manual.ManualDownloadBuilder
):
  """Flickr8k Audio Captions: one example per spoken caption (40,000)."""

  name = "flickr8k_audio"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "Reads the published Flickr8k Audio layout.",
      "2.0.0": "Each image stored once, JPEG-encoded, in an image table "
      "per split; records reference it by image_id.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  BUILDER_CONFIG_CLASS = spoken_captions.SpokenCaptionConfig
  BUILDER_CONFIGS = [
      spoken_captions.SpokenCaptionConfig(
          name="img224", image_size=224, description="Images 224×224."
      ),
      spoken_captions.SpokenCaptionConfig(
          name="img64", image_size=64, description="Images 64×64 (fast runs)."
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=spoken_captions.features(self.builder_config.image_size),
        homepage="https://groups.csail.mit.edu/sls/downloads/flickraudio/",
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
    expected: list[manual.Expected] = [WAV2CAPT, WAV_DIR, IMAGE_DIRS]
    expected += [
        (name, f"Flickr8k_text/{name}") for name in SPLIT_FILES.values()
    ]
    found = self._find_manual(dl_manager, expected)
    split_lists = {
        split: read_image_list(found[name])
        for split, name in SPLIT_FILES.items()
    }
    groups = build_groups(
        found[WAV2CAPT],
        found[WAV_DIR.rstrip("/")],
        found[IMAGE_DIRS[0].rstrip("/")],
        split_lists,
        {split: found[name] for split, name in SPLIT_FILES.items()},
    )
    size = self.builder_config.image_size
    return {
        split: self._generate_examples(groups[split], size, split)
        for split in SPLIT_FILES
    }
