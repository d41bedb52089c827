"""MSR-VTT (Xu et al., CVPR 2016) for MAMA: videos ↔ captions, 9k / 1k-A.

Reads the user's download (``DownloadConfig(manual_dir=...)``) in the
layout the 9k / 1k-A text–video retrieval papers distribute (CLIP4Clip's
``msrvtt_data`` files; the 1k-A test split is JSFusion's, Yu et al. 2018)::

    <manual_dir>/MSRVTT_data.json           (or msrvtt_data/MSRVTT_data.json,
                                             or train_val_videodatainfo.json)
        {"videos": [{"video_id": "video0", ...}, ...],
         "sentences": [{"video_id": "video0", "caption": "...",
                        "sen_id": 0}, ...]}
    <manual_dir>/MSRVTT_train.9k.csv        (column "video_id"; or
                                             train_list_jsfusion.txt)
    <manual_dir>/MSRVTT_JSFUSION_test.csv   (columns key, vid_key, video_id,
                                             sentence; or
                                             val_list_jsfusion.txt)
    <manual_dir>/videos/all/<video_id>.mp4  (or videos/<video_id>.mp4)

The list files may also sit in ``<manual_dir>/msrvtt_data/``.

Splits:
  * ``meta``: ``meta_size`` videos (1,000 by default, Meta-Weight-Net's
    meta-set size; at most a tenth of a shorter list, at least 1) drawn
    with a fixed seed from the 9k training list: MAMA's
    clean meta set. MSR-VTT has no separate clean set; its captions are
    human-written, so the meta set is a held-out part of training data, as
    in Meta-Weight-Net.
  * ``train``: the rest of the 9k list.
  * ``test``: the 1k-A videos, each with its one 1k-A caption (the CSV's
    ``sentence``; with the plain id list, the video's first caption by
    ``sen_id``).

Records: ``frames`` uint8 [T, H, W, 3] (``num_frames`` frames sampled
uniformly over the clip after decoding at ``decode_fps`` with PyAV, see
``avjax.data.io.video``; a clip shorter than T decoded frames repeats frames),
``caption`` (the first caption; the 1k-A one on test), ``paraphrases``
(the video's other captions, one per line; MAMA's ``use_paraphrases``
trains on them too), ``video_id`` (the number in "video123"), ``noisy``
(always 0). The caption tokenizer (``avjax.data.pipeline.tokenizer``) is trained on every
train caption and saved in ``info.metadata["tokenizer"]``.

Bad files: a missing, corrupt or frameless video raises
``avjax.data.io.video.VideoDecodeError`` naming it; a listed video with no
caption, or an empty caption, raises naming the video id.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from avjax.data.builders import manual

ANNOTATIONS = (
    "MSRVTT_data.json",
    "msrvtt_data/MSRVTT_data.json",
    "train_val_videodatainfo.json",
)
TRAIN_LISTS = (
    "MSRVTT_train.9k.csv",
    "msrvtt_data/MSRVTT_train.9k.csv",
    "train_list_jsfusion.txt",
    "msrvtt_data/train_list_jsfusion.txt",
)
TEST_LISTS = (
    "MSRVTT_JSFUSION_test.csv",
    "msrvtt_data/MSRVTT_JSFUSION_test.csv",
    "val_list_jsfusion.txt",
    "msrvtt_data/val_list_jsfusion.txt",
)
VIDEO_DIRS = ("videos/all/", "videos/")
SPLITS = ("train", "meta", "test")
_VIDEO_ID = re.compile(r"^video(\d+)$")
_META_SEED = 13

INSTRUCTIONS = """\
1. Videos: the MSR-VTT clips (MSRVTT.zip of the 1k-A papers, e.g. as
   distributed with CLIP4Clip), extracted so that <manual_dir>/videos/all/
   holds video0.mp4 ... video9999.mp4.
2. Annotations and splits: MSRVTT_data.json, MSRVTT_train.9k.csv and
   MSRVTT_JSFUSION_test.csv (CLIP4Clip's msrvtt_data.zip) in <manual_dir>
   (or <manual_dir>/msrvtt_data/).
"""


@dataclasses.dataclass(eq=False)
class MsrVttConfig(tfds.core.BuilderConfig):
  """Decoding settings of one `msrvtt` config.

  Attributes:
    num_frames: T frames per video.
    frame_size: (H, W) of the frames.
    decode_fps: decoding rate before the uniform sampling.
    meta_size: videos of the 9k list held out as the meta set (at most a
      tenth of the list, at least one).
  """

  num_frames: int = 8
  frame_size: tuple[int, int] = (64, 64)
  decode_fps: float = 4.0
  meta_size: int = 1000


def _video_number(video_id: str, where: str) -> int:
  match = _VIDEO_ID.match(video_id)
  if not match:
    raise ValueError(
        f"{where}: video id {video_id!r} is not of the form " "'video<number>'"
    )
  return int(match.group(1))


def read_id_list(path: Path) -> tuple[list[str], dict[str, str]]:
  """Video ids of a split list, and the 1k-A caption of each when given.

  A ``.csv`` needs a ``video_id`` column (and may have ``sentence``); a
  ``.txt`` has one id per line.
  """
  if path.suffix == ".csv":
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      if not reader.fieldnames or "video_id" not in reader.fieldnames:
        raise ValueError(
            f"{path}: needs a 'video_id' column, has " f"{reader.fieldnames}"
        )
      rows = list(reader)
    ids = [r["video_id"].strip() for r in rows]
    sentences = {
        r["video_id"].strip(): r["sentence"] for r in rows if r.get("sentence")
    }
    return ids, sentences
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()], {}


def read_captions(path: Path) -> dict[str, list[str]]:
  """video_id → captions ordered by ``sen_id`` (file order on ties)."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if "sentences" not in data:
    raise ValueError(f"{path}: no 'sentences' list (keys: {sorted(data)})")
  by_video: dict[str, list[tuple[int, int, str]]] = {}
  for k, s in enumerate(data["sentences"]):
    for key in ("video_id", "caption"):
      if key not in s:
        raise ValueError(f"{path}: sentence {k} has no {key!r}")
    by_video.setdefault(s["video_id"], []).append(
        (int(s.get("sen_id", k)), k, str(s["caption"]).strip())
    )
  return {v: [c for _, _, c in sorted(items)] for v, items in by_video.items()}


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
  """``num_frames`` frames evenly spaced over [0, len) (repeats if short)."""
  if len(frames) == 0:
    raise ValueError("cannot sample frames of a video with zero frames")
  index = np.floor(
      (np.arange(num_frames) + 0.5) * len(frames) / num_frames
  ).astype(int)
  return frames[np.minimum(index, len(frames) - 1)]


class MsrVtt(tfds.core.GeneratorBasedBuilder):
  """MSR-VTT videos and captions (manual download), 9k / 1k-A."""

  name = "msrvtt"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "9k train (minus the meta set), meta, 1k-A test."}
  BUILDER_CONFIGS = [
      MsrVttConfig(
          name="frames8_res64",
          num_frames=8,
          frame_size=(64, 64),
          description="8 frames of 64x64 per video.",
      ),
      MsrVttConfig(
          name="frames12_res112",
          num_frames=12,
          frame_size=(112, 112),
          description="12 frames of 112x112 per video.",
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {
                "frames": tfds.features.Tensor(
                    shape=(c.num_frames, *c.frame_size, 3),
                    dtype=np.uint8,
                    encoding=tfds.features.Encoding.ZLIB,
                    doc="RGB frames sampled uniformly over the clip.",
                ),
                "caption": tfds.features.Text(
                    doc="First (test: 1k-A) caption."
                ),
                "paraphrases": tfds.features.Text(
                    doc="The video's other captions, one per line."
                ),
                "video_id": tfds.features.Scalar(
                    dtype=np.int32, doc="N of the file name videoN.mp4."
                ),
                "noisy": tfds.features.Scalar(
                    dtype=np.int32, doc="Always 0 (human captions)."
                ),
            }
        ),
        metadata=tfds.core.MetadataDict(),
        homepage="https://www.microsoft.com/en-us/research/publication/"
        "msr-vtt-a-large-video-description-dataset-for-bridging-"
        "video-and-language/",
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    from avjax.data.pipeline import tokenizer  # pylint: disable=import-outside-toplevel

    base = manual.manual_dir_of(dl_manager)
    found = manual.find_expected(
        base,
        [ANNOTATIONS, TRAIN_LISTS, TEST_LISTS, VIDEO_DIRS],
        dataset="msrvtt",
        instructions=INSTRUCTIONS,
    )
    captions = read_captions(found[ANNOTATIONS[0]])
    train_ids, _ = read_id_list(found[TRAIN_LISTS[0]])
    test_ids, test_sentences = read_id_list(found[TEST_LISTS[0]])
    video_dir = found[VIDEO_DIRS[0].rstrip("/")]
    for vid in train_ids + test_ids:
      if not captions.get(vid) and vid not in test_sentences:
        raise ValueError(
            f"msrvtt: video {vid!r} is listed in a split but "
            f"has no caption in {found[ANNOTATIONS[0]]}"
        )
    c = self.builder_config
    if len(train_ids) < 2 or c.meta_size < 1:
      raise ValueError(
          f"msrvtt: need meta_size >= 1 and >= 2 training "
          f"videos, got {c.meta_size} and {len(train_ids)}"
      )
    meta_size = max(1, min(c.meta_size, len(train_ids) // 10))
    order = np.random.default_rng(_META_SEED).permutation(len(train_ids))
    meta = sorted(order[:meta_size])
    rest = sorted(order[meta_size:])
    splits = {
        "train": [(train_ids[i], captions[train_ids[i]]) for i in rest],
        "meta": [(train_ids[i], captions[train_ids[i]]) for i in meta],
        "test": [
            (
                v,
                [test_sentences.get(v) or captions[v][0]]
                + [
                    x for x in captions.get(v, []) if x != test_sentences.get(v)
                ],
            )
            for v in test_ids
        ],
    }
    train_texts = [t for _, caps in splits["train"] for t in caps]
    self.info.metadata["tokenizer"] = tokenizer.CaptionTokenizer.train(
        train_texts
    ).to_json()
    return {
        split: self._generate_examples(video_dir, items)
        for split, items in splits.items()
    }

  def _generate_examples(self, video_dir: Path, items):
    from avjax.data.io import video  # pylint: disable=import-outside-toplevel

    c = self.builder_config
    for vid, caps in items:
      number = _video_number(vid, "msrvtt")
      caps = [x for x in caps if x]
      if not caps:
        raise ValueError(f"msrvtt: video {vid!r} has only empty captions")
      path = video_dir / f"{vid}.mp4"
      decoded = video.read_video(
          path, fps=c.decode_fps, frame_size=tuple(c.frame_size)
      )
      if len(decoded.frames) == 0:
        raise video.VideoDecodeError(path, "video has zero frames")
      yield vid, {
          "frames": sample_frames(decoded.frames, c.num_frames),
          "caption": caps[0],
          "paraphrases": "\n".join(caps[1:]),
          "video_id": np.int32(number),
          "noisy": np.int32(0),
      }
