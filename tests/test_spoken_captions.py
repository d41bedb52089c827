"""Example generation shared by the spoken-caption builders."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from avjax.data.builders import manual
from avjax.data.builders import spoken_captions
from avjax.data.io import image as image_io
from avjax.data.pipeline import sources
import manual_fixtures
from manual_fixtures import write_garbage, write_image, write_wav


def _groups(tmp_path):
  write_image(tmp_path / "a.png", 12, 10, (200, 10, 10))
  write_image(tmp_path / "b.png", 10, 10, (10, 200, 10))
  write_wav(tmp_path / "a0.wav", 160)
  write_wav(tmp_path / "a1.wav", 22050 // 10, rate=22050)
  write_wav(tmp_path / "b0.wav", 320)
  cap = spoken_captions.Caption
  return [
      spoken_captions.ImageGroup(
          7,
          tmp_path / "a.png",
          "a.png",
          (
              cap(3, tmp_path / "a0.wav", "a0.wav"),
              cap(4, tmp_path / "a1.wav", "a1.wav"),
          ),
      ),
      spoken_captions.ImageGroup(
          9,
          tmp_path / "b.png",
          "b.png",
          (cap(5, tmp_path / "b0.wav", "b0.wav"),),
      ),
  ]


def test_features_spec():
  spec = spoken_captions.features(32)
  assert "image" not in spec  # Stored once per image, in the image table.
  assert spec["audio"].shape == (None,) and spec["audio"].np_dtype == np.int16
  for key in ("audio_length", "image_id", "clip_id"):
    assert spec[key].np_dtype == np.int32


def test_generate_examples(tmp_path):
  out = list(
      spoken_captions.generate_examples(
          _groups(tmp_path),
          8,
          manual.BadFileLog("toy/train", skip=False),
          tmp_path / "ds",
          "train",
      )
  )
  assert [k for k, _ in out] == [3, 4, 5]
  ex = {k: e for k, e in out}
  assert ex[3]["image_id"] == ex[4]["image_id"] == 7 and ex[5]["image_id"] == 9
  assert ex[3]["audio_length"] == 160 == ex[3]["audio"].shape[0]
  assert ex[4]["audio_length"] == 1600  # 2205 samples at 22.05 kHz → 16 kHz
  assert ex[4]["wav_file"] == "a1.wav" and ex[4]["image_file"] == "a.png"
  assert "image" not in ex[4]
  table = spoken_captions.ImageTable(tmp_path / "ds", "train", 8)
  assert len(table) == 2  # Image 7 once, for both of its captions.
  assert table[7].shape == (8, 8, 3) and table[7].dtype == np.uint8
  np.testing.assert_allclose(table[9][4, 4], [10, 200, 10], atol=3)
  np.testing.assert_allclose(table[7][4, 4], [200, 10, 10], atol=3)
  with pytest.raises(KeyError, match="no image_id 8"):
    table[8]
  view = spoken_captions.with_images([{"image_id": 9, "clip_id": 5}], table)
  np.testing.assert_array_equal(view[0]["image"], table[9])


def test_bad_image_skips_all_its_captions(tmp_path, caplog):
  groups = _groups(tmp_path)
  write_garbage(tmp_path / "a.png")
  with pytest.raises(manual.BadFileError, match="unreadable image file"):
    list(
        spoken_captions.generate_examples(
            groups,
            8,
            manual.BadFileLog("toy/train", skip=False),
            tmp_path / "strict",
            "train",
        )
    )
  log = manual.BadFileLog("toy/train", skip=True)
  with caplog.at_level(logging.WARNING):
    out = list(
        spoken_captions.generate_examples(
            groups, 8, log, tmp_path / "ds", "train"
        )
    )
  assert [k for k, _ in out] == [5]
  assert len(spoken_captions.ImageTable(tmp_path / "ds", "train", 8)) == 1
  assert log.skipped_examples == 2
  assert "skipped 2 example(s) because of 1 bad file(s)" in caplog.text


def _prepared_bytes(path):
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _photo_writer():
  """A ``write_image`` that saves crops of real photos (sklearn's two
  sample images): solid colours compress to nothing and hide the cost."""
  photos = load_sample_images().images
  rng = np.random.default_rng(0)

  def write(path, width, height, color):
    del width, height, color
    photo = photos[rng.integers(len(photos))]
    y = rng.integers(0, photo.shape[0] - 300)
    x = rng.integers(0, photo.shape[1] - 400)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo[y : y + 300, x : x + 400]).save(path, quality=90)

  return write


@pytest.mark.parametrize(
    "name,writer",
    [
        ("flickr8k_audio/img224", "write_flickr8k_tree"),
        ("spokencoco/karpathy_img224", "write_spokencoco_tree"),
    ],
)
def test_each_image_is_stored_once_and_encoded(
    tmp_path, monkeypatch, name, writer
):
  monkeypatch.setattr(manual_fixtures, "write_image", _photo_writer())
  manual_dir = tmp_path / "manual"
  getattr(manual_fixtures, writer)(manual_dir, n_train=4, n_eval=2, captions=5)
  data_dir = tmp_path / "data"
  builder = sources.get_builder(
      name, data_dir=str(data_dir), manual_dir=str(manual_dir)
  )
  images = captions = audio_bytes = 0
  for split in ("train", "validation", "test"):
    source = sources.load_source(name, split, data_dir=str(data_dir))
    records = [source[i] for i in range(len(source))]
    by_image = {}
    for r in records:
      assert r["image"].shape == (224, 224, 3)
      assert r["image"].dtype == np.uint8
      by_image.setdefault(int(r["image_id"]), []).append(r)
      audio_bytes += r["audio"].nbytes
    for group in by_image.values():
      assert len(group) == 5
      folder = "" if name.startswith("spoken") else "Flicker8k_Dataset"
      ref = image_io.load_image(
          manual_dir / folder / group[0]["image_file"].decode(), 224
      )
      for r in group:  # The same pixels for every caption, close to
        np.testing.assert_array_equal(r["image"], group[0]["image"])
      err = r["image"].astype(float) - ref  # the decoded original.
      assert 10 * np.log10(255**2 / np.mean(err**2)) > 30  # PSNR, dB
    images += len(by_image)
    captions += len(records)
  assert (images, captions) == (8, 40)
  # Raw once per caption this is about 40 × 150,528 bytes (minus what
  # array_record's compression saves); raw once per image 8 × 150,528.
  image_bytes = _prepared_bytes(Path(builder.data_dir)) - audio_bytes
  assert image_bytes < 8 * 224 * 224 * 3 // 3, image_bytes
