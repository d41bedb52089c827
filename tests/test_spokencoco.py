"""SpokenCOCO builder on a tiny fixture in the published layout."""

import json
import logging
import math
import shutil

import numpy as np
import pytest
import soundfile

from avjax.data.builders import spokencoco
from avjax.data.builders.manual import BadFileError, MissingManualFilesError
from manual_fixtures import build, read_all, write_garbage, write_image, write_wav

# (json file, image path, coco id, color); two captions per image.
IMAGES = [
    ("train", "train2014/COCO_train2014_000000000009.jpg", 9, (250, 0, 0)),
    ("train", "train2014/COCO_train2014_000000000025.jpg", 25, (0, 250, 0)),
    ("train", "train2014/COCO_train2014_000000000030.jpg", 30, (0, 0, 250)),
    ("val", "val2014/COCO_val2014_000000000042.jpg", 42, (250, 250, 0)),
    ("val", "val2014/COCO_val2014_000000000073.jpg", 73, (0, 250, 250)),
]
KARPATHY = {
    "COCO_train2014_000000000009.jpg": "train",
    "COCO_train2014_000000000025.jpg": "restval",
    "COCO_val2014_000000000042.jpg": "val",
    "COCO_val2014_000000000073.jpg": "test",
    "COCO_val2014_000000000099.jpg": "test",
}  # 030 absent: left out
RESAMPLED_WAV = "wavs/train/0/u25_1.wav"


def wav_name(split, coco_id, k):
  return f"wavs/{split}/0/u{coco_id}_{k}.wav"


def make_tree(root, image_root=None, karpathy=False):
  """Writes SpokenCOCO/ (+ COCO images under ``image_root``, default root)."""
  image_root = root if image_root is None else image_root
  docs = {"train": {"data": []}, "val": {"data": []}}
  for split, image, coco_id, color in IMAGES:
    captions = []
    for k in range(2):
      wav = wav_name(split, coco_id, k)
      rate = 22050 if wav == RESAMPLED_WAV else 16000
      write_wav(
          root / "SpokenCOCO" / wav,
          2205 if rate == 22050 else 900 + coco_id,
          rate=rate,
      )
      captions.append(
          {
              "text": f"A PICTURE {coco_id} {k}",
              "speaker": "spk1",
              "uttid": f"u{coco_id}_{k}",
              "wav": wav,
          }
      )
    docs[split]["data"].append({"image": image, "captions": captions})
    write_image(image_root / image, 48, 64, color)
  for split, doc in docs.items():
    (root / "SpokenCOCO" / f"SpokenCOCO_{split}.json").write_text(
        json.dumps(doc)
    )
  if karpathy:
    images = [
        {
            "filepath": name.split("_")[1],
            "filename": name,
            "split": split,
            "cocoid": int(name[-10:-4]),
        }
        for name, split in KARPATHY.items()
    ]
    (root / "dataset_coco.json").write_text(
        json.dumps({"images": images, "dataset": "coco"})
    )


def _clip_ids():
  """clip_id of each (coco id, k): running over train json then val json."""
  return {
      (coco_id, k): 2 * i + k
      for i, (_, _, coco_id, _) in enumerate(IMAGES)
      for k in range(2)
  }


def test_original_splits(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  builder = build(
      spokencoco.Spokencoco, manual_dir, tmp_path / "data", config="img64"
  )
  train, val = read_all(builder, "train"), read_all(builder, "validation")
  assert len(train) == 6 and len(val) == 4
  assert set(builder.info.splits.keys()) == {"train", "validation"}
  assert {e["image_id"] for e in train} == {9, 25, 30}
  assert {e["image_id"] for e in val} == {42, 73}
  colors = {coco_id: color for _, _, coco_id, color in IMAGES}
  clip_ids = _clip_ids()
  for e in train + val:
    wav = e["wav_file"].decode()
    coco_id, k = map(int, wav.rsplit("/", 1)[1][1:-4].split("_"))
    assert e["image_id"] == coco_id and e["clip_id"] == clip_ids[(coco_id, k)]
    assert e["image_file"].decode().endswith(f"{coco_id:012d}.jpg")
    assert e["image"].shape == (64, 64, 3) and e["image"].dtype == np.uint8
    np.testing.assert_allclose(e["image"][32, 32], colors[coco_id], atol=3)
    assert (
        e["audio"].dtype == np.int16
        and e["audio_length"] == e["audio"].shape[0]
    )
    if wav == RESAMPLED_WAV:
      assert e["audio_length"] == math.ceil(2205 * 16000 / 22050)
    else:
      stored, _ = soundfile.read(
          str(manual_dir / "SpokenCOCO" / wav), dtype="int16"
      )
      np.testing.assert_array_equal(e["audio"], stored)


def test_karpathy_splits(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir, karpathy=True)
  builder = build(
      spokencoco.Spokencoco,
      manual_dir,
      tmp_path / "data",
      config="karpathy_img64",
  )
  got = {s: read_all(builder, s) for s in ("train", "validation", "test")}
  assert {s: sorted({e["image_id"] for e in v}) for s, v in got.items()} == {
      "train": [9, 25],
      "validation": [42],
      "test": [73],
  }
  clip_ids = _clip_ids()
  assert sorted(e["clip_id"] for e in got["test"]) == [
      clip_ids[(73, 0)],
      clip_ids[(73, 1)],
  ]


def test_image_root_variants(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir, image_root=manual_dir / "mscoco_img")
  builder = build(
      spokencoco.Spokencoco, manual_dir, tmp_path / "data", config="img64"
  )
  assert len(builder.as_data_source("validation")) == 4

  elsewhere = tmp_path / "coco_images"
  shutil.move(str(manual_dir / "mscoco_img"), str(elsewhere))
  builder = build(
      spokencoco.Spokencoco,
      manual_dir,
      tmp_path / "data2",
      config="img64",
      image_root=elsewhere,
  )
  assert len(builder.as_data_source("train")) == 6
  shutil.rmtree(elsewhere / "val2014")
  with pytest.raises(MissingManualFilesError) as err:
    build(
        spokencoco.Spokencoco,
        manual_dir,
        tmp_path / "data3",
        config="img64",
        image_root=elsewhere,
    )
  assert str(elsewhere) in str(err.value) and err.value.missing == ["val2014/"]


def test_missing_files_named_with_dir(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  (manual_dir / "SpokenCOCO" / "SpokenCOCO_val.json").unlink()
  shutil.rmtree(manual_dir / "val2014")
  with pytest.raises(MissingManualFilesError) as err:
    build(
        spokencoco.Spokencoco,
        manual_dir,
        tmp_path / "data",
        config="karpathy_img64",
    )
  assert err.value.missing == [
      "SpokenCOCO/SpokenCOCO_val.json",
      "dataset_coco.json",
      "val2014/",
  ]
  assert str(manual_dir) in str(err.value)
  with pytest.raises(MissingManualFilesError, match="does not exist") as err:
    build(spokencoco.Spokencoco, tmp_path / "absent", tmp_path / "data2")
  assert len(err.value.missing) == 5


@pytest.mark.parametrize(
    "damage,bad_file,reason",
    [
        ("missing_wav", "SpokenCOCO/wavs/val/0/u42_1.wav", "missing wav file"),
        ("empty_wav", "SpokenCOCO/wavs/train/0/u9_0.wav", "empty wav file"),
        (
            "garbage_wav",
            "SpokenCOCO/wavs/val/0/u73_0.wav",
            "unreadable wav file",
        ),
        (
            "missing_image",
            "train2014/COCO_train2014_000000000025.jpg",
            "missing image file",
        ),
        (
            "garbage_image",
            "val2014/COCO_val2014_000000000042.jpg",
            "unreadable image file",
        ),
    ],
)
def test_bad_file_errors_name_the_file(tmp_path, damage, bad_file, reason):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  target = manual_dir / bad_file
  if damage.startswith("missing"):
    target.unlink()
  elif damage == "empty_wav":
    write_wav(target, 0)
  else:
    write_garbage(target)
  with pytest.raises(BadFileError, match=reason) as err:
    build(spokencoco.Spokencoco, manual_dir, tmp_path / "data", config="img64")
  assert str(target) in str(err.value)


def test_skip_bad_files_counts_and_logs(tmp_path, caplog):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  (manual_dir / "SpokenCOCO/wavs/val/0/u42_1.wav").unlink()
  (manual_dir / "train2014/COCO_train2014_000000000025.jpg").unlink()
  with caplog.at_level(logging.WARNING):
    builder = build(
        spokencoco.Spokencoco,
        manual_dir,
        tmp_path / "data",
        config="img64",
        skip_bad_files=True,
    )
  assert {e["image_id"] for e in read_all(builder, "train")} == {9, 30}
  assert len(builder.as_data_source("validation")) == 3
  assert (
      "spokencoco/train: skipped 2 example(s) because of 1 bad file(s)"
      in caplog.text
  )
  assert (
      "spokencoco/validation: skipped 1 example(s) because of 1 bad file(s)"
      in caplog.text
  )
  assert "u42_1.wav (missing wav file)" in caplog.text


def test_json_schema_errors_are_located(tmp_path):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir)
  path = manual_dir / "SpokenCOCO" / "SpokenCOCO_val.json"
  doc = json.loads(path.read_text())
  del doc["data"][1]["captions"][0]["wav"]
  path.write_text(json.dumps(doc))
  with pytest.raises(
      ValueError,
      match=r"SpokenCOCO_val.json: data\[1\].captions\[0\] "
      r"lacks the string key 'wav'",
  ):
    build(spokencoco.Spokencoco, manual_dir, tmp_path / "data", config="img64")
  path.write_text("{not json")
  with pytest.raises(
      ValueError, match=r"SpokenCOCO_val.json:1:2: not valid JSON"
  ):
    build(spokencoco.Spokencoco, manual_dir, tmp_path / "data2", config="img64")


def test_coco_image_id():
  assert (
      spokencoco.coco_image_id("val2014/COCO_val2014_000000391895.jpg", "x")
      == 391895
  )
  with pytest.raises(
      ValueError, match="x: image path 'a/b.jpg' carries no MSCOCO id"
  ):
    spokencoco.coco_image_id("a/b.jpg", "x")


@pytest.mark.parametrize(
    "damage,named,match",
    [
        ("truncated_karpathy", "dataset_coco.json", r"not valid JSON.*line 1"),
        ("latin1_karpathy", "dataset_coco.json", r"not UTF-8"),
        ("latin1_train_json", "SpokenCOCO/SpokenCOCO_train.json", r"not UTF-8"),
        (
            "karpathy_names_no_image",
            "dataset_coco.json",
            r"test.*no SpokenCOCO",
        ),
        ("empty_train_json", "SpokenCOCO/SpokenCOCO_train.json", r"no caption"),
    ],
)
def test_unusable_index_files_are_named(tmp_path, damage, named, match):
  manual_dir = tmp_path / "manual"
  make_tree(manual_dir, karpathy=True)
  target = manual_dir / named
  text = target.read_text()
  if damage == "truncated_karpathy":
    target.write_text(text[: len(text) // 2])
  elif damage.startswith("latin1"):
    target.write_bytes(text.replace('"', '"\u00e9', 1).encode("latin-1"))
  elif damage == "karpathy_names_no_image":  # Test images SpokenCOCO lacks.
    doc = json.loads(text)
    for image in doc["images"]:
      if image["split"] == "test":
        image["filename"] = image["filename"].replace("val2014", "x")
    target.write_text(json.dumps(doc))
  else:
    target.write_text(json.dumps({"data": []}))
  config = "img64" if damage == "empty_train_json" else "karpathy_img64"
  with pytest.raises(ValueError, match=match) as err:
    build(spokencoco.Spokencoco, manual_dir, tmp_path / "data", config=config)
  assert str(target) in str(err.value)
