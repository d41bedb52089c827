"""Tests for avjax.eval.retrieval against plain-Python references."""

import logging
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from avjax.eval import retrieval


# ----------------------------------------------------------------------------
# Plain-Python references (ties broken by key index, as documented).
# ----------------------------------------------------------------------------
def _ranked(scores_row, rel_row):
  order = sorted(range(len(scores_row)), key=lambda j: (-scores_row[j], j))
  return [bool(rel_row[j]) for j in order]


def ref_ap(scores_row, rel_row):
  hits, total = 0, 0.0
  for pos, rel in enumerate(_ranked(scores_row, rel_row), start=1):
    if rel:
      hits += 1
      total += hits / pos
  return total / hits if hits else math.nan


def ref_recall(scores, relevance, k):
  hits = [any(_ranked(s, r)[:k]) for s, r in zip(scores, relevance) if any(r)]
  return sum(hits) / len(hits)


def ref_interp_pr(scores_row, rel_row, levels):
  ranked = _ranked(scores_row, rel_row)
  num_rel = sum(ranked)
  precision, recall, hits = [], [], 0
  for pos, rel in enumerate(ranked, start=1):
    hits += rel
    precision.append(hits / pos)
    recall.append(hits / num_rel)
  return [
      max(p for p, r in zip(precision, recall) if r >= level - 1e-12)
      for level in levels
  ]


@pytest.fixture(params=[False, True], ids=["host_rank", "device_rank"])
def rank_place(request, monkeypatch):
  monkeypatch.setattr(retrieval, "RANK_ON_DEVICE", request.param)
  return request.param


def _random_problem(seed, n=23, m=37, p=0.2, levels=None):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(n, m)).astype(np.float32)
  if levels:  # quantise to create many exact ties
    scores = np.round(scores * levels) / levels
  relevance = rng.random((n, m)) < p
  return scores.astype(np.float32), relevance


# ----------------------------------------------------------------------------
# Average precision / recall on score matrices
# ----------------------------------------------------------------------------
def test_ap_matches_python_loop_with_ties(rank_place):
  scores, relevance = _random_problem(0, levels=2)
  relevance[4] = False
  got = retrieval.average_precision_per_query(scores, relevance)
  want = [ref_ap(s, r) for s, r in zip(scores, relevance)]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert np.isnan(got[4])


def test_ap_matches_sklearn_on_distinct_scores():
  scores, relevance = _random_problem(1)
  relevance[:, 0] = True  # every query has a relevant key
  got = retrieval.average_precision_per_query(scores, relevance)
  want = [average_precision_score(r, s) for s, r in zip(scores, relevance)]
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ties_are_broken_by_key_index():
  scores = np.zeros((2, 4), np.float32)
  relevance = np.array(
      [[False, True, False, True], [True, False, False, False]]
  )
  ap = retrieval.average_precision_per_query(scores, relevance)
  # Row 0 ranks keys 0, 1, 2, 3: hits at ranks 2 and 4.
  np.testing.assert_allclose(ap, [(1 / 2 + 2 / 4) / 2, 1.0])
  np.testing.assert_array_equal(
      retrieval.first_relevant_rank(scores, relevance), [1, 0]
  )


def test_perfect_and_reversed_rankings():
  m, r = 10, 3
  relevance = np.zeros((1, m), bool)
  relevance[0, :r] = True
  perfect = -np.arange(m, dtype=np.float32)[None]  # key 0 scores highest
  assert retrieval.average_precision_per_query(perfect, relevance)[0] == 1.0
  assert retrieval.recall_at_k(perfect, relevance, ks=(1,)) == {1: 1.0}

  reversed_scores = -perfect  # relevant keys are ranked last
  want = sum(t / (m - r + t) for t in range(1, r + 1)) / r
  np.testing.assert_allclose(
      retrieval.average_precision_per_query(reversed_scores, relevance)[0], want
  )
  assert retrieval.recall_at_k(
      reversed_scores, relevance, ks=(1, m - r, m - r + 1)
  ) == {1: 0.0, m - r: 0.0, m - r + 1: 1.0}


def test_recall_at_k_matches_python_loop():
  scores, relevance = _random_problem(2, p=0.05, levels=3)
  relevance[0] = False
  got = retrieval.recall_at_k(scores, relevance, ks=(1, 5, 10, 100))
  for k, value in got.items():
    assert value == pytest.approx(ref_recall(scores, relevance, k))
  assert got[100] == 1.0  # k beyond M counts the whole list


def test_queries_without_relevant_keys_are_excluded_and_counted(caplog):
  scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.4]], np.float32)
  relevance = np.array([[True, False], [False, False], [False, True]])
  with caplog.at_level(logging.WARNING):
    recall = retrieval.recall_at_k(scores, relevance, ks=(1,))
  assert recall == {1: 0.5}
  assert "1 of 3 queries have no relevant key" in caplog.text
  ap = retrieval.average_precision_per_query(scores, relevance)
  np.testing.assert_allclose(ap, [1.0, np.nan, 0.5])
  assert math.isnan(retrieval.recall_at_k(scores, np.zeros_like(relevance))[1])


def test_interpolated_precision_recall_matches_python_loop(rank_place):
  scores, relevance = _random_problem(3, levels=4)
  relevance[1] = False
  recall, precision = retrieval.interpolated_precision_recall(
      scores, relevance, num_levels=11
  )
  np.testing.assert_allclose(recall, np.linspace(0, 1, 11))
  want = np.mean(
      [
          ref_interp_pr(s, r, recall)
          for s, r in zip(scores, relevance)
          if r.any()
      ],
      axis=0,
  )
  np.testing.assert_allclose(precision, want, rtol=1e-12)
  assert np.all(np.diff(precision) <= 1e-12)  # interpolation is monotone


def test_chunked_padding_gives_same_results(monkeypatch):
  scores, relevance = _random_problem(4, n=11, m=7, p=0.3)
  full = retrieval.average_precision_per_query(scores, relevance)
  monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 3 * 7)  # 4 chunks, padded
  np.testing.assert_array_equal(
      retrieval.average_precision_per_query(scores, relevance), full
  )
  q = np.random.default_rng(0).normal(size=(11, 5))
  np.testing.assert_allclose(
      retrieval.similarity_matrix(q, q[:7]), _np_cosine(q, q[:7]), atol=1e-6
  )


# ----------------------------------------------------------------------------
# Similarity and embedding-based metrics
# ----------------------------------------------------------------------------
def _np_cosine(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return a @ b.T


def test_similarity_matrix_unnormalised_inputs():
  rng = np.random.default_rng(5)
  q = rng.normal(size=(6, 4)) * 10
  k = rng.normal(size=(9, 4)) * 0.1
  np.testing.assert_allclose(
      retrieval.similarity_matrix(q, k), _np_cosine(q, k), atol=1e-6
  )
  dist = np.linalg.norm(q[:, None] - k[None], axis=-1)
  np.testing.assert_allclose(
      retrieval.similarity_matrix(q, k, metric="euclidean"), -dist, atol=1e-4
  )
  zero = retrieval.similarity_matrix(np.zeros((1, 4)), k)
  np.testing.assert_array_equal(zero, 0.0)


@pytest.mark.parametrize(
    "metric,rank_on_device",
    [("cosine", False), ("euclidean", False), ("cosine", True)],
)
def test_mean_average_precision_matches_reference(
    metric, rank_on_device, monkeypatch
):
  monkeypatch.setattr(retrieval, "RANK_ON_DEVICE", rank_on_device)
  rng = np.random.default_rng(6)
  labels_q = rng.integers(0, 4, 15)
  labels_k = rng.integers(0, 4, 21)
  q = rng.normal(size=(15, 8)) + labels_q[:, None]
  k = rng.normal(size=(21, 8)) + labels_k[:, None]
  scores = retrieval.similarity_matrix(q, k, metric)
  relevance = labels_q[:, None] == labels_k[None]
  want = np.nanmean([ref_ap(s, r) for s, r in zip(scores, relevance)])
  got = retrieval.mean_average_precision(q, labels_q, k, labels_k, metric)
  assert isinstance(got, float)
  assert got == pytest.approx(want, rel=1e-9)
  # Any comparable label type works, including int64 beyond int32.
  names = np.array(["cat", "dog", "owl", "bee"])
  assert retrieval.mean_average_precision(
      q, names[labels_q], k, names[labels_k], metric
  ) == pytest.approx(want)
  big = np.int64(2**40)
  assert retrieval.mean_average_precision(
      q, labels_q + big, k, labels_k + big, metric
  ) == pytest.approx(want)


def test_perfect_embeddings_give_map_one():
  labels = np.array([0, 1, 2, 0, 1, 2])
  emb = np.eye(3)[labels] * np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
  assert retrieval.mean_average_precision(emb, labels, emb, labels) == 1.0


def test_cross_modal_metrics_class_labels():
  rng = np.random.default_rng(7)
  labels_a = rng.integers(0, 3, 12)
  labels_v = rng.integers(0, 3, 10)
  audio = rng.normal(size=(12, 6)) + 2 * np.eye(6)[labels_a]
  visual = rng.normal(size=(10, 6)) + 2 * np.eye(6)[labels_v]
  out = retrieval.cross_modal_retrieval_metrics(
      audio, visual, labels_a, labels_v, ks=(1, 5), prefix="test/"
  )
  assert set(out) == {
      f"test/{k}"
      for k in [
          "map_a2v",
          "map_v2a",
          "map_mean",
          "r1_a2v",
          "r5_a2v",
          "r1_v2a",
          "r5_v2a",
          "r1_mean",
          "r5_mean",
          "r_mean",
      ]
  }
  assert all(isinstance(v, float) for v in out.values())
  s = retrieval.similarity_matrix(audio, visual)
  rel = labels_a[:, None] == labels_v[None]
  assert out["test/map_a2v"] == pytest.approx(
      np.mean([ref_ap(a, b) for a, b in zip(s, rel)])
  )
  assert out["test/map_v2a"] == pytest.approx(
      np.mean([ref_ap(a, b) for a, b in zip(s.T, rel.T)]), rel=1e-6
  )
  assert out["test/r5_v2a"] == pytest.approx(ref_recall(s.T, rel.T, 5))
  assert out["test/map_mean"] == pytest.approx(
      (out["test/map_a2v"] + out["test/map_v2a"]) / 2
  )
  assert out["test/r_mean"] == pytest.approx(
      np.mean([out[f"test/r{k}_{d}"] for k in (1, 5) for d in ("a2v", "v2a")])
  )


def test_cross_modal_metrics_caption_ids():
  # Three images, two spoken captions each (CMD-style relevance by image id).
  image_ids = np.array([10, 20, 30])
  caption_ids = np.array([10, 10, 20, 20, 30, 30])
  images = np.eye(3)
  # Captions 0, 2, 4 match their image; 1, 3, 5 lean towards the next image.
  speech = np.array(
      [
          [1.0, 0.0, 0.0],
          [0.5, 0.8, 0.0],
          [0.0, 1.0, 0.0],
          [0.0, 0.5, 0.8],
          [0.0, 0.0, 1.0],
          [0.8, 0.0, 0.5],
      ]
  )
  out = retrieval.cross_modal_retrieval_metrics(
      speech, images, caption_ids, image_ids, ks=(1, 2), names=("s", "i")
  )
  # speech->image: captions 0, 2, 4 hit at rank 1; 1, 3, 5 at rank 2.
  assert out["r1_s2i"] == pytest.approx(0.5)
  assert out["r2_s2i"] == 1.0
  assert out["map_s2i"] == pytest.approx((3 * 1.0 + 3 * 0.5) / 6)
  # image->speech: each image ranks its good caption 1st, a stray caption of
  # another image 2nd and its own leaning caption 3rd.
  assert out["r1_i2s"] == 1.0
  assert out["map_i2s"] == pytest.approx((1.0 + 2 / 3) / 2)
  assert "map_a2v" not in out and "map_mean" in out


def test_cross_modal_metrics_with_relevance_groups_match_numpy_loop():
  rng = np.random.default_rng(8)
  caption_ids = rng.integers(0, 12, 30)  # 30 captions of 12 images
  image_ids = np.arange(12)
  image_groups = image_ids // 3  # 4 groups of 3 images
  speech = rng.normal(size=(30, 5))
  images = rng.normal(size=(12, 5))
  out = retrieval.cross_modal_retrieval_metrics(
      speech,
      images,
      caption_ids,
      image_ids,
      ks=(1, 3),
      names=("s", "i"),
      audio_groups=caption_ids // 3,
      visual_groups=image_groups,
  )
  s = _np_cosine(speech, images)
  rel = (caption_ids[:, None] // 3) == image_groups[None]
  assert out["map_s2i"] == pytest.approx(
      np.mean([ref_ap(a, b) for a, b in zip(s, rel)]), rel=1e-6
  )
  assert out["map_i2s"] == pytest.approx(
      np.nanmean([ref_ap(a, b) for a, b in zip(s.T, rel.T)]), rel=1e-6
  )
  for k in (1, 3):
    assert out[f"r{k}_s2i"] == pytest.approx(ref_recall(s, rel, k))
    assert out[f"r{k}_i2s"] == pytest.approx(ref_recall(s.T, rel.T, k))
  # Exact-id relevance gives other numbers here; groups equal to the ids
  # give exactly the exact-id numbers.
  exact = retrieval.cross_modal_retrieval_metrics(
      speech, images, caption_ids, image_ids, ks=(1, 3), names=("s", "i")
  )
  assert exact["map_s2i"] < out["map_s2i"]
  assert (
      retrieval.cross_modal_retrieval_metrics(
          speech,
          images,
          caption_ids,
          image_ids,
          ks=(1, 3),
          names=("s", "i"),
          audio_groups=caption_ids,
          visual_groups=image_ids,
      )
      == exact
  )


def test_relevance_group_errors():
  emb = np.eye(3)
  with pytest.raises(ValueError, match="give both audio_groups"):
    retrieval.cross_modal_retrieval_metrics(
        emb, emb, [0, 1, 2], [0, 1, 2], audio_groups=[0, 0, 1]
    )
  with pytest.raises(ValueError, match=r"visual_groups has shape \(2,\)"):
    retrieval.cross_modal_retrieval_metrics(
        emb,
        emb,
        [0, 1, 2],
        [0, 1, 2],
        audio_groups=[0, 0, 1],
        visual_groups=[0, 0],
    )
  # Caption of image 1 in group 0 but image 1 in group 1: not coarser.
  with pytest.raises(ValueError, match="id 1 appears with 2 different group"):
    retrieval.cross_modal_retrieval_metrics(
        emb,
        emb,
        [0, 1, 2],
        [0, 1, 2],
        audio_groups=[0, 0, 1],
        visual_groups=[0, 1, 1],
    )


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------
def test_errors_name_the_argument_and_shape():
  scores = np.zeros((3, 4))
  with pytest.raises(ValueError, match=r"relevance has shape \(3, 5\)"):
    retrieval.average_precision_per_query(scores, np.zeros((3, 5), bool))
  with pytest.raises(ValueError, match=r"scores must be 2-D.*\(4,\)"):
    retrieval.recall_at_k(np.zeros(4), np.zeros(4, bool))
  with pytest.raises(ValueError, match=r"relevance must be boolean"):
    retrieval.average_precision_per_query(scores, np.full((3, 4), 2))
  with pytest.raises(ValueError, match=r"query_labels has shape \(2,\)"):
    retrieval.mean_average_precision(
        np.ones((3, 2)), [0, 1], np.ones((4, 2)), [0, 1, 0, 1]
    )
  with pytest.raises(ValueError, match=r"key_emb has shape \(4, 3\)"):
    retrieval.mean_average_precision(
        np.ones((3, 2)), [0, 1, 2], np.ones((4, 3)), [0, 1, 0, 1]
    )
  with pytest.raises(ValueError, match=r"visual_ids has shape \(3,\)"):
    retrieval.cross_modal_retrieval_metrics(
        np.ones((2, 2)), np.ones((4, 2)), [0, 1], [0, 1, 2]
    )
  with pytest.raises(ValueError, match="audio_emb contains NaN"):
    retrieval.cross_modal_retrieval_metrics(
        np.full((2, 2), np.nan), np.ones((2, 2)), [0, 1], [0, 1]
    )
  with pytest.raises(ValueError, match="metric must be one of"):
    retrieval.similarity_matrix(np.ones((2, 2)), np.ones((2, 2)), "dot")
  with pytest.raises(ValueError, match="positive int"):
    retrieval.recall_at_k(scores, np.ones((3, 4), bool), ks=(0,))
  with pytest.raises(ValueError, match="names must be two distinct"):
    retrieval.cross_modal_retrieval_metrics(
        np.ones((2, 2)), np.ones((2, 2)), [0, 1], [0, 1], names=("a", "a")
    )
