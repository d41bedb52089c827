"""Writers of tiny real-format files for the manual-download builder tests."""

import json
from pathlib import Path

import numpy as np
import soundfile
import tensorflow_datasets as tfds
from PIL import Image


def sine(
    n: int, rate: int, freq: float = 440.0, amp: float = 0.5
) -> np.ndarray:
  """float64 [n] sine in [-amp, amp]."""
  return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def write_wav(
    path: Path,
    n: int,
    rate: int = 16000,
    *,
    subtype: str = "PCM_16",
    channels: int = 1,
    freq: float = 440.0,
) -> np.ndarray:
  """Writes a sine wav (``channels`` copies scaled 1, 0.5, ...); returns [n, C]."""
  path.parent.mkdir(parents=True, exist_ok=True)
  base = sine(n, rate, freq)
  data = np.stack([base / (c + 1) for c in range(channels)], axis=1)
  soundfile.write(str(path), data, rate, subtype=subtype)
  return data


def write_image(
    path: Path, width: int, height: int, color: tuple[int, int, int]
) -> None:
  """Writes a solid-color JPEG (or PNG by suffix)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", (width, height), color).save(path)


def write_garbage(path: Path) -> None:
  """Writes bytes no decoder accepts."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"this is not a media file\x00\x01" * 8)


def build(cls, manual_dir, data_dir, config=None, **kwargs):
  """Prepares ``cls`` as array_record from ``manual_dir``; returns the builder."""
  builder = cls(data_dir=str(data_dir), config=config, **kwargs)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
  )
  return builder


def read_all(builder, split):
  """Every example of ``split`` through ``as_data_source`` (and the
  builder's ``wrap_data_source``, as ``sources.load_source`` reads it)."""
  source = builder.as_data_source(split)
  wrap = getattr(builder, "wrap_data_source", None)
  source = wrap(source, split) if wrap else source
  return [source[i] for i in range(len(source))]


# Whole trees in the published layouts, for end-to-end runs of the configs'
# real-dataset variants (tests/test_configs.py). Each writer fills
# ``manual_dir`` with a few items of every split; register a new dataset's
# writer in TREE_WRITERS under its dataset name.


def write_avcmr_tree(
    manual_dir: Path, filename: str, num_classes: int, per_class: int = 8
) -> None:
  """One AV-CMR HDF5 file: audio [N, 128], visual [N, 1024], int labels;
  ``per_class`` train rows (10% validation: one) and 2 test rows a class."""
  import h5py  # pylint: disable=import-outside-toplevel

  n_train, n_test = per_class * num_classes, 2 * num_classes
  manual_dir.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  with h5py.File(manual_dir / filename, "w") as f:
    for split, n in (("train", n_train), ("test", n_test)):
      labels = np.arange(n) % num_classes
      f.create_dataset(
          f"audio_{split}",
          data=rng.normal(size=(n, 128)).astype(np.float32) + labels[:, None],
      )
      f.create_dataset(
          f"visual_{split}",
          data=rng.normal(size=(n, 1024)).astype(np.float32) - labels[:, None],
      )
      f.create_dataset(f"lab_{split}", data=labels)


def write_flickr8k_tree(
    manual_dir: Path, n_train: int = 4, n_eval: int = 2, captions: int = 2
) -> None:
  """flickr_audio/{wav2capt.txt,wavs/}, Flicker8k_Dataset/, split lists."""
  splits = {"trainImages": n_train, "devImages": n_eval, "testImages": n_eval}
  lines, image_id = [], 0
  for split, n in splits.items():
    names = []
    for _ in range(n):
      name = f"{1000 + image_id}_{image_id:04x}.jpg"
      names.append(name)
      write_image(
          manual_dir / "Flicker8k_Dataset" / name,
          40,
          30,
          (37 * image_id % 256, 90, 200),
      )
      for k in range(captions):
        wav = f"{name[:-4]}_{k}.wav"
        write_wav(
            manual_dir / "flickr_audio" / "wavs" / wav,
            1600 + 160 * k,
            freq=200.0 + 50 * image_id,
        )
        lines.append(f"{wav} {name} #{k}")
      image_id += 1
    (manual_dir / f"Flickr_8k.{split}.txt").write_text("\n".join(names) + "\n")
  (manual_dir / "flickr_audio" / "wav2capt.txt").write_text(
      "\n".join(lines) + "\n"
  )


def write_spokencoco_tree(
    manual_dir: Path,
    n_train: int = 4,
    n_eval: int = 2,
    captions: int = 2,
    image_root: Path | None = None,
) -> None:
  """SpokenCOCO/{SpokenCOCO_{train,val}.json,wavs/}, COCO 2014 images
  (under ``image_root``, default ``manual_dir``) and Karpathy's
  dataset_coco.json (train / restval from train2014, val / test from
  val2014)."""
  image_root = manual_dir if image_root is None else image_root
  roles = (
      [("train", "train2014", "train")] * n_train
      + [("val", "val2014", "val")] * n_eval
      + [("val", "val2014", "test")] * n_eval
  )
  docs = {"train": {"data": []}, "val": {"data": []}}
  karpathy = []
  for coco_id, (json_split, folder, k_split) in enumerate(roles, start=1):
    name = f"COCO_{folder}_{coco_id:012d}.jpg"
    write_image(
        image_root / folder / name, 48, 36, (40 * coco_id % 256, 120, 30)
    )
    caps = []
    for k in range(captions):
      wav = f"wavs/{json_split}/0/u{coco_id}_{k}.wav"
      write_wav(
          manual_dir / "SpokenCOCO" / wav,
          1600 + 160 * k,
          freq=220.0 + 40 * coco_id,
      )
      caps.append(
          {
              "text": f"PICTURE {coco_id}",
              "speaker": "s1",
              "uttid": f"u{coco_id}_{k}",
              "wav": wav,
          }
      )
    docs[json_split]["data"].append(
        {"image": f"{folder}/{name}", "captions": caps}
    )
    karpathy.append(
        {
            "filepath": folder,
            "filename": name,
            "split": (
                "restval" if k_split == "train" and coco_id % 2 else k_split
            ),
            "cocoid": coco_id,
        }
    )
  for split, doc in docs.items():
    (manual_dir / "SpokenCOCO" / f"SpokenCOCO_{split}.json").write_text(
        json.dumps(doc)
    )
  (manual_dir / "dataset_coco.json").write_text(
      json.dumps({"images": karpathy, "dataset": "coco"})
  )


def write_msrvtt_tree(manual_dir: Path) -> None:
  """MSR-VTT (CLIP4Clip layout): the writer of tests/test_msrvtt.py with
  40 training videos (a tenth, 4, become the meta set) and 6 test ones
  (multiple-choice evaluation needs 5 distinct captions)."""
  import test_msrvtt  # pylint: disable=import-outside-toplevel

  test_msrvtt.write_msrvtt_tree(manual_dir, num_train=40, num_test=6)


def _write_clip(path: Path, seconds: float, level: int, freq: float) -> None:
  """An mp4 of 32×32 frames at 25 fps whose grey level steps every second
  from ``level``, with a ``freq`` Hz tone."""
  from avjax.data.io import video  # pylint: disable=import-outside-toplevel

  rate, fps = 16000, 25
  frames = np.zeros((int(seconds * fps), 32, 32, 3), np.uint8)
  frames[:] = ((level + 40 * (np.arange(len(frames)) // fps)) % 256).astype(
      np.uint8
  )[:, None, None, None]
  t = np.arange(int(seconds * rate)) / rate
  path.parent.mkdir(parents=True, exist_ok=True)
  video.write_video(path, frames, fps, 0.5 * np.sin(2 * np.pi * freq * t), rate)


def write_vggsound_sparse_tree(manual_dir: Path, n_train: int = 5) -> None:
  """vggsound.csv, the two VGGSound-Sparse lists and video/*.mp4 of 10 s
  (VGGSound's clip length): ``n_train`` train clips, one validation clip
  (a VGGSound test row outside the sparse subset), two sparse test clips
  (so that both synchronisability classes occur in evaluation)."""
  from avjax.data.builders import sync_videos  # pylint: disable=import-outside-toplevel

  clips = [(f"tr{i:03d}", 10 * i, "train") for i in range(n_train)]
  clips += [
      ("val000", 30, "test"),
      ("spa000", 5, "test"),
      ("spa001", 15, "test"),
  ]
  rows = []
  for k, (youtube_id, start, split) in enumerate(clips):
    rows.append(f"{youtube_id},{start},dog barking,{split}")
    name = sync_videos.vggsound_clip_name(youtube_id, start)
    _write_clip(
        manual_dir / "video" / f"{name}.mp4", 10.0, 30 * k, 300 + 40 * k
    )
  (manual_dir / "vggsound.csv").write_text("\n".join(rows) + "\n")
  sparse = sync_videos.vggsound_clip_name("spa000", 5)
  (manual_dir / "vggsound_sparse_clean.csv").write_text(
      "dataset_name,video_id,start_sec,vid_is_missing,is_sync,"
      "is_sync_by_cls_obj\nvggsound_sparse,spa000,5,0,1,1\n"
      "vggsound_sparse,spa001,15,0,1,1\n"
  )
  (manual_dir / "vggsound_sparse_clean_fixed_offsets.csv").write_text(
      "dataset_name,video_id,vstart_sec,offset_sec,is_sync\n"
      f"vggsound_sparse,{sparse},2.4,-1.2,1\n"
      f"vggsound_sparse,{sync_videos.vggsound_clip_name('spa001', 15)},"
      "1.6,0.8,1\n"
  )


def write_lrs3_tree(
    manual_dir: Path, n_trainval: int = 6, n_test: int = 2, seconds: float = 9.0
) -> None:
  """LRS3: trainval/<speaker>/00001.mp4 (the first speaker, sorted, is
  validation) and test/<speaker>/00001.mp4 of ``seconds`` each (LRS3
  utterances are mostly shorter)."""
  for folder, n in (("trainval", n_trainval), ("test", n_test)):
    for i in range(n):
      _write_clip(
          manual_dir / folder / f"spk{i:02d}" / "00001.mp4",
          seconds,
          40 * i,
          300 + 50 * i,
      )


TREE_WRITERS = {
    "ave": lambda d: write_avcmr_tree(d, "AVE_feature_updated_squence.h5", 15),
    "vegas": lambda d: write_avcmr_tree(d, "vegas_feature.h5", 10),
    "flickr8k_audio": write_flickr8k_tree,
    "spokencoco": write_spokencoco_tree,
    "msrvtt": write_msrvtt_tree,
    "lrs3": write_lrs3_tree,
    "vggsound_sparse": write_vggsound_sparse_tree,
}
