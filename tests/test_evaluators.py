"""The evaluators room (avjax/eval/evaluators): each evaluator against an
independent NumPy computation on a fake method's predictions."""

import os
import types

import ml_collections
import numpy as np
import pytest

from avjax import config_utils
from avjax.eval import evaluators
from avjax.methods import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
common = config_utils.import_sibling(
    os.path.join(ROOT, "configs", "x.py"), "common"
)


class _Fixed(base.Method):
  """Predictions read from per-split tables: ``embed`` returns row vectors
  stored in the records, so evaluators see known embeddings."""

  modalities = {"q": base.FEATURES, "g": base.FEATURES}
  similarity = "cosine"

  def __init__(self, splits, predict=None):
    super().__init__(types.SimpleNamespace(eval_batch_size=4))
    self.splits = splits
    self.extra_predict = predict or {}

  def train_iterator(self, *args):
    raise AssertionError("not trained")

  def init_params(self, rng, batch):
    raise AssertionError("not trained")

  def loss_fn(self, *args):
    raise AssertionError("not trained")

  def embed(self, params, modality, inputs):
    return inputs[modality]

  def predict_fns(self):
    return dict(super().predict_fns(), **self.extra_predict)

  def eval_source(self, split):
    table = self.splits[split]
    n = len(next(iter(table.values())))
    return [{k: v[i] for k, v in table.items()} for i in range(n)]

  def eval_inputs(self, records):
    model = {
        k: records[k] for k in ("q", "g", "logits", "sync") if k in records
    }
    meta = {k: v for k, v in records.items() if k not in model}
    return model, meta


def _context(method, split="test"):
  state = types.SimpleNamespace(params={}, aux={})
  return evaluators.EvalContext(method, state, split)


def _cos(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return a @ b.T


def _ap(scores, relevant):
  order = np.argsort(-scores, kind="stable")
  hits = relevant[order]
  ranks = np.flatnonzero(hits) + 1
  return np.mean(np.arange(1, len(ranks) + 1) / ranks)


def test_retrieval_with_groups_unique_gallery_and_median_rank():
  rng = np.random.default_rng(0)
  n = 10
  ids = np.array([0, 0, 1, 2, 2, 3, 4, 5, 6, 6])  # items sharing an image
  groups = np.array([0, 0, 1, 2, 2, 1, 3, 4, 5, 5])  # coarser than ids
  table = {
      "q": rng.normal(size=(n, 4)).astype(np.float32),
      "g": rng.normal(size=(n, 4)).astype(np.float32),
      "image_id": ids,
      "group": groups,
  }
  method = _Fixed({"test": table})
  cfg = common.retrieval_eval(
      "q",
      "g",
      relevance="image_id",
      groups="group",
      gallery_unique="image_id",
      ks=(1, 3),
      median_rank=True,
      prefix="p_",
  )
  got = evaluators.run_all({"r": cfg}, _context(method))
  gallery = np.sort(np.unique(ids, return_index=True)[1])
  s = _cos(table["q"], table["g"][gallery])
  rel = groups[:, None] == groups[gallery][None, :]
  want_map = np.mean([_ap(s[i], rel[i]) for i in range(n)])
  assert got["p_map_q2g"] == pytest.approx(want_map, abs=1e-6)
  top1 = np.argmax(s, axis=1)
  assert got["p_r1_q2g"] == pytest.approx(np.mean(rel[np.arange(n), top1]))
  first = [1 + np.flatnonzero(rel[i][np.argsort(-s[i])])[0] for i in range(n)]
  assert got["p_medr_q2g"] == np.median(first)
  back = [_ap(s.T[j], rel.T[j]) for j in range(len(gallery))]
  assert got["p_map_g2q"] == pytest.approx(np.mean(back), abs=1e-6)
  assert got["p_map_mean"] == pytest.approx(
      (got["p_map_q2g"] + got["p_map_g2q"]) / 2
  )


def test_linear_probe_on_separable_features_and_fewshot_draws():
  rng = np.random.default_rng(1)

  def split(n):
    labels = np.arange(n) % 3
    centres = np.eye(3, 4) * 5.0
    x = centres[labels] + 0.1 * rng.normal(size=(n, 4))
    return {
        "q": x.astype(np.float32),
        "g": -x.astype(np.float32),
        "label": labels,
    }

  method = _Fixed(
      {"train": split(30), "validation": split(12), "test": split(12)}
  )
  cfg = common.linear_probe_eval(
      ("q", "g"), "label", 3, steps=50, fewshot_per_class=2, fewshot_draws=2
  )
  got = evaluators.run_all({"probe": cfg}, _context(method))
  assert set(got) == {
      f"{k}_{m}"
      for k in ("probe_acc", "probe_val_acc", "fewshot_acc")
      for m in ("q", "g")
  }
  assert got["probe_acc_q"] == got["probe_acc_g"] == 1.0
  assert got["fewshot_acc_q"] == 1.0
  bad = common.linear_probe_eval(("q",), "label", 3, fit_on="half")
  with pytest.raises(ValueError, match="fit_on='half'"):
    evaluators.run_all({"probe": bad}, _context(method))


def test_multiple_choice_picks_the_own_caption():
  n = 8
  video = np.eye(n, dtype=np.float32)
  table = {
      "q": video,
      "g": video.copy(),
      "caption": np.array([f"caption {i}" for i in range(n)]),
  }
  method = _Fixed({"test": table})
  cfg = common.multiple_choice_eval(video="q", text="g", captions="caption")
  assert evaluators.run_all({"mc": cfg}, _context(method)) == {
      "mc_accuracy": 1.0
  }
  table["g"] = np.roll(video, 1, axis=0)  # every text belongs to another video
  got = evaluators.run_all({"mc": cfg}, _context(_Fixed({"test": table})))
  assert got["mc_accuracy"] < 0.5


def test_sync_offset_accuracies_and_auc():
  logits = np.array(
      [[0, 5, 0, 0], [0, 0, 5, 0], [5, 0, 0, 0], [0, 0, 0, 5]], np.float32
  )
  sync = np.array([[0, 2], [2, 0], [0, 1], [1, 0]], np.float32)
  table = {
      "logits": logits,
      "sync": sync,
      "offset_label": np.array([1, 1, 2, 3]),
      "sync_label": np.array([1, 0, 0, 1]),
  }
  method = _Fixed(
      {"test": table},
      predict={
          "offsets": lambda p, x: {"offset": x["logits"], "sync": x["sync"]}
      },
  )
  cfg = common.sync_offset_eval(predict="offsets")
  got = evaluators.run_all({"sync": cfg}, _context(method))
  assert got["offset_top1"] == 0.5  # rows 0 and 3
  assert got["offset_top1_tol1"] == 0.75  # and row 1 (one class off)
  assert got["sync_acc"] == 0.5  # rows 0 and 1
  # P(in sync): .88, .12, .73, .27 → positives (rows 0, 3) vs negatives.
  assert got["sync_auc"] == pytest.approx(0.75)


def test_clashing_keys_and_unknown_evaluators_are_named():
  table = {"q": np.eye(3, dtype=np.float32), "g": np.eye(3), "l": np.arange(3)}
  method = _Fixed({"test": table})
  cfg = common.retrieval_eval("q", "g", relevance="l")
  with pytest.raises(ValueError, match="config.evals.second writes metric"):
    evaluators.run_all({"first": cfg, "second": cfg}, _context(method))
  with pytest.raises(ValueError, match="unknown evaluator 'nope'"):
    evaluators.run_all(
        {"x": ml_collections.ConfigDict(dict(cfg, type="nope"))},
        _context(method),
    )
  missing = common.retrieval_eval("q", "g", relevance="label")
  with pytest.raises(ValueError, match="no metadata 'label'"):
    evaluators.run_all({"r": missing}, _context(method))


def test_a_split_is_predicted_once_per_round():
  table = {"q": np.eye(3, dtype=np.float32), "g": np.eye(3), "l": np.arange(3)}
  reads = []

  class Counting(_Fixed):

    def eval_source(self, split):
      reads.append(split)
      return super().eval_source(split)

  context = _context(Counting({"test": table}))
  cfg = common.retrieval_eval("q", "g", relevance="l")
  other = ml_collections.ConfigDict(dict(cfg, prefix="b_"))
  evaluators.run_all({"a": cfg, "b": other}, context)
  assert reads == ["test"]
