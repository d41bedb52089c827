"""vggsound_sparse / lrs3 builders on tiny mp4 trees in the published layout."""

import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds

from avjax.data.builders import sync_videos
from avjax.data.builders.manual import BadFileError, MissingManualFilesError
from avjax.data.io import video

SR = 16000


def _write_clip(path, seconds=2.0, level=100):
  """A clip whose frames are grey `level` and whose audio is a 440 Hz tone."""
  path.parent.mkdir(parents=True, exist_ok=True)
  frames = np.full((int(seconds * 25), 32, 32, 3), level, np.uint8)
  t = np.arange(int(seconds * SR)) / SR
  video.write_video(path, frames, 25, 0.5 * np.sin(2 * np.pi * 440 * t), SR)


def _vggsound_tree(root, corrupt=None):
  names = {
      "train": [("aaa", 10), ("bbb", 0)],
      "test": [("ccc", 30), ("ddd", 5)],
  }
  rows = []
  for split, clips in names.items():
    for yid, start in clips:
      rows.append(f"{yid},{start},dog barking,{split}")
      level = 50 + 40 * len(rows)
      name = sync_videos.vggsound_clip_name(yid, start)
      _write_clip(root / "video" / f"{name}.mp4", level=level)
  (root / "vggsound.csv").write_text("\n".join(rows) + "\n")
  (root / "vggsound_sparse_clean.csv").write_text(
      "dataset_name,video_id,start_sec,vid_is_missing,is_sync,"
      "is_sync_by_cls_obj\n"
      "vggsound_sparse,ddd,5,0,1,1\n"
      "vggsound_sparse,eee,7,1,0,0\n"
  )
  (root / "vggsound_sparse_clean_fixed_offsets.csv").write_text(
      "dataset_name,video_id,vstart_sec,offset_sec,is_sync\n"
      "vggsound_sparse,ddd_5000_15000,0.4,-1.2,1\n"
  )
  if corrupt:
    path = root / "video" / f"{corrupt}.mp4"
    path.write_bytes(path.read_bytes()[:300])


def _build(cls, tmp_path, manual_dir, **kwargs):
  builder = cls(
      data_dir=str(tmp_path / "data"), file_format="array_record", **kwargs
  )
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(
          manual_dir=str(manual_dir), try_download_gcs=False
      ),
  )
  return builder


def test_vggsound_sparse_layout(tmp_path):
  manual = tmp_path / "manual"
  _vggsound_tree(manual)
  builder = _build(sync_videos.VggsoundSparse, tmp_path, manual)
  sizes = {
      s: builder.info.splits[s].num_examples
      for s in ("train", "validation", "test")
  }
  assert sizes == {"train": 2, "validation": 1, "test": 1}
  test = builder.as_data_source("test")[0]
  assert test["clip_name"] == b"ddd_5000_15000"
  assert test["video"].shape == (50, 64, 64, 3)  # 2 s at 25 fps, resized
  assert abs(int(np.median(test["video"])) - 210) <= 4  # its grey level
  assert test["audio"].shape == (2 * SR,)
  spectrum = np.abs(np.fft.rfft(test["audio"].astype(np.float64)))
  assert np.argmax(spectrum) * SR / test["audio"].size == pytest.approx(
      440, abs=2
  )
  # Published fixed offset and crop start: -1.2 s is class 4, 0.4 s frame 10.
  np.testing.assert_array_equal(test["eval_offsets"], [4])
  np.testing.assert_array_equal(test["eval_starts"], [10])
  val = builder.as_data_source("validation")[0]
  assert val["clip_name"] == b"ccc_30000_40000"
  np.testing.assert_array_equal(
      val["eval_offsets"],
      sync_videos.name_draws("ccc_30000_40000")["eval_offsets"],
  )


def test_missing_annotation_file_is_named(tmp_path):
  manual = tmp_path / "manual"
  _vggsound_tree(manual)
  (manual / "vggsound_sparse_clean_fixed_offsets.csv").unlink()
  with pytest.raises(
      MissingManualFilesError, match="vggsound_sparse_clean_fixed_offsets.csv"
  ):
    _build(sync_videos.VggsoundSparse, tmp_path, manual)


def test_corrupt_mp4_is_named_or_skipped_and_counted(tmp_path, caplog):
  manual = tmp_path / "manual"
  _vggsound_tree(manual, corrupt="bbb_0_10000")
  with pytest.raises(BadFileError, match="bbb_0_10000.mp4"):
    _build(sync_videos.VggsoundSparse, tmp_path / "a", manual)
  caplog.set_level(logging.WARNING)
  builder = _build(
      sync_videos.VggsoundSparse, tmp_path / "b", manual, skip_bad_files=True
  )
  assert builder.info.splits["train"].num_examples == 1
  assert "skipped 1 example(s)" in caplog.text
  assert "bbb_0_10000.mp4" in caplog.text


def test_lrs3_layout(tmp_path):
  manual = tmp_path / "lrs3"
  for i in range(3):
    _write_clip(manual / "trainval" / f"spk{i}" / "00001.mp4", 1.6)
  _write_clip(manual / "test" / "spkT" / "00007.mp4", 1.6)
  builder = _build(sync_videos.Lrs3, tmp_path, manual)
  sizes = {
      s: builder.info.splits[s].num_examples
      for s in ("train", "validation", "test")
  }
  assert sizes == {"train": 2, "validation": 1, "test": 1}
  assert builder.as_data_source("validation")[0]["clip_name"] == (b"spk0/00001")
  assert builder.as_data_source("test")[0]["video"].shape == (40, 64, 64, 3)


def test_offset_class_snaps_to_grid():
  assert [
      sync_videos.offset_class(s)
      for s in (-2.0, -1.2, 0.0, 0.19, 1.0, 1.61, 2.0, 3.0)
  ] == [0, 4, 10, 11, 15, 18, 20, 20]
