"""Flickr8k Audio Captions builder on a tiny fixture in the published layout."""

import logging
import math

import numpy as np
import pytest
import soundfile

from avjax.data.builders import flickr8k_audio
from avjax.data.builders.manual import BadFileError, MissingManualFilesError
from manual_fixtures import build, read_all, write_garbage, write_image, write_wav

# (wav, image, caption index) in wav2capt.txt order; clip_id = position.
CAPTIONS = [
    ("1001_bbb_1.wav", "1001_bbb.jpg", 1),
    ("1000_aaa_0.wav", "1000_aaa.jpg", 0),
    ("1000_aaa_1.wav", "1000_aaa.jpg", 1),  # 22,050 Hz
    ("1001_bbb_0.wav", "1001_bbb.jpg", 0),  # stereo float
    ("2000_ccc_0.wav", "2000_ccc.jpg", 0),
    ("2000_ccc_1.wav", "2000_ccc.jpg", 1),
    ("3000_ddd_0.wav", "3000_ddd.jpg", 0),
    ("3000_ddd_1.wav", "3000_ddd.jpg", 1),
    ("9000_eee_0.wav", "9000_eee.jpg", 0),  # image in no split list
]
SPLITS = {
    "train": ["1000_aaa.jpg", "1001_bbb.jpg"],
    "validation": ["2000_ccc.jpg"],
    "test": ["3000_ddd.jpg"],
}
COLORS = {
    "1000_aaa.jpg": (250, 0, 0),
    "1001_bbb.jpg": (0, 250, 0),
    "2000_ccc.jpg": (0, 0, 250),
    "3000_ddd.jpg": (250, 250, 0),
    "9000_eee.jpg": (0, 250, 250),
}


def make_tree(root):
  """Writes the published layout; returns the float data of each wav."""
  audio = root / "flickr_audio"
  audio.mkdir(parents=True)
  lines = [f"{w} {i} #{k}" for w, i, k in CAPTIONS]
  (audio / "wav2capt.txt").write_text("\n".join(lines) + "\n\n")
  data = {}
  for n, (wav, _, _) in enumerate(CAPTIONS):
    kwargs = {}
    if wav == "1000_aaa_1.wav":
      kwargs = dict(rate=22050)
    elif wav == "1001_bbb_0.wav":
      kwargs = dict(subtype="FLOAT", channels=2)
    length = 2205 if "rate" in kwargs else 800 + 80 * n
    data[wav] = write_wav(audio / "wavs" / wav, length, **kwargs)
  for name, color in COLORS.items():
    write_image(root / "Flicker8k_Dataset" / name, 50, 40, color)
  (root / "Flickr_8k.trainImages.txt").write_text(
      "\n".join(SPLITS["train"]) + "\n"
  )
  text = root / "Flickr8k_text"
  text.mkdir()
  (text / "Flickr_8k.devImages.txt").write_text("2000_ccc.jpg\n")
  (text / "Flickr_8k.testImages.txt").write_text("3000_ddd.jpg\n")
  return data


def test_builds_published_layout(tmp_path):
  manual_dir = tmp_path / "manual"
  data = make_tree(manual_dir)
  builder = build(
      flickr8k_audio.Flickr8kAudio,
      manual_dir,
      tmp_path / "data",
      config="img64",
  )
  by_split = {s: read_all(builder, s) for s in SPLITS}
  assert {s: len(v) for s, v in by_split.items()} == {
      "train": 4,
      "validation": 2,
      "test": 2,
  }
  image_ids = {
      "1000_aaa.jpg": 0,
      "1001_bbb.jpg": 1,
      "2000_ccc.jpg": 2,
      "3000_ddd.jpg": 3,
  }
  for split, examples in by_split.items():
    assert {e["image_file"].decode() for e in examples} == set(SPLITS[split])
    for e in examples:
      wav, image, _ = CAPTIONS[e["clip_id"]]
      assert e["wav_file"].decode() == wav and e["image_file"].decode() == image
      assert e["image_id"] == image_ids[image]
      assert e["audio"].dtype == np.int16 and e["audio"].ndim == 1
      assert e["audio_length"] == e["audio"].shape[0]
      assert e["image"].dtype == np.uint8 and e["image"].shape == (64, 64, 3)
      np.testing.assert_allclose(e["image"][32, 32], COLORS[image], atol=3)
      if wav not in ("1000_aaa_1.wav", "1001_bbb_0.wav"):
        stored, _ = soundfile.read(
            str(manual_dir / "flickr_audio/wavs" / wav), dtype="int16"
        )
        np.testing.assert_array_equal(e["audio"], stored)
  assert sorted(e["clip_id"] for e in by_split["train"]) == [0, 1, 2, 3]
  ex = {e["wav_file"].decode(): e for e in by_split["train"]}
  assert (
      ex["1000_aaa_1.wav"]["audio_length"]
      == math.ceil(2205 * 16000 / 22050)
      == 1600
  )
  stereo = data["1001_bbb_0.wav"].mean(axis=1)
  np.testing.assert_array_equal(
      ex["1001_bbb_0.wav"]["audio"], np.round(stereo * 32768).astype(np.int16)
  )


def test_missing_files_named_with_dir(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  (manual_dir / "flickr_audio" / "wav2capt.txt").unlink()
  (manual_dir / "Flickr8k_text" / "Flickr_8k.testImages.txt").unlink()
  for f in (manual_dir / "Flicker8k_Dataset").iterdir():
    f.unlink()
  (manual_dir / "Flicker8k_Dataset").rmdir()
  with pytest.raises(MissingManualFilesError) as err:
    build(
        flickr8k_audio.Flickr8kAudio,
        manual_dir,
        tmp_path / "data",
        config="img64",
    )
  assert err.value.missing == [
      "flickr_audio/wav2capt.txt",
      "one of: Flicker8k_Dataset/ | Flickr8k_Dataset/Flicker8k_Dataset/",
      "one of: Flickr_8k.testImages.txt | Flickr8k_text/Flickr_8k.testImages.txt",
  ]
  msg = str(err.value)
  assert str(manual_dir) in msg and "is missing 3 expected file(s)" in msg
  assert "groups.csail.mit.edu/sls/downloads/flickraudio" in msg


@pytest.mark.parametrize(
    "damage,bad_file,reason",
    [
        ("empty_wav", "flickr_audio/wavs/2000_ccc_0.wav", "empty wav file"),
        (
            "garbage_wav",
            "flickr_audio/wavs/3000_ddd_1.wav",
            "unreadable wav file",
        ),
        (
            "missing_image",
            "Flicker8k_Dataset/1001_bbb.jpg",
            "missing image file",
        ),
    ],
)
def test_bad_file_errors_name_the_file(tmp_path, damage, bad_file, reason):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  target = manual_dir / bad_file
  if damage == "empty_wav":
    write_wav(target, 0)
  elif damage == "garbage_wav":
    write_garbage(target)
  else:
    target.unlink()
  with pytest.raises(BadFileError, match=reason) as err:
    build(
        flickr8k_audio.Flickr8kAudio,
        manual_dir,
        tmp_path / "data",
        config="img64",
    )
  assert str(target) in str(err.value)


def test_skip_bad_files_counts_and_logs(tmp_path, caplog):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  (manual_dir / "Flicker8k_Dataset" / "1001_bbb.jpg").unlink()  # 2 captions
  write_garbage(manual_dir / "flickr_audio/wavs/3000_ddd_1.wav")
  with caplog.at_level(logging.WARNING):
    builder = build(
        flickr8k_audio.Flickr8kAudio,
        manual_dir,
        tmp_path / "data",
        config="img64",
        skip_bad_files=True,
    )
  train, test = read_all(builder, "train"), read_all(builder, "test")
  assert sorted(e["clip_id"] for e in train) == [1, 2]
  assert [e["clip_id"] for e in test] == [6]
  assert len(builder.as_data_source("validation")) == 2
  assert (
      "flickr8k_audio/train: skipped 2 example(s) because of 1 bad file(s)"
      in caplog.text
  )
  assert (
      "flickr8k_audio/test: skipped 1 example(s) because of 1 bad file(s)"
      in caplog.text
  )
  assert "1001_bbb.jpg (missing image file)" in caplog.text
  assert "3000_ddd_1.wav (unreadable wav file" in caplog.text


def test_malformed_index_line_is_located(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  index = manual_dir / "flickr_audio" / "wav2capt.txt"
  index.write_text(
      index.read_text().replace(
          "2000_ccc_1.wav 2000_ccc.jpg #1", "2000_ccc_1.wav 2000_ccc.jpg"
      )
  )
  with pytest.raises(ValueError, match=r"wav2capt.txt:6: expected"):
    build(
        flickr8k_audio.Flickr8kAudio,
        manual_dir,
        tmp_path / "data",
        config="img64",
    )


def test_image_in_two_split_lists_is_rejected(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  (manual_dir / "Flickr8k_text" / "Flickr_8k.testImages.txt").write_text(
      "3000_ddd.jpg\n1000_aaa.jpg\n"
  )
  with pytest.raises(ValueError, match=r"1000_aaa.jpg \(train and test\)"):
    build(
        flickr8k_audio.Flickr8kAudio,
        manual_dir,
        tmp_path / "data",
        config="img64",
    )


@pytest.mark.parametrize(
    "damage,named,match",
    [
        ("empty_wav2capt", "flickr_audio/wav2capt.txt", "no caption"),
        ("empty_train_list", "Flickr_8k.trainImages.txt", "lists no image"),
        ("no_match", "Flickr_8k.trainImages.txt", "none of its 2 image"),
        ("latin1_wav2capt", "flickr_audio/wav2capt.txt:2", "not UTF-8"),
        (
            "latin1_test_list",
            "Flickr8k_text/Flickr_8k.testImages.txt:1",
            "not UTF-8",
        ),
    ],
)
def test_unusable_index_files_are_named(tmp_path, damage, named, match):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  wav2capt = manual_dir / "flickr_audio" / "wav2capt.txt"
  train_list = manual_dir / "Flickr_8k.trainImages.txt"
  if damage == "empty_wav2capt":
    wav2capt.write_text("\n")
  elif damage == "empty_train_list":
    train_list.write_text("")
  elif damage == "no_match":  # Other image names than wav2capt.txt's.
    train_list.write_text("1000_aaa.JPG\n1001_bbb.png\n")
  elif damage == "latin1_wav2capt":
    lines = wav2capt.read_text().splitlines()
    lines[1] = lines[1].replace("1000_aaa_0", "1000_aaa_\u00e90")
    wav2capt.write_bytes("\n".join(lines).encode("latin-1"))
  else:
    (manual_dir / named.rsplit(":", 1)[0]).write_bytes(
        "3000_ddd\u00e9.jpg\n".encode("latin-1")
    )
  with pytest.raises(ValueError, match=match) as err:
    build(
        flickr8k_audio.Flickr8kAudio,
        manual_dir,
        tmp_path / "data",
        config="img64",
    )
  assert str(manual_dir / named) in str(err.value)
