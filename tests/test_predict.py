"""launch/predict.py end to end: a quick run of launch/main.py, then search
and offset prediction from the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from avjax import inference
from avjax.data.io import video as video_lib
from avjax.data.pipeline import sources

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_inference import _init_only_workdir  # noqa: E402
from test_inference import _tiny_sync_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "launch", "main.py")
PREDICT = os.path.join(ROOT, "launch", "predict.py")


def _run(*args):
  return subprocess.run(
      [sys.executable, *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=900,
  )


@pytest.fixture(scope="module")
def quick_workdir(tmp_path_factory, av_digits_pairs_dir):
  workdir = str(tmp_path_factory.mktemp("quick"))
  out = _run(
      MAIN,
      f"--config={ROOT}/configs/tstl_ca.py:quick,one_stage,steps=6",
      f"--workdir={workdir}",
      f"--config.data.data_dir={av_digits_pairs_dir}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


@pytest.fixture(scope="module")
def files(tmp_path_factory, av_digits_pairs_dir):
  """3 query wavs and a gallery directory of 12 PNGs from the test split."""
  root = tmp_path_factory.mktemp("files")
  source = sources.load_source(
      "av_digits/pairs", "test", data_dir=av_digits_pairs_dir
  )
  queries = []
  for i in range(3):
    path = str(root / f"query{i}.wav")
    soundfile.write(path, source[i]["audio"], 16000, subtype="PCM_16")
    queries.append(path)
  gallery = root / "gallery"
  gallery.mkdir()
  for i in range(12):
    Image.fromarray(source[i]["image"]).save(gallery / f"digit{i:02d}.png")
  return queries, str(gallery), root


@pytest.mark.slow
def test_search_from_the_command_line(quick_workdir, files):
  queries, gallery, root = files
  out_json, saved = str(root / "results.json"), str(root / "gallery.npz")
  # Files after --queries, space-separated, as a shell glob gives them.
  out = _run(
      PREDICT,
      f"--workdir={quick_workdir}",
      "--queries",
      *queries,
      f"--gallery={gallery}",
      "--k=3",
      f"--out={out_json}",
      f"--save_gallery={saved}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(out_json, encoding="utf-8") as f:
    result = json.load(f)
  assert result["method"] == "tstl_ca" and result["metric"] == "euclidean"
  assert [r["query"] for r in result["results"]] == queries
  # The same ranking as the library on the same files.
  model = inference.load(quick_workdir)
  want = model.search(
      model.embed("audio", queries), model.gallery("visual", gallery), k=3
  )
  for row, names, scores in zip(result["results"], want.names, want.scores):
    assert [m["name"] for m in row["matches"]] == names
    np.testing.assert_allclose(
        [m["score"] for m in row["matches"]], scores, atol=1e-5
    )
    assert row["matches"][0]["name"] in out.stdout
  assert "minus the Euclidean distance" in out.stdout
  # The saved gallery gives the same answer without re-embedding.
  again = _run(
      PREDICT,
      f"--workdir={quick_workdir}",
      f"--queries={','.join(queries)}",
      f"--gallery={saved}",
      "--k=3",
      f"--out={root / 'again.json'}",
  )
  assert again.returncode == 0, again.stderr[-3000:]
  with open(root / "again.json", encoding="utf-8") as f:
    assert json.load(f)["results"] == result["results"]


@pytest.mark.slow
def test_command_line_errors_name_the_file_or_workdir(
    quick_workdir, files, tmp_path
):
  queries, gallery, _ = files
  bad = tmp_path / "broken.wav"
  bad.write_text("not audio at all")
  out = _run(
      PREDICT,
      f"--workdir={quick_workdir}",
      f"--queries={queries[0]},{bad}",
      f"--gallery={gallery}",
  )
  assert out.returncode != 0 and str(bad) in out.stderr
  with_bad = tmp_path / "gallery"
  shutil.copytree(gallery, with_bad)
  bad_image = with_bad / "digit05_broken.png"
  bad_image.write_text("not an image")
  skipped = _run(
      PREDICT,
      f"--workdir={quick_workdir}",
      f"--queries={queries[0]},{bad}",
      f"--gallery={with_bad}",
      "--skip_bad_files",
      f"--out={tmp_path / 'r.json'}",
  )
  assert skipped.returncode == 0, skipped.stderr[-3000:]
  with open(tmp_path / "r.json", encoding="utf-8") as f:
    result = json.load(f)
  # Gallery files and queries alike are listed (gallery files were not).
  assert [s["file"] for s in result["skipped"]] == [str(bad_image), str(bad)]
  assert len(result["results"]) == 1
  assert str(bad_image) not in json.dumps(result["results"])
  # Nothing readable left: an error naming the files, not a shape mismatch.
  nothing = _run(
      PREDICT,
      f"--workdir={quick_workdir}",
      f"--queries={bad}",
      f"--gallery={with_bad}",
      "--skip_bad_files",
  )
  assert nothing.returncode != 0
  assert "no readable audio input" in nothing.stderr
  assert str(bad) in nothing.stderr
  empty = tmp_path / "empty_workdir"
  empty.mkdir()
  with open(os.path.join(quick_workdir, "config.json")) as src:
    (empty / "config.json").write_text(src.read())
  out = _run(PREDICT, f"--workdir={empty}", f"--videos={queries[0]}")
  assert out.returncode != 0
  assert str(empty) in out.stderr and "no checkpoints" in out.stderr


@pytest.mark.slow
def test_offsets_from_the_command_line(av_digits_dir, tmp_path):
  config = _tiny_sync_config(av_digits_dir.prepare("sync"))
  workdir = _init_only_workdir(config, str(tmp_path / "sync"))
  rng = np.random.default_rng(0)
  video = str(tmp_path / "long.mp4")
  video_lib.write_video(
      video,
      rng.integers(0, 255, (200, 32, 32), dtype=np.uint8),
      25.0,
      rng.normal(0, 0.1, 200 * 640).astype(np.float32),
      16000,
  )
  plots = tmp_path / "plots"
  out_json = tmp_path / "offsets.json"
  out = _run(
      PREDICT,
      f"--workdir={workdir}",
      f"--videos={video}",
      f"--plots={plots}",
      "--windows",
      f"--out={out_json}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(out_json, encoding="utf-8") as f:
    (row,) = json.load(f)["results"]
  # 200 frames, windows of 120 (4.8 s) every 60 frames: starts 0, 60, 80.
  assert [w["start_seconds"] for w in row["windows"]] == [0.0, 2.4, 3.2]
  assert len(row["probabilities"]) == 21
  assert abs(sum(row["probabilities"]) - 1.0) < 1e-6
  assert (
      row["offset_seconds"]
      == row["offsets"][int(np.argmax(row["probabilities"]))]
  )
  assert os.path.getsize(row["plot"]) > 0
  assert f"{row['offset_seconds']:+.1f}" in out.stdout
