"""TSTL-CA: two-stage triplet learning with curriculum augmentation.

Zeng & Ikeda, arXiv 2310.13451 (audio↔visual cross-modal retrieval).

Stage 1 trains the two encoders with cross-modal semi-hard triplets in both
directions (audio anchors against visual keys and visual anchors against
audio keys). Stage 2 continues from stage 1's weights; hard triplets are rare
by then, so each anchor's key set is augmented with synthetic negatives
interpolated from real negatives towards the anchor, and the hardest negative
is mined in the augmented space. The interpolation coefficient follows a
curriculum that rises over stage 2, making the synthetic negatives harder.

Choices the paper leaves open (all config fields):
  * embeddings are L2-normalised; distance is plain Euclidean; margin 0.2
    (FaceNet's value for normalised embeddings) — ``config.loss``;
  * interpolation: n' = n + α (a − n) for each anchor a and negative key n,
    α rising linearly from ``alpha_start`` to ``alpha_end`` over stage 2
    (Embedding Expansion / HDML style) — ``config.stages[1]``;
  * stage 2 mines, per anchor, the hardest real positive and the hardest
    negative among the real negatives and the anchor's own synthetic ones
    (``losses.interpolated_hard_triplet``; a synthetic key is never another
    anchor's positive); ``semihard_weight`` optionally keeps stage 1's loss.
"""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np

from avjax import losses
from avjax.data.pipeline import features as features_lib
from avjax.data.pipeline import iterators
from avjax.data.pipeline import sources
from avjax.eval import plots
from avjax.eval import retrieval
from avjax.methods import base
from avjax.models import encoders
from avjax.models import precision
from avjax.train.stages import Stage

_FEATURE_VECTOR_DATASETS = ("ave", "vegas")


def _batch_transform(data_cfg: ml_collections.ConfigDict):
  """Numpy batch → model inputs: {'audio', 'visual', 'label'}."""
  if _uses_feature_vectors(data_cfg):

    def transform(batch):
      return {
          "audio": np.asarray(batch["audio"], np.float32),
          "visual": np.asarray(batch["visual"], np.float32),
          "label": np.asarray(batch["label"], np.int32),
      }

  else:
    pairs = features_lib.PairsFeatures(
        features_lib.MelSpec(**dict(data_cfg.log_mel))
    )

    def transform(batch):
      out = pairs(batch)
      return {
          "audio": out["audio"],
          "visual": out["image"],
          "label": out["label"],
      }

  return transform


class TSTLCA(base.AudioVisualEmbedding, base.Method):
  """Cross-modal triplet retrieval with the two-stage curriculum."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    dtype = precision.config_dtype(config)
    self.model = encoders.TwoTower(
        audio_encoder=encoders.make_encoder(
            m.audio_encoder, m.embed_dim, dtype, **dict(m.audio_kwargs)
        ),
        visual_encoder=encoders.make_encoder(
            m.visual_encoder, m.embed_dim, dtype, **dict(m.visual_kwargs)
        ),
        normalize=m.normalize,
    )
    self.transform = _batch_transform(config.data)
    self._feature_vectors = _uses_feature_vectors(config.data)

  # Contract -----------------------------------------------------------------
  @property
  def modalities(self) -> dict[str, str]:
    kind = base.FEATURES if self._feature_vectors else None
    return {"audio": kind or base.AUDIO, "visual": kind or base.IMAGE}

  @property
  def similarity(self) -> str:
    return "cosine" if self.config.loss.metric == "cosine" else "euclidean"

  # Data -------------------------------------------------------------------
  def _source(self, split: str):
    return sources.load_config_source(self.config.data, split)

  def train_iterator(self, batch_size, seed, process_index, process_count):
    return iterators.make_train_iterator(
        self._source("train"),
        batch_size=batch_size,
        seed=seed,
        batch_transform=self.transform,
        process_index=process_index,
        process_count=process_count,
        cache=self.config.data.cache_features,
    )

  # Model ------------------------------------------------------------------
  def init_params(self, rng, batch):
    # One compiled program instead of ~180 op-by-op compilations (seconds
    # of every run's start-up on CPU); the values are bit-identical.
    return jax.jit(self.model.init)(
        rng, np.asarray(batch["audio"][:2]), np.asarray(batch["visual"][:2])
    )

  def encode(self, params, audio=None, visual=None, rng=None):
    """(audio [B, E], visual [B, E]) embeddings; dropout when rng given."""
    train = rng is not None
    return self.model.apply(
        params,
        audio,
        visual,
        train=train,
        rngs={"dropout": rng} if train else None,
    )

  # Loss -------------------------------------------------------------------
  def loss_fn(self, params, batch, rng, stage: Stage, step):
    cfg = self.config.loss
    a, v = self.encode(params, batch["audio"], batch["visual"], rng=rng)
    labels = batch["label"]
    triplet = functools.partial(
        losses.cross_modal_triplet, margin=cfg.margin, metric=cfg.metric
    )
    opts = stage.options
    kind = opts.loss
    if kind == "semihard":
      loss = 0.5 * (
          triplet(a, labels, v, labels, mining="semihard")
          + triplet(v, labels, a, labels, mining="semihard")
      )
      return loss, {}
    if kind == "interpolated_hard":
      alpha = opts.alpha_start + (opts.alpha_end - opts.alpha_start) * (
          stage.progress(step)
      )
      loss = 0.5 * (
          self._interpolated_hard(a, v, labels, alpha)
          + self._interpolated_hard(v, a, labels, alpha)
      )
      w = opts.semihard_weight
      if w:
        loss = loss + w * 0.5 * (
            triplet(a, labels, v, labels, mining="semihard")
            + triplet(v, labels, a, labels, mining="semihard")
        )
      return loss, {"alpha": alpha}
    raise ValueError(
        f"config.stages[{stage.index}].loss={kind!r} is not one "
        "of ['semihard', 'interpolated_hard']"
    )

  def _interpolated_hard(self, queries, keys, labels, alpha):
    cfg = self.config.loss
    return losses.interpolated_hard_triplet(
        queries,
        labels,
        keys,
        labels,
        alpha,
        margin=cfg.margin,
        metric=cfg.metric,
    )

  # Prediction and evaluation -------------------------------------------------
  def eval_source(self, split):
    return self._source(split)

  def eval_inputs(self, records):
    out = self.transform(records)
    return {"audio": out["audio"], "visual": out["visual"]}, {
        "label": out["label"]
    }

  def modality_inputs(self, modality, records):
    if self._feature_vectors:
      return {modality: np.stack(records).astype(np.float32)}
    if modality == "audio":  # Records are (waveform, valid length).
      return {
          "audio": self._features({"audio": np.stack([w for w, _ in records])})[
              "audio"
          ]
      }
    return {"visual": self._features({"image": np.stack(records)})["image"]}

  @functools.cached_property
  def _features(self):
    return features_lib.PairsFeatures(
        features_lib.MelSpec(**dict(self.config.data.log_mel))
    )

  def extra_metrics(self, context, run):
    """Top-5 images of spoken-digit queries (``plots/``, test split)."""
    del run
    if context.plot_dir and not self._feature_vectors:
      emb = context.embeddings(("audio", "visual"))
      self._plot_retrieval_examples(emb, context.plot_dir)
    return {}

  def _plot_retrieval_examples(self, emb, plot_dir: str) -> None:
    source = self._source("test")
    queries = np.arange(min(6, len(emb["label"])))
    scores = retrieval.similarity_matrix(
        emb["audio"][queries], emb["visual"], self.similarity
    )
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    raw = {"audio": [], "visual": []}
    for q in queries:
      raw["audio"].append(self.transform(_one(source[int(q)]))["audio"][0])
    for row in top:
      raw["visual"].append(
          [self.transform(_one(source[int(j)]))["visual"][0] for j in row]
      )
    labels = np.asarray(emb["label"])
    plots.plot_retrieval_examples(
        np.stack(raw["audio"]),
        np.asarray(raw["visual"]),
        labels[queries][:, None] == labels[top],
        os.path.join(plot_dir, "retrieval_examples.png"),
        title="Spoken-digit queries → top-5 images (test)",
    )


def _one(record) -> dict:
  """One record as a batch of one."""
  return {k: np.asarray(v)[None] for k, v in record.items()}


def _uses_feature_vectors(data_cfg: ml_collections.ConfigDict) -> bool:
  return sources.split_name(data_cfg.name)[0] in _FEATURE_VECTOR_DATASETS
