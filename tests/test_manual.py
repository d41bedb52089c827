"""Shared manual-download helpers: file checks, wav/image decoding, skip log."""

import logging
import math

import numpy as np
import pytest
import soundfile
from PIL import Image

from avjax.data.builders import manual
from avjax.data.io import audio as audio_io
from avjax.data.io import image as image_io
from manual_fixtures import sine, write_garbage, write_image, write_wav


def test_find_expected_returns_paths_and_alternatives(tmp_path):
  (tmp_path / "a.txt").write_text("x")
  (tmp_path / "sub" / "d").mkdir(parents=True)
  (tmp_path / "alt").mkdir()
  (tmp_path / "alt" / "b.txt").write_text("x")
  found = manual.find_expected(
      tmp_path, ["a.txt", "sub/d/", ("b.txt", "alt/b.txt")], dataset="toy"
  )
  assert found == {
      "a.txt": tmp_path / "a.txt",
      "sub/d": tmp_path / "sub" / "d",
      "b.txt": tmp_path / "alt" / "b.txt",
  }


def test_find_expected_lists_every_missing_entry(tmp_path):
  (tmp_path / "a.txt").write_text("x")
  (tmp_path / "dir_is_a_file").write_text("x")
  with pytest.raises(manual.MissingManualFilesError) as err:
    manual.find_expected(
        tmp_path,
        ["a.txt", "b.txt", "dir_is_a_file/", ("c.txt", "x/c.txt")],
        dataset="toy",
        instructions="Get it from the moon.",
    )
  e = err.value
  assert isinstance(e, FileNotFoundError)
  assert e.missing == ["b.txt", "dir_is_a_file/", "one of: c.txt | x/c.txt"]
  msg = str(e)
  assert (
      f"toy: the manual directory {tmp_path} is missing 3 expected file(s)"
      in msg
  )
  for entry in e.missing:
    assert entry in msg
  assert "Get it from the moon." in msg


def test_find_expected_on_absent_dir(tmp_path):
  with pytest.raises(
      manual.MissingManualFilesError, match="does not exist"
  ) as err:
    manual.find_expected(tmp_path / "nope", ["a.txt", "b/"], dataset="toy")
  assert err.value.missing == ["a.txt", "b/"]


class _FakeDlManager:
  """Mimics tfds: ``manual_dir`` asserts when the directory is absent/empty."""

  def __init__(self, path):
    self._manual_dir = path

  @property
  def manual_dir(self):
    if not self._manual_dir.exists() or not any(self._manual_dir.iterdir()):
      raise AssertionError("Manual directory does not exist or is empty")
    return self._manual_dir


def test_manual_dir_of_falls_back_to_configured_path(tmp_path):
  assert (
      manual.manual_dir_of(_FakeDlManager(tmp_path / "absent"))
      == tmp_path / "absent"
  )
  (tmp_path / "f").write_text("x")
  assert manual.manual_dir_of(_FakeDlManager(tmp_path)) == tmp_path


def test_read_wav_int16_roundtrip_is_exact(tmp_path):
  write_wav(tmp_path / "a.wav", 1000)
  stored, _ = soundfile.read(str(tmp_path / "a.wav"), dtype="int16")
  audio = audio_io.read_wav(tmp_path / "a.wav")
  assert audio.dtype == np.int16 and audio.shape == (1000,)
  np.testing.assert_array_equal(audio, stored)


def test_read_wav_resamples_22050_to_16000(tmp_path):
  n = 22050 // 2  # half a second
  write_wav(tmp_path / "a.wav", n, rate=22050, freq=300.0)
  audio = audio_io.read_wav(tmp_path / "a.wav", 16000)
  assert audio.shape == (math.ceil(n * 16000 / 22050),) == (8000,)
  expected = sine(8000, 16000, 300.0)
  # Away from the edges the resampled sine matches the 16 kHz sine.
  np.testing.assert_allclose(
      audio[200:-200] / 32768.0, expected[200:-200], atol=2e-3
  )


def test_read_wav_stereo_float_to_mono_int16(tmp_path):
  data = write_wav(tmp_path / "s.wav", 800, subtype="FLOAT", channels=2)
  audio = audio_io.read_wav(tmp_path / "s.wav")
  expected = np.round(data.mean(axis=1) * 32768).astype(np.int16)
  np.testing.assert_array_equal(audio, expected)


def test_read_wav_24_bit(tmp_path):
  data = write_wav(tmp_path / "p.wav", 500, subtype="PCM_24")
  audio = audio_io.read_wav(tmp_path / "p.wav")
  np.testing.assert_allclose(audio, data[:, 0] * 32768, atol=1.0)


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("empty", "empty wav file"),
        ("garbage", "unreadable wav file"),
        ("zero_bytes", "unreadable wav file"),
        ("missing", "missing wav file"),
    ],
)
def test_read_wav_bad_files_name_the_file(tmp_path, kind, reason):
  path = tmp_path / f"{kind}.wav"
  if kind == "empty":
    write_wav(path, 0)
  elif kind == "garbage":
    write_garbage(path)
  elif kind == "zero_bytes":
    path.write_bytes(b"")
  with pytest.raises(manual.BadFileError, match=reason) as err:
    audio_io.read_wav(path)
  assert err.value.path == path and str(path) in str(err.value)


def test_load_image_resizes_shorter_side_and_center_crops(tmp_path):
  img = np.zeros((40, 80, 3), np.uint8)  # H=40, W=80: left/right thirds differ
  img[:, :20] = (255, 0, 0)
  img[:, 20:60] = (0, 255, 0)
  img[:, 60:] = (0, 0, 255)
  Image.fromarray(img).save(tmp_path / "wide.png")
  out = image_io.load_image(tmp_path / "wide.png", 16)
  assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
  # The center crop keeps only the green middle band.
  np.testing.assert_array_equal(
      out[:, 2:-2], np.broadcast_to([0, 255, 0], (16, 12, 3))
  )


def test_load_image_large_jpeg(tmp_path):
  img = np.zeros((480, 640, 3), np.uint8)
  img[:, :320] = (255, 0, 0)
  img[:, 320:] = (0, 0, 255)
  Image.fromarray(img).save(tmp_path / "big.jpg", quality=95)
  out = image_io.load_image(tmp_path / "big.jpg", 32)
  assert out.shape == (32, 32, 3)
  np.testing.assert_allclose(
      out[:, :12], np.broadcast_to([255, 0, 0], (32, 12, 3)), atol=12
  )
  np.testing.assert_allclose(
      out[:, 20:], np.broadcast_to([0, 0, 255], (32, 12, 3)), atol=12
  )


def test_load_image_grey_and_rgba_become_rgb(tmp_path):
  Image.new("L", (10, 12), 77).save(tmp_path / "g.png")
  Image.new("RGBA", (9, 9), (10, 20, 30, 128)).save(tmp_path / "a.png")
  g = image_io.load_image(tmp_path / "g.png", 8)
  a = image_io.load_image(tmp_path / "a.png", 8)
  assert g.shape == a.shape == (8, 8, 3)
  assert np.all(g == 77)
  np.testing.assert_array_equal(a[4, 4], [10, 20, 30])


def test_load_image_bad_files(tmp_path):
  write_garbage(tmp_path / "x.jpg")
  with pytest.raises(manual.BadFileError, match="unreadable image file"):
    image_io.load_image(tmp_path / "x.jpg", 8)
  with pytest.raises(manual.BadFileError, match="missing image file") as err:
    image_io.load_image(tmp_path / "nope.jpg", 8)
  assert str(tmp_path / "nope.jpg") in str(err.value)
  write_image(tmp_path / "ok.jpg", 5, 5, (1, 2, 3))
  assert image_io.load_image(tmp_path / "ok.jpg", 4).shape == (4, 4, 3)


def test_bad_file_log_raises_unless_skipping(tmp_path, caplog):
  err = manual.BadFileError(tmp_path / "a.wav", "empty wav file")
  strict = manual.BadFileLog("toy/train", skip=False)
  with pytest.raises(
      manual.BadFileError, match="toy/train: empty wav file.*skip_bad_files"
  ):
    strict.handle(err)

  log = manual.BadFileLog("toy/train", skip=True)
  log.handle(err)
  log.handle(
      manual.BadFileError(tmp_path / "i.jpg", "missing image file"),
      n_examples=3,
  )
  assert log.skipped_examples == 4 and len(log.files) == 2
  with caplog.at_level(logging.WARNING):
    log.report(kept_examples=5)
  assert (
      "toy/train: skipped 4 example(s) because of 2 bad file(s)" in caplog.text
  )
  assert (
      str(tmp_path / "a.wav") in caplog.text
      and "missing image file" in caplog.text
  )
  with pytest.raises(ValueError, match="all 4 examples were skipped"):
    log.report(kept_examples=0)


def test_check_unique_and_invert_listing():
  manual.check_unique(["a", "b"], "names", "f.txt")
  with pytest.raises(ValueError, match=r"f.txt: duplicate names: \['a'\]"):
    manual.check_unique(["a", "b", "a"], "names", "f.txt")
  assert manual.invert_listing(
      {"train": ["a", "b"], "test": ["c"]}, "lists"
  ) == {"a": "train", "b": "train", "c": "test"}
  clash = r"lists: item\(s\) listed in two splits: \['b \(train and test\)'\]"
  with pytest.raises(ValueError, match=clash):
    manual.invert_listing({"train": ["a", "b"], "test": ["b"]}, "lists")


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize("keep", ["half", 60])
def test_read_wav_truncated_file_is_named(tmp_path, subtype, keep):
  # A 1,280-sample wav cut to half its bytes, or to 60 bytes (the header
  # and a few samples): soundfile reads what is there without complaint.
  path = tmp_path / "cut.wav"
  write_wav(path, 1280, subtype=subtype)
  data = path.read_bytes()
  size = len(data) // 2 if keep == "half" else keep
  path.write_bytes(data[:size])
  if (subtype, keep) != ("FLOAT", 60):  # Cut inside its longer header.
    assert 0 < soundfile.info(str(path)).frames < 1280
  with pytest.raises(manual.BadFileError, match="truncated") as err:
    audio_io.read_wav(path)
  assert err.value.path == path
  assert str(path) in str(err.value)
  assert f"holds {size - 44} bytes" in str(err.value) or subtype != "PCM_16"


def test_read_wav_accepts_extra_chunks_and_odd_padding(tmp_path):
  # A LIST chunk after the data chunk and an odd-sized chunk before it
  # (padded to even size, as RIFF requires) are fine.
  path = tmp_path / "extra.wav"
  write_wav(path, 101, rate=8000, subtype="PCM_U8")
  data = bytearray(path.read_bytes())
  fmt_end = data.index(b"data")
  odd = b"junk" + (3).to_bytes(4, "little") + b"abc\x00"
  data[fmt_end:fmt_end] = odd
  data += b"LIST" + (4).to_bytes(4, "little") + b"INFO"
  data[4:8] = (len(data) - 8).to_bytes(4, "little")
  path.write_bytes(bytes(data))
  samples = audio_io.read_wav(path, 8000)
  assert samples.shape == (101,)


def test_read_wav_data_size_unknown_is_read(tmp_path):
  # Streaming writers put 0xFFFFFFFF in the size fields: no truncation
  # check is possible, the samples present are read.
  path = tmp_path / "stream.wav"
  write_wav(path, 320)
  data = bytearray(path.read_bytes())
  at = data.index(b"data") + 4
  data[at : at + 4] = b"\xff\xff\xff\xff"
  data[4:8] = b"\xff\xff\xff\xff"
  path.write_bytes(bytes(data))
  assert audio_io.read_wav(path).shape == (320,)
