"""AVC: positive / negative sampling for audio-visual correspondence.

Wang, Tripathy, Heittola & Mesaros, "Positive and negative sampling
strategies for self-supervised learning on audio-video data", arXiv
2402.02899 (ICASSP 2024 workshops).

The self-supervised task is audio-visual correspondence: for an audio anchor,
is this visual clip its partner? Which visual clips are shown as positives
and negatives is the object of study (``avjax.methods.sampling``): the own
paired clip or a *soft positive* (another clip of the same class), and
random, easy (far, other class) or hard (close, other class) negatives. The
encoders are then judged by linear probes on frozen features
(``avjax.eval.linear_probe``), against a supervised baseline trained with
the labels end to end.

Objectives (``config.avc.objective``); each audio anchor gets one chosen
positive and K = ``sampling.num_negatives`` distinct chosen negatives:
  * ``contrastive`` (default): a softmax over the anchor's (positive, K
    negatives) cosine similarities / temperature, cross-entropy towards the
    positive; invalid (fallback) negatives are masked out.
  * ``binary``: the classic AVC head (L3-Net): a ``CorrespondenceHead`` on
    the fused (audio, visual) embeddings, binary cross-entropy with the
    positive pair labelled 1 and the K negative pairs 0, the two halves
    weighted equally.
  * ``info_nce``: ``losses.info_nce(audio, visual[positive])``: row i's
    positive is its chosen positive, every other row's partner a negative
    (in-batch, so only random negatives; the config rejects easy/hard).
  * ``supervised``: the baseline: a ``LinearClassifier`` per modality on the
    embeddings, mean cross-entropy of the two, on the sampling labels.

Decisions the paper leaves open (all config fields):
  * partners are mined in-batch on device (pure jnp, inside the jitted step):
    batches are drawn at random (no class-aware batching), so a soft positive
    exists for an anchor whose class has another clip in the batch; otherwise
    it falls back to its own pair and the fallback rate is logged;
  * K = 8 negatives per anchor (the paper's AVC loader draws one; with one,
    the objectives learn far slower per step, and K is the same for
    every strategy, so the comparison stays controlled);
  * easy / hard negatives are farthest / closest by the current embedding
    distance (cosine) between the anchor clip's *visual* embedding and the
    candidates' (``sampling.mining_space``; "cross", anchor audio vs
    candidate visual, is available but collapses the contrastive objective
    on AV-digits: probe accuracies fall to 0.4–0.5); easy negatives may use
    label distance instead;
  * the default objective is ``contrastive``: on AV-digits (all data, seed
    0, 300 steps, random negatives) the binary head reaches 0.78
    correspondence accuracy and its encoders probe at 0.94 / 0.80 (audio /
    visual; few-label 0.81 / 0.65), the contrastive form's at 0.97 / 0.92
    (0.95 / 0.89); untrained encoders: 0.78 / 0.74 (0.48 / 0.47);
  * the linear probe is fitted on the full training split (every strategy is
    probed on the same labelled data; ``evals.probe.fit_on="subset"`` uses the
    training subset instead), L2 chosen on validation; a few-label probe
    (``evals.probe.fewshot_per_class`` clips per class, fixed draws) is reported as
    well: full-label probes of several strategies saturate near 0.98 on
    AV-digits audio, and the paper's claim is about scarce labels;
  * training features are computed once per split and served from memory
    (no augmentation is used);
  * subsets (``data.per_class`` / ``data.imbalance_ratio``) are chosen from
    the annotation, seeded by ``config.seed``;
  * a labels file replaces the labels used by sampling and by the supervised
    objective; probes always use the annotation.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avjax import losses
from avjax.data.io import labels_file
from avjax.data.pipeline import features as features_lib
from avjax.data.pipeline import iterators
from avjax.data.pipeline import sources
from avjax.data.pipeline import subsets
from avjax.methods import base
from avjax.methods import sampling
from avjax.models import encoders
from avjax.models import heads
from avjax.models import precision
from avjax.models import temperature as temperature_lib
from avjax.train.stages import Stage

OBJECTIVES = ("binary", "contrastive", "info_nce", "supervised")
MINING_SPACES = ("visual", "cross", "audio")
EASY_DISTANCES = ("embedding", "label")

# Whole splits as model inputs, shared by every AVC run of a process (a sweep
# trains many configs on the same data): key → dict of numpy arrays.
_SPLIT_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def batch_transform(mel_kwargs: dict[str, Any]):
  """Numpy batch of `pairs` records → {'audio', 'visual', 'label',
  'true_label', 'id'}.

  audio: float32 [B, T, n_mels] log-mel; visual: float32 [B, H, W, 1] in
  [0, 1]; label, true_label: int32 [B] the annotation (training batches get
  a labels file's classes as 'label', see ``AVC.train_iterator``); id: int32
  [B] clip ids.
  """
  features = features_lib.PairsFeatures(features_lib.MelSpec(**mel_kwargs))

  def transform(batch):
    f = features(batch)
    return {
        "audio": f["audio"],
        "visual": f["image"],
        "label": f["label"],
        "true_label": f["label"],
        "id": f["clip_id"],
    }

  return transform


def _check_choice(value: str, valid: tuple[str, ...], field: str) -> None:
  if value not in valid:
    raise ValueError(f"{field}={value!r} is not one of {list(valid)}")


class AVC(base.AudioVisualEmbedding, base.Method):
  """Audio-visual correspondence with configurable partner sampling."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    self.objective = config.avc.objective
    _check_choice(self.objective, OBJECTIVES, "config.avc.objective")
    s = config.sampling
    _check_choice(s.mining_space, MINING_SPACES, "config.sampling.mining_space")
    _check_choice(
        s.easy_distance, EASY_DISTANCES, "config.sampling.easy_distance"
    )
    self.positives = {k: float(v) for k, v in s.positives.items()}
    self.negatives = {k: float(v) for k, v in s.negatives.items()}
    if self.objective == "info_nce" and any(
        w > 0 for k, w in self.negatives.items() if k != "random"
    ):
      raise ValueError(
          f"config.sampling.negatives={self.negatives}: the info_nce "
          "objective uses in-batch negatives; easy/hard need objective "
          "'binary' or 'contrastive'"
      )
    dtype = precision.config_dtype(config)
    self.towers = encoders.TwoTower(
        audio_encoder=encoders.make_encoder(
            m.audio_encoder, m.embed_dim, dtype, **dict(m.audio_kwargs)
        ),
        visual_encoder=encoders.make_encoder(
            m.visual_encoder, m.embed_dim, dtype, **dict(m.visual_kwargs)
        ),
        normalize=m.normalize,
    )
    self.head = heads.CorrespondenceHead(
        hidden_dims=tuple(m.head_hidden_dims),
        fusion=m.fusion,
        dtype=dtype,
    )
    self.num_classes = int(config.data.num_classes)
    self.classifier = heads.LinearClassifier(self.num_classes, dtype=dtype)
    self.transform = batch_transform(dict(config.data.log_mel))
    temperature = temperature_lib.LearnedTemperature.from_config(
        config.loss.temperature
    )
    if temperature.learn:
      raise ValueError(
          "config.loss.temperature.learn=True: AVC's objectives use a fixed "
          "temperature"
      )
    self.temperature = temperature.init

  # Contract -----------------------------------------------------------------
  modalities = {"audio": base.AUDIO, "visual": base.IMAGE}

  @property
  def similarity(self) -> str:
    return "cosine" if self.config.sampling.metric == "cosine" else "euclidean"

  # Data -------------------------------------------------------------------
  def _source(self, split: str):
    return sources.load_config_source(self.config.data, split)

  def split_arrays(self, split: str) -> dict[str, np.ndarray]:
    """A whole split as model inputs (cached per process); see
    ``batch_transform`` for the keys."""
    d = self.config.data
    key = (
        d.name,
        split,
        d.data_dir,
        d.manual_dir,
        tuple(sorted(dict(d.log_mel).items())),
    )
    if key not in _SPLIT_CACHE:
      _SPLIT_CACHE[key] = iterators.load_split(
          self._source(split), self.transform
      )
    return _SPLIT_CACHE[key]

  @functools.cached_property
  def train_indices(self) -> np.ndarray:
    """Indices of the training subset within the train split."""
    d = self.config.data
    labels = self.split_arrays("train")["true_label"]
    return subsets.subset_indices(
        labels,
        per_class=d.per_class or None,
        imbalance_ratio=float(d.imbalance_ratio),
        seed=int(self.config.seed),
        min_per_class=int(d.min_per_class),
    )

  @functools.cached_property
  def sampling_labels(self) -> np.ndarray | None:
    """int32 [N_train] labels from ``sampling.labels_file``, or None."""
    path = self.config.sampling.labels_file
    if not path:
      return None
    return labels_file.labels_for_clips(
        path, self.split_arrays("train")["id"], self.num_classes
    )

  def train_iterator(self, batch_size, seed, process_index, process_count):
    idx = self.train_indices
    if len(idx) < batch_size:
      d = self.config.data
      raise ValueError(
          f"The training subset has {len(idx)} examples (data.per_class="
          f"{d.per_class}, data.imbalance_ratio="
          f"{d.imbalance_ratio}), fewer than data.batch_size="
          f"{batch_size}; lower the batch size or enlarge the subset"
      )
    # Features are computed once per split (cached) and served from memory:
    # there is no augmentation, and recomputing log-mels every epoch of a
    # small training set would cost as much as the train step itself.
    relabel = self.sampling_labels
    source = subsets.SubsetSource(
        iterators.ArraySource(self.split_arrays("train")),
        idx,
        labels=None if relabel is None else relabel[idx],
    )
    return iterators.make_train_iterator(
        source,
        batch_size=batch_size,
        seed=seed,
        batch_transform=None,
        process_index=process_index,
        process_count=process_count,
    )

  # Model ------------------------------------------------------------------
  def init_params(self, rng, batch):
    # Jitted as one program (see TSTLCA.init_params); bit-identical values.
    return jax.jit(self._init_params)(
        rng, np.asarray(batch["audio"][:2]), np.asarray(batch["visual"][:2])
    )

  def _init_params(self, rng, audio, visual):
    k_towers, k_a, k_v = jax.random.split(rng, 3)
    params = {"towers": self.towers.init(k_towers, audio, visual)}
    a, v = self.towers.apply(params["towers"], audio, visual)
    if self.objective == "binary":
      params["head"] = self.head.init(k_a, a, v)
    elif self.objective == "supervised":
      params["cls_audio"] = self.classifier.init(k_a, a)
      params["cls_visual"] = self.classifier.init(k_v, v)
    return params

  def encode(self, params, audio=None, visual=None, rng=None):
    """(audio [B, E], visual [B, E]) embeddings; dropout when rng given."""
    train = rng is not None
    return self.towers.apply(
        params["towers"],
        audio,
        visual,
        train=train,
        rngs={"dropout": rng} if train else None,
    )

  # Loss -------------------------------------------------------------------
  def _distances(self, a: jax.Array, v: jax.Array) -> jax.Array:
    """[B, B] anchor→candidate distances for mining (no gradient)."""
    s = self.config.sampling
    a, v = jax.lax.stop_gradient(a), jax.lax.stop_gradient(v)
    x, y = {"visual": (v, v), "cross": (a, v), "audio": (a, a)}[s.mining_space]
    return losses.pairwise_distances(x, y, metric=s.metric)

  def partners(self, rng, a, v, labels, ids) -> dict[str, jax.Array]:
    """``sampling.sample_partners`` with this config's mix and distances."""
    s = self.config.sampling
    needs_emb = self.negatives.get("hard", 0.0) > 0 or (
        self.negatives.get("easy", 0.0) > 0 and s.easy_distance == "embedding"
    )
    distances = self._distances(a, v) if needs_emb else None
    easy = (
        sampling.label_distances(labels) if s.easy_distance == "label" else None
    )
    return sampling.sample_partners(
        rng,
        labels,
        ids,
        self.positives,
        self.negatives,
        distances=distances,
        easy_distances=easy,
        num_negatives=int(s.num_negatives),
    )

  def loss_fn(self, params, batch, rng, stage: Stage, step):
    del stage, step
    k_drop, k_sample = jax.random.split(rng)
    a, v = self.encode(params, batch["audio"], batch["visual"], rng=k_drop)
    labels = jnp.asarray(batch["label"])
    if self.objective == "supervised":
      ce = [
          optax.softmax_cross_entropy_with_integer_labels(
              self.classifier.apply(params[name], e), labels
          ).mean()
          for name, e in (("cls_audio", a), ("cls_visual", v))
      ]
      return 0.5 * (ce[0] + ce[1]), {"ce_audio": ce[0], "ce_visual": ce[1]}

    part = self.partners(k_sample, a, v, labels, batch["id"])
    truth = jnp.asarray(batch["true_label"])
    neg_ok = part["negative_valid"].astype(jnp.float32)  # [B, K]
    n_ok = jnp.maximum(jnp.sum(neg_ok), 1.0)
    metrics = {
        "soft_positive_frac": jnp.mean(part["positive_kind"] == 1),
        "positive_fallback_frac": jnp.mean(part["positive_fallback"]),
        "negative_fallback_frac": jnp.mean(part["negative_fallback"]),
        # Sampling quality against the annotation (differs from 1 / 0 only
        # with a labels file or random negatives).
        "positive_same_class_frac": jnp.mean(truth[part["positive"]] == truth),
        "negative_same_class_frac": jnp.sum(
            (truth[part["negative"]] == truth[:, None]) * neg_ok
        )
        / n_ok,
    }
    v_pos = v[part["positive"]]  # [B, E]
    if self.objective == "info_nce":
      loss = jnp.mean(losses.info_nce(a, v_pos, temperature=self.temperature))
      return loss, metrics
    v_neg = v[part["negative"]]  # [B, K, E]
    if self.objective == "contrastive":
      # Softmax over (chosen positive, K chosen negatives) per audio anchor.
      an = encoders.l2_normalize(a)
      s_pos = jnp.sum(an * encoders.l2_normalize(v_pos), -1)
      s_neg = jnp.einsum("be,bke->bk", an, encoders.l2_normalize(v_neg))
      logits = (
          jnp.concatenate([s_pos[:, None], s_neg], axis=1) / self.temperature
      )
      logits = jnp.where(
          jnp.concatenate(
              [jnp.ones_like(s_pos[:, None], bool), neg_ok > 0], axis=1
          ),
          logits,
          -1e9,
      )
      loss = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])
      return loss, dict(
          metrics, rank1_acc=jnp.mean(jnp.argmax(logits, axis=1) == 0)
      )
    pos_logit = self.head.apply(params["head"], a, v_pos)  # [B]
    neg_logit = self.head.apply(
        params["head"], jnp.broadcast_to(a[:, None], v_neg.shape), v_neg
    )
    pos_loss = jnp.mean(
        optax.sigmoid_binary_cross_entropy(pos_logit, jnp.ones_like(pos_logit))
    )
    neg_loss = (
        jnp.sum(
            optax.sigmoid_binary_cross_entropy(
                neg_logit, jnp.zeros_like(neg_logit)
            )
            * neg_ok
        )
        / n_ok
    )
    acc = 0.5 * (
        jnp.mean(pos_logit > 0) + jnp.sum((neg_logit <= 0) * neg_ok) / n_ok
    )
    return 0.5 * (pos_loss + neg_loss), dict(metrics, avc_acc=acc)

  # Prediction and evaluation -------------------------------------------------
  def eval_source(self, split):
    return iterators.ArraySource(self.split_arrays(split))

  def eval_inputs(self, records):
    # Probes and retrieval read the annotation, never a labels file's.
    return {"audio": records["audio"], "visual": records["visual"]}, {
        "label": records["true_label"]
    }

  def modality_inputs(self, modality, records):
    if modality == "audio":  # Records are (waveform, valid length).
      raw = {"audio": np.stack([w for w, _ in records])}
      return {"audio": self._features(raw)["audio"]}
    return {"visual": self._features({"image": np.stack(records)})["image"]}

  @functools.cached_property
  def _features(self):
    return features_lib.PairsFeatures(
        features_lib.MelSpec(**dict(self.config.data.log_mel))
    )

  def train_subset(self):
    return self.train_indices

  def extra_metrics(self, context, run):
    """The trained heads' own test accuracy: ``avc_acc`` (binary
    correspondence head) or ``classifier_acc_<m>`` (supervised)."""
    del run
    if self.objective not in ("binary", "supervised"):
      return {}
    emb = context.embeddings(("audio", "visual"))
    params = context.params
    if self.objective == "binary":
      return {"avc_acc": self._head_accuracy(params, emb)}
    out = {}
    for mod in ("audio", "visual"):
      logits = self.classifier.apply(params[f"cls_{mod}"], emb[mod])
      out[f"classifier_acc_{mod}"] = float(
          np.mean(np.argmax(np.asarray(logits), -1) == emb["label"])
      )
    return out

  def _head_accuracy(self, params, emb: dict[str, np.ndarray]) -> float:
    """Binary head accuracy: each clip's own pair vs a random other clip."""
    n = len(emb["label"])
    other = np.roll(np.random.default_rng(0).permutation(n), 1)
    order = np.argsort(np.random.default_rng(0).permutation(n))
    partner = other[order]  # A derangement: partner[i] != i.
    a, v = jnp.asarray(emb["audio"]), jnp.asarray(emb["visual"])
    pos = np.asarray(self.head.apply(params["head"], a, v))
    neg = np.asarray(self.head.apply(params["head"], a, v[partner]))
    return float(0.5 * (np.mean(pos > 0) + np.mean(neg <= 0)))
