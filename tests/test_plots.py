"""Tests for avjax.eval.plots: each function writes a PNG of the stated size."""

import json
import os

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from avjax.eval import plots

DPI = 40  # small figures keep the tests fast


def _check_png(path, width, height):
  assert os.path.isfile(path) and os.path.getsize(path) > 0
  pixels = mpimg.imread(path)
  assert pixels.shape[:2] == (height, width)
  assert pixels.std() > 0  # something was drawn


def test_precision_recall_single_and_per_direction(tmp_path):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(8, 12))
  relevance = rng.random((8, 12)) < 0.3
  relevance[0, 0] = True
  path = plots.plot_precision_recall(
      scores, relevance, tmp_path / "pr.png", "a2v", dpi=DPI
  )
  assert path == str(tmp_path / "pr.png")
  _check_png(path, 5 * DPI, 4 * DPI)
  path = plots.plot_precision_recall(
      {"a2v": scores, "v2a": scores.T},
      {"a2v": relevance, "v2a": relevance.T},
      tmp_path / "sub" / "pr2.png",
      "both",
      dpi=DPI,
  )
  _check_png(path, 5 * DPI, 4 * DPI)
  with pytest.raises(ValueError, match="name different directions"):
    plots.plot_precision_recall(
        {"a2v": scores}, {"v2a": relevance}, tmp_path / "x.png", "bad"
    )
  with pytest.raises(ValueError, match=r"relevance has shape \(8, 11\)"):
    plots.plot_precision_recall(
        scores, relevance[:, :11], tmp_path / "x.png", "bad"
    )


@pytest.mark.parametrize(
    "query_shape,kind",
    [
        ((2, 20, 16), "auto"),  # log-mel spectrograms [Q, T, n_mels]
        ((2, 8, 8, 3), "auto"),  # RGB image queries
        ((2, 8, 8), "image"),  # grey image queries
    ],
)
def test_retrieval_examples(tmp_path, query_shape, kind):
  rng = np.random.default_rng(1)
  queries = rng.normal(size=query_shape)
  retrieved = rng.random((2, 3, 8, 8, 1))
  correct = rng.random((2, 3)) < 0.5
  path = plots.plot_retrieval_examples(
      queries,
      retrieved,
      correct,
      tmp_path / "ex.png",
      title="t",
      query_kind=kind,
      dpi=DPI,
  )
  _check_png(path, int(1.5 * 4 * DPI), int(1.5 * 2 * DPI))


def test_retrieval_examples_variable_length_and_borders(tmp_path):
  rng = np.random.default_rng(2)
  queries = [rng.normal(size=(t, 16)) for t in (10, 25)]
  retrieved = (rng.random((2, 2, 10, 10, 3)) * 255).astype(np.uint8)
  correct = np.array([[True, False], [False, True]])
  path = plots.plot_retrieval_examples(
      queries, retrieved, correct, tmp_path / "ex.png", dpi=100
  )
  _check_png(path, 450, 300)
  pixels = mpimg.imread(path)[..., :3]
  green = np.all(np.abs(pixels - np.array([44, 160, 44]) / 255) < 0.02, -1)
  red = np.all(np.abs(pixels - np.array([214, 39, 40]) / 255) < 0.02, -1)
  assert green.sum() > 100 and red.sum() > 100


def test_retrieval_examples_errors(tmp_path):
  q = np.zeros((2, 20, 16))
  with pytest.raises(ValueError, match=r"correct_mask has shape \(2, 3\)"):
    plots.plot_retrieval_examples(
        q, np.zeros((2, 4, 8, 8)), np.ones((2, 3), bool), tmp_path / "x.png"
    )
  with pytest.raises(ValueError, match=r"retrieved_images must be \[Q=2"):
    plots.plot_retrieval_examples(
        q, np.zeros((3, 4, 8, 8)), np.ones((3, 4), bool), tmp_path / "x.png"
    )
  with pytest.raises(
      ValueError,
      match=r"retrieved_images\[0, 0\] must be an " r"image.*\(8, 8, 2\)",
  ):
    plots.plot_retrieval_examples(
        q, np.zeros((2, 1, 8, 8, 2)), np.ones((2, 1), bool), tmp_path / "x.png"
    )
  with pytest.raises(ValueError, match=r"queries must be .*\(2, 20\)"):
    plots.plot_retrieval_examples(
        np.zeros((2, 20)),
        np.zeros((2, 1, 8, 8)),
        np.ones((2, 1), bool),
        tmp_path / "x.png",
    )


@pytest.mark.parametrize(
    "image_shape,attention_shape",
    [
        ((32, 32), (16,)),
        ((32, 48, 3), (4, 6)),
    ],
)
def test_attention_map(tmp_path, image_shape, attention_shape):
  rng = np.random.default_rng(3)
  path = plots.plot_attention_map(
      rng.random(image_shape),
      rng.random(attention_shape),
      tmp_path / "att.png",
      "digit 7",
      dpi=DPI,
  )
  _check_png(path, 5 * DPI, 4 * DPI)


def test_attention_map_errors(tmp_path):
  with pytest.raises(
      ValueError, match=r"attention of shape \(15,\) is not a " "square"
  ):
    plots.plot_attention_map(np.zeros((8, 8)), np.ones(15), tmp_path / "x.png")
  with pytest.raises(ValueError, match=r"image must be an image.*\(8, 8, 5\)"):
    plots.plot_attention_map(
        np.zeros((8, 8, 5)), np.ones(4), tmp_path / "x.png"
    )
  with pytest.raises(ValueError, match=r"attention must be .*\(2, 2, 2\)"):
    plots.plot_attention_map(
        np.zeros((8, 8)), np.ones((2, 2, 2)), tmp_path / "x.png"
    )


def _write_log(path, records):
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


def test_training_curves(tmp_path):
  log = tmp_path / "log.jsonl"
  records = [{"step": s, "loss": 1.0 / (s + 1)} for s in range(10)]
  records += [{"step": s, "eval/map": s / 10} for s in (4, 9)]
  records += [{"step": 9, "loss": "nan"}]  # resumed run: the last value wins
  _write_log(log, records)
  path = plots.plot_training_curves(
      log, tmp_path / "curves.png", ["loss", "eval/map"], title="run", dpi=DPI
  )
  _check_png(path, int(6.5 * DPI), int(2.25 * 2 * DPI))
  path = plots.plot_training_curves(log, tmp_path / "one.png", "loss", dpi=DPI)
  _check_png(path, int(6.5 * DPI), int(2.25 * DPI))
  assert plt.get_fignums() == []  # nothing registered with pyplot, nothing open


def test_training_curves_errors(tmp_path):
  log = tmp_path / "log.jsonl"
  _write_log(log, [{"step": 0, "loss": 1.0}])
  with pytest.raises(FileNotFoundError, match="missing.jsonl"):
    plots.plot_training_curves(
        tmp_path / "missing.jsonl", tmp_path / "x.png", ["loss"]
    )
  with pytest.raises(ValueError, match=r"no values for \['acc'\].*'loss'"):
    plots.plot_training_curves(log, tmp_path / "x.png", ["acc"])
  with open(log, "a", encoding="utf-8") as f:
    f.write('{"loss": 2.0}\n')
  with pytest.raises(
      ValueError,
      match=r"log.jsonl:2 must be a JSON object " "with a 'step' key",
  ):
    plots.plot_training_curves(log, tmp_path / "x.png", ["loss"])
  _write_log(log, [{"step": 0, "loss": [1, 2]}])
  with pytest.raises(ValueError, match=r"log.jsonl:1: 'loss' is not a scalar"):
    plots.plot_training_curves(log, tmp_path / "x.png", ["loss"])
