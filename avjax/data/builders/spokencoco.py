"""SpokenCOCO (Hsu et al. 2021): spoken MSCOCO captions ↔ images, for CMD.

Published layout of ``SpokenCOCO.tar.gz`` (https://data.csail.mit.edu/placesaudio/),
verified against jasonppy/FaST-VGS-Family (README download steps,
``datasets/preprocessing/unroll_coco.py``: ``{"data": [{"image", "captions"}]}``)
and atosystem/SpeechCLIP ``avssl/data/coco_dataset.py``
(``<root>/SpokenCOCO/SpokenCOCO_{train,val}.json``, wavs under
``<root>/SpokenCOCO/`` + ``caption["wav"]``, images under an image root +
``entry["image"]``)::

    <manual_dir>/SpokenCOCO/SpokenCOCO_train.json
    <manual_dir>/SpokenCOCO/SpokenCOCO_val.json
        {"data": [{"image": "val2014/COCO_val2014_000000325114.jpg",
                   "captions": [{"text": ..., "speaker": ..., "uttid": ...,
                                 "wav": "wavs/val/0/<name>.wav"}, ...]}, ...]}
    <manual_dir>/SpokenCOCO/wavs/...              (16 kHz wavs)
    <image root>/train2014/*.jpg, <image root>/val2014/*.jpg   (MSCOCO 2014)

Image root: the ``image_root`` builder argument if given; else
``<manual_dir>/mscoco_img`` when it exists (SpeechCLIP's layout); else
``<manual_dir>`` itself.

Splits (config ``split_protocol``):

* "original" (configs ``img224``, ``img64``): train = SpokenCOCO_train.json
  (MSCOCO train2014 images), validation = SpokenCOCO_val.json (val2014).
* "karpathy" (configs ``karpathy_img224``, ``karpathy_img64``): the Karpathy
  split used for retrieval results (FaST-VGS, SpeechCLIP): needs Karpathy's
  ``dataset_coco.json`` (from ``caption_datasets.zip``) in ``<manual_dir>``;
  train = its "train" + "restval" images, validation = "val" (5k images),
  test = "test" (5k images). SpokenCOCO captions of images absent from that
  file are left out (logged as info).

Ids: ``image_id`` = the MSCOCO image id (the number in the file name);
``clip_id`` = running index of the caption over SpokenCOCO_train.json then
SpokenCOCO_val.json, in file order (the same under both protocols).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from avjax.data.builders import manual
from avjax.data.builders import spoken_captions
from avjax.data.io import text as text_io

JSON_FILES = {
    "train": "SpokenCOCO/SpokenCOCO_train.json",
    "val": "SpokenCOCO/SpokenCOCO_val.json",
}
WAV_ROOT = "SpokenCOCO"
KARPATHY_FILE = "dataset_coco.json"
KARPATHY_SPLITS = {
    "train": "train",
    "restval": "train",
    "val": "validation",
    "test": "test",
}
IMAGE_SUBDIRS = ("train2014/", "val2014/")
_COCO_ID = re.compile(r"(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)

INSTRUCTIONS = """\
1. Spoken captions: download https://data.csail.mit.edu/placesaudio/SpokenCOCO.tar.gz
   and extract it into <manual_dir> (gives <manual_dir>/SpokenCOCO/).
2. Images: MSCOCO 2014 train and val images
   (http://images.cocodataset.org/zips/train2014.zip, .../val2014.zip),
   extracted into <manual_dir> (or <manual_dir>/mscoco_img, or any directory
   passed as the builder argument image_root).
3. Only for the karpathy_* configs: Karpathy's dataset_coco.json (from
   caption_datasets.zip, https://cs.stanford.edu/people/karpathy/deepimagesent/)
   at <manual_dir>/dataset_coco.json.

Expected layout:
  <manual_dir>/SpokenCOCO/SpokenCOCO_train.json
  <manual_dir>/SpokenCOCO/SpokenCOCO_val.json
  <manual_dir>/SpokenCOCO/wavs/...
  <image root>/train2014/*.jpg
  <image root>/val2014/*.jpg
  <manual_dir>/dataset_coco.json            (karpathy_* configs only)
"""


def coco_image_id(image: str, source: str) -> int:
  """The MSCOCO id in an image path ("val2014/COCO_val2014_000000391895.jpg")."""
  match = _COCO_ID.search(os.path.basename(image))
  if match is None:
    raise ValueError(f"{source}: image path {image!r} carries no MSCOCO id")
  return int(match.group(1))


def parse_spokencoco_json(path: Path) -> list[tuple[str, list[str]]]:
  """Reads a SpokenCOCO json into (image path, [wav paths]) per entry.

  Raises:
    ValueError: a file that is not UTF-8 or not valid json (names file and
      line), a missing key (names file, entry and key), or no caption.
  """
  doc = text_io.read_json(path)
  if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
    raise ValueError(f"{path}: expected an object with a 'data' list")
  entries: list[tuple[str, list[str]]] = []
  for i, entry in enumerate(doc["data"]):
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
      raise ValueError(f"{path}: data[{i}] lacks the string key 'image'")
    captions = entry.get("captions")
    if not isinstance(captions, list):
      raise ValueError(f"{path}: data[{i}] lacks the list key 'captions'")
    wavs = []
    for j, cap in enumerate(captions):
      if not isinstance(cap, dict) or not isinstance(cap.get("wav"), str):
        raise ValueError(
            f"{path}: data[{i}].captions[{j}] lacks the " "string key 'wav'"
        )
      wavs.append(cap["wav"])
    entries.append((entry["image"], wavs))
  if not any(wavs for _, wavs in entries):
    raise ValueError(
        f"{path}: no caption in its {len(entries)} 'data' "
        "entries (an empty or cut-down file?)"
    )
  return entries


def read_karpathy_splits(path: Path) -> dict[str, str]:
  """Maps image file name → train/validation/test from dataset_coco.json.

  Raises:
    ValueError: a file that is not UTF-8, not valid json (a truncated
      download) or not in Karpathy's schema, naming it (and the line or
      entry).
  """
  doc = text_io.read_json(path)
  images = doc.get("images") if isinstance(doc, dict) else None
  if not isinstance(images, list):
    raise ValueError(f"{path}: expected an object with an 'images' list")
  out: dict[str, str] = {}
  for i, img in enumerate(images):
    if not isinstance(img, dict):
      raise ValueError(f"{path}: images[{i}] is not an object")
    name, split = img.get("filename"), img.get("split")
    if not isinstance(name, str) or split not in KARPATHY_SPLITS:
      raise ValueError(
          f"{path}: images[{i}] needs 'filename' and a 'split' "
          f"in {sorted(KARPATHY_SPLITS)}, got {name!r}, {split!r}"
      )
    out[name] = KARPATHY_SPLITS[split]
  return out


def build_groups(
    json_paths: dict[str, Path],
    wav_root: Path,
    image_root: Path,
    karpathy: dict[str, str] | None,
    karpathy_file: Path | str = KARPATHY_FILE,
) -> dict[str, list[spoken_captions.ImageGroup]]:
  """Groups SpokenCOCO captions by image into the protocol's splits.

  Raises:
    ValueError: a Karpathy split none of whose images has a SpokenCOCO
      caption (naming ``karpathy_file`` and the json files; tfds would
      only say that no example was yielded).
  """
  splits: dict[str, list[spoken_captions.ImageGroup]] = (
      {"train": [], "validation": []}
      if karpathy is None
      else {"train": [], "validation": [], "test": []}
  )
  clip_id = 0
  left_out = 0
  for file_split in ("train", "val"):
    path = json_paths[file_split]
    for image, wavs in parse_spokencoco_json(path):
      captions = tuple(
          spoken_captions.Caption(clip_id + k, wav_root / w, w)
          for k, w in enumerate(wavs)
      )
      clip_id += len(wavs)
      if karpathy is None:
        split = "train" if file_split == "train" else "validation"
      else:
        split = karpathy.get(os.path.basename(image))
        if split is None:
          left_out += len(wavs)
          continue
      if captions:
        splits[split].append(
            spoken_captions.ImageGroup(
                coco_image_id(image, str(path)),
                image_root / image,
                image,
                captions,
            )
        )
  if left_out:
    logging.info(
        "spokencoco: %d caption(s) of images absent from %s left out",
        left_out,
        KARPATHY_FILE,
    )
  for split, groups in splits.items():
    if groups or karpathy is None:
      continue
    names = sorted(n for n, s in karpathy.items() if s == split)
    raise ValueError(
        f"spokencoco/{split}: {karpathy_file} puts {len(names)} image(s) "
        f"in this split, but no SpokenCOCO caption in "
        f"{json_paths['train']} or {json_paths['val']} is of one of them"
        + (f" (e.g. {names[0]!r})" if names else "")
    )
  return splits


class Spokencoco(
    spoken_captions.SpokenCaptionExamples, manual.ManualDownloadBuilder
):
  """SpokenCOCO: one example per spoken caption.

  Args:
    image_root: directory holding train2014/ and val2014/ (default: see the
      module docstring).
    skip_bad_files, **kwargs: see ``manual.ManualDownloadBuilder``.
  """

  name = "spokencoco"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "Reads the published SpokenCOCO layout.",
      "2.0.0": "Each image stored once, JPEG-encoded, in an image table "
      "per split; records reference it by image_id.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  BUILDER_CONFIG_CLASS = spoken_captions.SpokenCaptionConfig
  BUILDER_CONFIGS = [
      spoken_captions.SpokenCaptionConfig(
          name=f"{prefix}img{size}",
          image_size=size,
          split_protocol=protocol,
          description=f"Images {size}×{size}, {protocol} splits.",
      )
      for protocol, prefix in (("original", ""), ("karpathy", "karpathy_"))
      for size in (224, 64)
  ]

  def __init__(
      self, *, image_root: os.PathLike | str | None = None, **kwargs: Any
  ):
    self.image_root = None if image_root is None else Path(image_root)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=spoken_captions.features(self.builder_config.image_size),
        homepage="https://arxiv.org/abs/2012.15454",
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
    manual_dir = manual.manual_dir_of(dl_manager)
    karpathy = self.builder_config.split_protocol == "karpathy"
    expected: list[manual.Expected] = list(JSON_FILES.values()) + [
        f"{WAV_ROOT}/wavs/"
    ]
    if karpathy:
      expected.append(KARPATHY_FILE)
    image_prefix = ""
    if self.image_root is None:
      image_prefix = (
          "mscoco_img/" if (manual_dir / "mscoco_img").is_dir() else ""
      )
      expected += [image_prefix + sub for sub in IMAGE_SUBDIRS]
    found = self._find_manual(dl_manager, expected)
    if self.image_root is None:
      image_root = manual_dir / image_prefix
    else:
      image_root = self.image_root
      manual.find_expected(
          image_root,
          IMAGE_SUBDIRS,
          dataset=self.name,
          instructions=INSTRUCTIONS,
      )
    groups = build_groups(
        {k: found[v] for k, v in JSON_FILES.items()},
        manual_dir / WAV_ROOT,
        image_root,
        read_karpathy_splits(found[KARPATHY_FILE]) if karpathy else None,
        found.get(KARPATHY_FILE, KARPATHY_FILE),
    )
    size = self.builder_config.image_size
    return {
        split: self._generate_examples(g, size, split)
        for split, g in groups.items()
    }
