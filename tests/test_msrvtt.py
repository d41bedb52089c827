"""MSR-VTT builder on a tiny fixture tree in the published layout."""

import csv
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from avjax.data.builders import msrvtt
from avjax.data.io import video
from avjax.data.pipeline import tokenizer

_COLORS = [
    (250, 10, 10),
    (10, 250, 10),
    (10, 10, 250),
    (250, 250, 10),
    (10, 250, 250),
    (250, 10, 250),
]


def write_msrvtt_tree(
    root, num_train=4, num_test=2, corrupt=None, missing_caption=None
):
  """An MSR-VTT manual directory in the published (CLIP4Clip) layout.

  Videos video0..video{num_train + num_test - 1}: 10 frames of 32×32 at
  5 fps, a colour with a black band on the left whose width is 4·(n % 6) + 4
  px; 3 captions each ("clip n caption k", sen_ids in reverse file order);
  the first ``num_train`` in the 9k list, the rest in the 1k-A test CSV.
  ``corrupt`` / ``missing_caption``: a video index to break.
  """
  (root / "videos" / "all").mkdir(parents=True)
  sentences = []
  total = num_train + num_test
  for n in range(total):
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    frames[:] = _COLORS[n % 6]
    frames[:, :, : (n % 6) * 4 + 4] = 0
    path = root / "videos" / "all" / f"video{n}.mp4"
    if corrupt == n:
      path.write_bytes(b"not an mp4 at all" * 10)
    else:
      video.write_video(path, frames, fps=5)
    if missing_caption != n:
      for k in range(3):
        sentences.append(
            {
                "video_id": f"video{n}",
                "sen_id": 10 * n + 2 - k,
                "caption": f"clip {n} caption {2 - k}",
            }
        )
  (root / "MSRVTT_data.json").write_text(
      json.dumps(
          {
              "videos": [{"video_id": f"video{n}"} for n in range(total)],
              "sentences": sentences,
          }
      )
  )
  with open(root / "MSRVTT_train.9k.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["video_id"])
    for n in range(num_train):
      w.writerow([f"video{n}"])
  with open(root / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["key", "vid_key", "video_id", "sentence"])
    for n in range(num_train, total):
      w.writerow(
          [f"ret{n}", f"msr{n}", f"video{n}", f"the 1k-A caption of clip {n}"]
      )


def _build(tmp_path, manual_dir):
  builder = msrvtt.MsrVtt(
      config=msrvtt.MsrVttConfig(
          name="tiny",
          num_frames=4,
          frame_size=(16, 16),
          decode_fps=5.0,
          meta_size=1000,
      ),
      data_dir=str(tmp_path / "data"),
      file_format="array_record",
  )
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(
          manual_dir=str(manual_dir), try_download_gcs=False
      ),
  )
  return builder


def test_fixture_tree_builds_splits_frames_and_tokenizer(tmp_path):
  root = tmp_path / "MSRVTT"
  write_msrvtt_tree(root)
  builder = _build(tmp_path, root)
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert sizes == {"train": 3, "meta": 1, "test": 2}
  records = {
      s: [builder.as_data_source(s)[i] for i in range(sizes[s])] for s in sizes
  }
  train_meta = {r["video_id"] for s in ("train", "meta") for r in records[s]}
  assert train_meta == {0, 1, 2, 3}
  for split, rs in records.items():
    for r in rs:
      n = int(r["video_id"])
      assert r["frames"].shape == (4, 16, 16, 3)
      # Colour of the right half and the black band on the left, decoded.
      right = r["frames"][:, :, 12:].reshape(-1, 3).mean(axis=0)
      np.testing.assert_allclose(right, _COLORS[n % 6], atol=30)
      band = ((n % 6) * 4 + 4) // 2  # In pixels of the 16-wide frame.
      assert r["frames"][:, :, : band - 1].mean() < 30
      if split == "test":
        assert r["caption"].decode() == f"the 1k-A caption of clip {n}"
        assert len(r["paraphrases"].decode().split("\n")) == 3
      else:  # Captions in sen_id order: "caption 0" has the lowest.
        assert r["caption"].decode() == f"clip {n} caption 0"
        assert r["paraphrases"].decode().split("\n") == [
            f"clip {n} caption 1",
            f"clip {n} caption 2",
        ]
  tok = tokenizer.CaptionTokenizer.from_json(builder.info.metadata["tokenizer"])
  ids, _ = tok.encode(["clip caption 1k-A"], 4)
  assert ids[0, 0] != tokenizer.UNK_ID and ids[0, 2] == tokenizer.UNK_ID


def test_registered_under_its_name():
  from avjax.data.pipeline import sources  # pylint: disable=import-outside-toplevel

  assert sources.builder_class("msrvtt") is msrvtt.MsrVtt


def test_sample_frames_is_uniform():
  frames = np.arange(10)[:, None]
  np.testing.assert_array_equal(
      msrvtt.sample_frames(frames, 5)[:, 0], [1, 3, 5, 7, 9]
  )
  np.testing.assert_array_equal(
      msrvtt.sample_frames(frames[:2], 4)[:, 0], [0, 0, 1, 1]
  )
  with pytest.raises(ValueError, match="zero frames"):
    msrvtt.sample_frames(frames[:0], 4)


def test_missing_files_are_all_named(tmp_path):
  root = tmp_path / "empty"
  root.mkdir()
  with pytest.raises(FileNotFoundError) as err:
    _build(tmp_path, root)
  for name in (
      "MSRVTT_data.json",
      "MSRVTT_train.9k.csv",
      "MSRVTT_JSFUSION_test.csv",
      "videos/all/",
  ):
    assert name in str(err.value)


def test_corrupt_video_names_the_file(tmp_path):
  root = tmp_path / "MSRVTT"
  write_msrvtt_tree(root, corrupt=5)
  with pytest.raises(video.VideoDecodeError, match="video5.mp4"):
    _build(tmp_path, root)


def test_video_without_caption_is_named(tmp_path):
  root = tmp_path / "MSRVTT"
  write_msrvtt_tree(root, missing_caption=1)
  with pytest.raises(
      ValueError, match="'video1' is listed in a split but " "has no caption"
  ):
    _build(tmp_path, root)
