"""tfds builders `vggsound_sparse` and `lrs3`: real videos for Synchformer.

Both read the user's download (mp4 files and the published lists), decode
every clip with PyAV (``avjax.data.io.video``, the ``[video]`` extra) resampled
to ``FPS`` frames per second, ``FRAME_SIZE``² RGB frames and ``SAMPLE_RATE``
Hz mono audio, and store records in the layout of ``avjax.data.pipeline.sync``
(``video`` uint8 [T, H, W, 3], ``audio`` int16 [N], ``audio_lead`` = 0: the
audio starts with the first frame). A missing list file stops generation
with one error naming the directory and every missing file; a missing,
corrupt or truncated mp4 is an error naming it, or, with
``skip_bad_files=True``, skipped and counted in one warning per split.

Layouts (as published by the VGGSound, VGGSound-Sparse and LRS3 releases and
read by v-iashin/Synchformer)::

  vggsound_sparse/                      (--config.data.manual_dir)
    vggsound.csv                        "<youtube id>,<start s>,<label>,
                                         <train|test>" (no header)
    vggsound_sparse_clean.csv           dataset_name,video_id,start_sec,
                                        vid_is_missing,is_sync,
                                        is_sync_by_cls_obj
    vggsound_sparse_clean_fixed_offsets.csv
                                        dataset_name,video_id,vstart_sec,
                                        offset_sec,is_sync
    video/<youtube id>_<start ms>_<start ms + 10000>.mp4

  lrs3/
    trainval/<speaker>/<utterance>.mp4  (+ .txt transcripts, not read)
    test/<speaker>/<utterance>.mp4

Splits:
  * `vggsound_sparse`: test = the VGGSound-Sparse clean clips (present and
    ``is_sync``), with the published fixed crop start and offset; train =
    VGGSound's train rows, validation = VGGSound's test rows that are not in
    VGGSound-Sparse (the paper trains on VGGSound and tests on the sparse
    subset).
  * `lrs3`: train = trainval speakers except every 20th (sorted), which are
    validation; test = test.

Fixed evaluation draws where nothing is published (train, validation, all
of `lrs3`): ``eval_offsets`` / ``eval_starts`` are drawn from a generator
seeded by the clip name (CRC-32), so they do not depend on the order or the
set of clips. Decision: the published ``offset_sec`` is read in the
convention of ``sync_pipeline`` (audio taken ``offset_sec`` later than the
video) and snapped to the nearest of the 21 classes; the official code's
sign convention was not checked against a decoded clip.
"""

from __future__ import annotations

import abc
import csv
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from avjax.data.builders import manual
from avjax.data.io import video as video_lib

FPS = 25.0
SAMPLE_RATE = 16000
FRAME_SIZE = 64
NUM_EVAL_DRAWS = 3
NUM_OFFSETS = 21
MAX_OFFSET = 2.0
# eval_starts are drawn in [0, MAX_EVAL_START] frames and clipped to each
# clip's valid range by the pipeline.
MAX_EVAL_START = 125

VGGSOUND_CSV = "vggsound.csv"
SPARSE_CSV = "vggsound_sparse_clean.csv"
SPARSE_OFFSETS_CSV = "vggsound_sparse_clean_fixed_offsets.csv"
VIDEO_DIR = "video/"


def _features() -> tfds.features.FeaturesDict:
  scalar = lambda doc: tfds.features.Scalar(dtype=np.int32, doc=doc)
  return tfds.features.FeaturesDict(
      {
          "video": tfds.features.Tensor(
              shape=(None, FRAME_SIZE, FRAME_SIZE, 3),
              dtype=np.uint8,
              encoding=tfds.features.Encoding.ZLIB,
              doc=f"RGB frames at {FPS:g} fps.",
          ),
          "audio": tfds.features.Tensor(
              shape=(None,),
              dtype=np.int16,
              encoding=tfds.features.Encoding.ZLIB,
              doc=f"Mono {SAMPLE_RATE} Hz audio from the first frame on.",
          ),
          "audio_lead": scalar("Audio samples before frame 0 (always 0)."),
          "event_frames": tfds.features.Tensor(
              shape=(1,), dtype=np.int32, doc="No event annotation: -10000."
          ),
          "num_events": scalar("0: real clips have no event annotation."),
          "eval_offsets": tfds.features.Tensor(
              shape=(None,),
              dtype=np.int32,
              doc="Fixed offset classes (0..20) for evaluation.",
          ),
          "eval_starts": tfds.features.Tensor(
              shape=(None,),
              dtype=np.int32,
              doc="Fixed crop start frames for evaluation.",
          ),
          "clip_name": tfds.features.Text(doc="The mp4's name without suffix."),
      }
  )


def offset_class(offset_seconds: float) -> int:
  """Nearest of the 21 classes over ±2 s (0.2 s apart)."""
  step = 2 * MAX_OFFSET / (NUM_OFFSETS - 1)
  return int(
      np.clip(round((offset_seconds + MAX_OFFSET) / step), 0, NUM_OFFSETS - 1)
  )


def name_draws(name: str) -> dict[str, np.ndarray]:
  """Fixed evaluation draws seeded by the clip name."""
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  return {
      "eval_offsets": rng.integers(0, NUM_OFFSETS, NUM_EVAL_DRAWS).astype(
          np.int32
      ),
      "eval_starts": rng.integers(0, MAX_EVAL_START + 1, NUM_EVAL_DRAWS).astype(
          np.int32
      ),
  }


def decode_clip(
    path: Path, name: str, draws: dict[str, np.ndarray]
) -> dict[str, Any]:
  """One record from an mp4 (raises manual.BadFileError naming it)."""
  try:
    clip = video_lib.read_video(
        path,
        fps=FPS,
        frame_size=(FRAME_SIZE, FRAME_SIZE),
        sample_rate=SAMPLE_RATE,
        need_audio=True,
    )
  except video_lib.VideoDecodeError as e:
    raise manual.BadFileError(path, e.reason) from e
  audio = np.clip(np.round(clip.audio * 32767.0), -32768, 32767)
  return {
      "video": clip.frames,
      "audio": audio.astype(np.int16),
      "audio_lead": np.int32(0),
      "event_frames": np.full((1,), -10000, np.int32),
      "num_events": np.int32(0),
      **draws,
      "clip_name": name,
  }


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
  """Rows of a CSV with a header holding ``columns`` (error names the file)."""
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
      raise ValueError(
          f"{path}: missing column(s) {missing}; header is "
          f"{reader.fieldnames}"
      )
    return list(reader)


def read_vggsound_csv(path: Path) -> list[tuple[str, int, str]]:
  """(youtube id, start second, split) rows of VGGSound's headerless CSV."""
  rows = []
  with open(path, newline="", encoding="utf-8") as f:
    for lineno, row in enumerate(csv.reader(f), start=1):
      if not row:
        continue
      if (
          len(row) < 4
          or not row[1].strip().isdigit()
          or row[3].strip() not in ("train", "test")
      ):
        raise ValueError(
            f"{path}:{lineno}: expected '<youtube id>,<start s>,"
            f"<label>,<train|test>', got {row}"
        )
      rows.append((row[0].strip(), int(row[1]), row[3].strip()))
  return rows


def vggsound_clip_name(youtube_id: str, start_s: int) -> str:
  return f"{youtube_id}_{start_s * 1000}_{(start_s + 10) * 1000}"


class _SyncVideoBuilder(manual.ManualDownloadBuilder, skip_registration=True):
  """Decodes listed mp4s into sync records; subclasses list the clips."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=_features(), disable_shuffling=True
    )

  @abc.abstractmethod
  def _clips(self, dl_manager) -> dict[str, list[tuple[str, Path, dict]]]:
    """``{split: [(clip name, mp4 path, annotations)]}``.

    ``VggsoundSparse`` and ``Lrs3`` read their published lists here.
    """

  def _split_generators(self, dl_manager):
    clips = self._clips(dl_manager)
    return {
        split: self._generate_examples(split, items)
        for split, items in clips.items()
    }

  def _generate_examples(
      self, split: str, items: list[tuple[str, Path, dict]]
  ) -> Iterator[tuple[str, dict[str, Any]]]:
    log = self._bad_file_log(split)
    kept = 0
    for name, path, draws in items:
      try:
        record = decode_clip(path, name, draws)
      except manual.BadFileError as err:
        log.handle(err)
        continue
      kept += 1
      yield name, record
    log.report(kept)


class VggsoundSparse(_SyncVideoBuilder):
  """VGGSound (train / validation) and VGGSound-Sparse (test) clips."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the VGGSound clips (https://www.robots.ox.ac.uk/~vgg/data/vggsound/,
10 s each) as video/<youtube id>_<start ms>_<start ms + 10000>.mp4, its list
{VGGSOUND_CSV}, and the VGGSound-Sparse lists {SPARSE_CSV} and
{SPARSE_OFFSETS_CSV} (github.com/v-iashin/Synchformer, data/) into
<manual_dir>.
"""

  def _clips(self, dl_manager):
    found = self._find_manual(
        dl_manager, (VGGSOUND_CSV, SPARSE_CSV, SPARSE_OFFSETS_CSV, VIDEO_DIR)
    )
    video_dir = found["video"]
    sparse = _read_csv(
        found[SPARSE_CSV],
        ("video_id", "start_sec", "vid_is_missing", "is_sync"),
    )
    fixed = {
        row["video_id"]: row
        for row in _read_csv(
            found[SPARSE_OFFSETS_CSV], ("video_id", "vstart_sec", "offset_sec")
        )
    }
    test, sparse_names = [], set()
    for row in sparse:
      name = vggsound_clip_name(row["video_id"], int(row["start_sec"]))
      sparse_names.add(name)
      if row["vid_is_missing"] == "1" or row["is_sync"] != "1":
        continue
      if name not in fixed:
        raise ValueError(
            f"{found[SPARSE_OFFSETS_CSV]}: no fixed offset for "
            f"{name} listed in {found[SPARSE_CSV]}"
        )
      start = int(round(float(fixed[name]["vstart_sec"]) * FPS))
      draws = {
          "eval_offsets": np.array(
              [offset_class(float(fixed[name]["offset_sec"]))], np.int32
          ),
          "eval_starts": np.array([start], np.int32),
      }
      test.append((name, video_dir / f"{name}.mp4", draws))
    train, validation = [], []
    for youtube_id, start_s, split in read_vggsound_csv(found[VGGSOUND_CSV]):
      name = vggsound_clip_name(youtube_id, start_s)
      if name in sparse_names:
        continue
      item = (name, video_dir / f"{name}.mp4", name_draws(name))
      (train if split == "train" else validation).append(item)
    logging.info(
        "vggsound_sparse: %d train, %d validation, %d test clips " "listed",
        len(train),
        len(validation),
        len(test),
    )
    return {"train": train, "validation": validation, "test": test}


class Lrs3(_SyncVideoBuilder):
  """LRS3 talking-head clips."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download LRS3 (https://www.robots.ox.ac.uk/~vgg/data/lip_reading/lrs3.html)
and extract trainval/ and test/ into <manual_dir> (each
<speaker>/<utterance>.mp4).
"""
  VALIDATION_EVERY = 20

  def _clips(self, dl_manager):
    found = self._find_manual(dl_manager, ("trainval/", "test/"))

    def listing(root: Path, speakers: list[str]):
      return [
          (f"{s}/{p.stem}", p, name_draws(f"{s}/{p.stem}"))
          for s in speakers
          for p in sorted((root / s).glob("*.mp4"))
      ]

    trainval = sorted(p.name for p in found["trainval"].iterdir() if p.is_dir())
    test = sorted(p.name for p in found["test"].iterdir() if p.is_dir())
    val_speakers = trainval[:: self.VALIDATION_EVERY]
    train_speakers = [s for s in trainval if s not in set(val_speakers)]
    return {
        "train": listing(found["trainval"], train_speakers),
        "validation": listing(found["trainval"], val_speakers),
        "test": listing(found["test"], test),
    }
