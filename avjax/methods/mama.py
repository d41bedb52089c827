"""MAMA: angular-margin contrastive video–text learning with meta-weights.

Nguyen et al., "Meta-optimized Angular Margin Contrastive Framework for
Video-Language Representation Learning", ECCV 2024, arXiv 2407.03788.

A video encoder and a caption encoder (``avjax.models.video_text``) are
trained with the per-sample symmetric InfoNCE loss with a subtractive
angular margin μ on the positive pairs
(``losses.angular_margin_info_nce``; μ = 0 is InfoNCE) and a learnable
logit scale. Optionally (``config.meta.enabled``) each sample's loss is
weighted by a Meta-Weight-Net MLP (``avjax.models.meta_weight``) trained by
the bilevel step of ``avjax.train.bilevel`` on batches of a small clean meta
set (the dataset's ``config.meta.split``), which come from their own data
iterator: the train iterator is a ``iterators.ZipIterator`` of the "train"
and "meta" streams, checkpointed together.

Variants (``configs/mama.py``): ``infonce`` (μ = 0, no weights),
``margin_only``, ``meta_only`` (μ = 0 with weights) and the default (both).

Decisions the paper leaves open (MAMA's training code is not public;
config fields in ``configs/mama.py``):
  * Margin: μ = 0.1 rad by default (the released config sets 0; the paper's
    value was not found).
  * Logit scale: s = 1 / τ learned as log s (``loss.temperature``,
    ``avjax.models.temperature``), initialised at 1/0.07 and capped at 100
    (τ ≥ 0.01; CLIP's cap, ln 100 is within the paper's ln 100–200): the
    loss clips it and ``project_params`` projects the parameter back after
    each update, so it can always move back.
  * Meta-weighting: Meta-Weight-Net's net (MLP 1→100→1, ReLU, sigmoid;
    Adam 1e-3), made neutral at init (every weight 0.5) and fed the loss
    divided by ln B (``avjax.models.meta_weight``). Three settings differ
    from Meta-Weight-Net's, chosen by a search on the validation split
    (docs/results/mama.md): no weight decay on the net (1e-4 was slightly
    worse on validation); the virtual step goes through
    the model's own optax transformation (``meta.virtual_step``
    "optimizer", i.e. through Adam, which needs ``optimizer.eps_root`` > 0),
    because an SGD step at Adam's learning rate is no proxy for the real
    Adam step and left the net without a usable signal; and the weights are
    normalised in the batch (``meta.normalize``: Σ wᵢℓᵢ / Σ wᵢ), so the
    meta-gradient only shapes the map instead of mostly raising every
    weight. The meta loss is the unweighted margin loss of the virtual
    model on a meta batch, with the meta batch's own negatives.
  * The meta set holds clean pairs only; the train pairs' ``noisy`` flags
    are read only for metrics (mean weight of noisy vs clean pairs), and by
    the ``clean_oracle`` reference (``loss.clean_oracle``: InfoNCE on the
    clean pairs of each batch, the noisy ones dropped — what a perfect
    weighting could at best reach, not a method).
  * The weight net's parameters and optimiser state live in ``state.aux``
    (``bilevel.META_KEY``); the evaluation reads them there for the
    weights of the train pairs and the weight-vs-loss plot.
  * Paraphrases (``data.use_paraphrases``): every stored paraphrase is one
    more training pair of its video (the stand-in for the paper's
    LVLM-augmented captions). A noisy pair's paraphrases are noisy too.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avjax import losses
from avjax.data.pipeline import iterators
from avjax.data.pipeline import sources
from avjax.data.pipeline import tokenizer as text_lib
from avjax.eval import auc as auc_lib
from avjax.eval import sharded
from avjax.eval import video_text as vt_eval
from avjax.methods import base
from avjax.models import meta_weight
from avjax.models import precision
from avjax.models import temperature as temperature_lib
from avjax.models import video_text as vt_models
from avjax.train import bilevel
from avjax.train.stages import Stage
from avjax.train.state import TrainState

PyTree = Any


def _texts(values) -> list[str]:
  return [
      v.decode("utf-8") if isinstance(v, bytes) else str(v)
      for v in np.asarray(values, dtype=object).ravel()
  ]


# The run's tokenizer, saved in the workdir for inference.
TOKENIZER_FILE = "tokenizer.json"


class _CaptionPairs:
  """Random-access (video, caption) pairs of a split.

  Index k < N is video k with its caption; with paraphrases, index
  k = j·N + i (j ≥ 1) is video i with its j-th paraphrase. Records carry
  "frames", "caption" (str), "noisy" and "video" (the video's index).
  """

  def __init__(self, source, name: str, use_paraphrases: bool = False):
    self.source = source
    self.name = name
    self.num_videos = len(source)
    self.variants = 1
    if use_paraphrases and self.num_videos:
      first = source[0]
      if "paraphrases" not in first:
        raise ValueError(
            f"{name}: data.use_paraphrases is set but the "
            f"records have no 'paraphrases' (keys: "
            f"{sorted(first)})"
        )
      self.variants = 1 + len(_texts([first["paraphrases"]])[0].split("\n"))

  def __len__(self) -> int:
    return self.num_videos * self.variants

  def __getitem__(self, index: int) -> dict[str, Any]:
    variant, video = divmod(int(index), self.num_videos)
    record = self.source[video]
    for key in ("frames", "caption"):
      if key not in record:
        raise ValueError(
            f"{self.name}: record {video} has no {key!r} (keys: "
            f"{sorted(record)})"
        )
    caption = _texts([record["caption"]])[0]
    if variant:  # Records may hold fewer paraphrases: cycle through them.
      others = [
          p for p in _texts([record["paraphrases"]])[0].split("\n") if p.strip()
      ]
      caption = others[(variant - 1) % len(others)] if others else caption
    frames = np.asarray(record["frames"])
    if frames.ndim < 3 or frames.shape[0] == 0:
      raise ValueError(
          f"{self.name}: video {video} has zero frames (frames "
          f"shape {frames.shape})"
      )
    if not caption.strip():
      raise ValueError(f"{self.name}: video {video} has an empty caption")
    out = {
        "frames": frames,
        "caption": caption,
        "noisy": np.int32(record.get("noisy", 0)),
        "video": np.int32(video),
    }
    if "frame_mask" in record:
      out["frame_mask"] = np.asarray(record["frame_mask"], bool)
    return out


class MAMA(base.Method):
  """Video–text contrastive learning with angular margin + meta-weights."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.meta_enabled = bool(config.meta.enabled)
    self.options = bilevel.BilevelOptions.from_config(config.meta)
    scale = config.meta.net.input_scale
    self.weight_net = meta_weight.MetaWeightNet(
        hidden_dims=tuple(config.meta.net.hidden_dims),
        activation=config.meta.net.activation,
        output_activation=config.meta.net.output_activation,
        # None: ln B, the loss of a chance-level model over B pairs.
        input_scale=(
            math.log(int(config.data.batch_size)) if scale is None else scale
        ),
    )
    self.weight_tx = bilevel.make_weight_optimizer(config.meta.optimizer)
    if (
        self.meta_enabled
        and self.options.virtual_step == "optimizer"
        and config.optimizer.name in ("adam", "adamw")
        and not float(config.optimizer.eps_root) > 0
    ):
      raise ValueError(
          "config.meta.virtual_step='optimizer' differentiates through "
          f"{config.optimizer.name}: set config.optimizer.eps_root > 0 (e.g. "
          "1e-16), or the derivative of sqrt(v) at v = 0 gives NaN for "
          "parameters whose gradient has been zero so far"
      )
    if self.meta_enabled and config.loss.clean_oracle:
      raise ValueError(
          "config.loss.clean_oracle (train on the clean pairs only, read from "
          "the noise flags) is a reference without meta-weights; set "
          "config.meta.enabled = False"
      )
    margin = float(config.loss.margin)
    if not 0.0 <= margin < math.pi:
      raise ValueError(
          f"config.loss.margin={margin} must be in [0, pi) " "radians"
      )
    self._temperature = temperature_lib.LearnedTemperature.from_config(
        config.loss.temperature
    )
    self._model = None

  # Data -------------------------------------------------------------------
  def _load(self, split: str):
    return sources.load_config_source(self.config.data, split)

  @functools.cached_property
  def tokenizer(self) -> text_lib.CaptionTokenizer:
    """The tokenizer saved with the dataset (``info.metadata``)."""
    d = self.config.data
    builder = sources.get_builder(
        d.name, data_dir=d.data_dir, manual_dir=d.manual_dir
    )
    metadata = builder.info.metadata or {}
    if "tokenizer" not in metadata:
      raise ValueError(
          f"dataset {d.name!r} in {builder.data_dir} has no "
          "tokenizer in its metadata (info.metadata['tokenizer'])"
      )
    return text_lib.CaptionTokenizer.from_json(metadata["tokenizer"])

  def save_artifacts(self, workdir: str) -> None:
    """Writes ``tokenizer.json`` (the dataset's tokenizer) into the workdir."""
    path = os.path.join(workdir, TOKENIZER_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(self.tokenizer.to_json())
    os.replace(path + ".tmp", path)

  def load_artifacts(self, workdir: str) -> None:
    """Uses the workdir's ``tokenizer.json`` when there is one."""
    path = os.path.join(workdir, TOKENIZER_FILE)
    if os.path.exists(path):
      try:
        with open(path, encoding="utf-8") as f:
          tokenizer = text_lib.CaptionTokenizer.from_json(f.read())
      except Exception as e:  # pylint: disable=broad-except
        # tokenizers raises a bare Exception ("EOF while parsing ...").
        raise ValueError(
            f"{path} is not a readable tokenizer (truncated or damaged?): "
            f"{type(e).__name__}: {e}"
        ) from e
      self.__dict__["tokenizer"] = tokenizer

  def _pairs(self, split: str, train: bool = False) -> _CaptionPairs:
    name = f"{self.config.data.name}:{split}"
    return _CaptionPairs(
        self._load(split),
        name,
        use_paraphrases=train and bool(self.config.data.use_paraphrases),
    )

  def transform(
      self, batch: dict[str, Any], where: str = "batch"
  ) -> dict[str, np.ndarray]:
    """Stacked records → model inputs (frames, masks, token ids, flags)."""
    frames = np.asarray(batch["frames"])
    if frames.ndim < 4 or frames.shape[1] == 0:
      raise ValueError(
          f"{where}: videos must be [B, T, H, W(, C)] with T > "
          f"0, got frames of shape {frames.shape}"
      )
    tokens, token_mask = self.tokenizer.encode(
        _texts(batch["caption"]),
        int(self.config.data.max_tokens),
        where=f"{where} caption",
    )
    frame_mask = batch.get("frame_mask")
    if frame_mask is None:
      frame_mask = np.ones(frames.shape[:2], bool)
    return {
        "frames": frames,
        "frame_mask": np.asarray(frame_mask, bool),
        "tokens": tokens,
        "token_mask": token_mask,
        "noisy": np.asarray(batch["noisy"], np.int32),
    }

  def _meta_batch_size(self, process_count: int) -> int:
    size = int(self.config.meta.batch_size or self.config.data.batch_size)
    devices = jax.device_count()
    if size < 1 or size % devices:
      raise ValueError(
          f"config.meta.batch_size={size} is not divisible by "
          f"the {devices} devices of the mesh"
      )
    return size // process_count

  def _meta_source(self):
    split = self.config.meta.split
    try:
      return self._pairs(split)
    except ValueError as e:
      if "unknown split" not in str(e):
        raise
      raise ValueError(
          f"config.meta.split={split!r}: dataset {self.config.data.name!r} "
          f"has no such split, and meta-weighting needs a clean meta set "
          f"({e})"
      ) from e

  def _stream(self, pairs, split, **kwargs) -> Any:
    """A training iterator over ``pairs``; with ``data.cache_features`` the
    split is transformed (frames, tokens) once into memory, so a batch is
    one gather instead of a tfds decode per record (same batches)."""
    where = f"{self.config.data.name}:{split}"
    return iterators.make_train_iterator(
        pairs,
        batch_transform=lambda b: self.transform(b, where),
        cache=self.config.data.cache_features,
        **kwargs,
    )

  def train_iterator(self, batch_size, seed, process_index, process_count):
    streams = {
        "train": self._stream(
            self._pairs("train", train=True),
            "train",
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
    }
    if self.meta_enabled:
      streams["meta"] = self._stream(
          self._meta_source(),
          self.config.meta.split,
          batch_size=self._meta_batch_size(process_count),
          seed=seed + 1,
          process_index=process_index,
          process_count=process_count,
      )
    return iterators.ZipIterator(streams)

  # Parameters -------------------------------------------------------------
  @property
  def model(self) -> vt_models.VideoTextEncoders:
    if self._model is None:
      m = self.config.model
      dtype = precision.config_dtype(self.config)
      self._model = vt_models.VideoTextEncoders(
          video=vt_models.VideoEncoder(
              embed_dim=m.embed_dim, dtype=dtype, **dict(m.video)
          ),
          text=vt_models.TextEncoder(
              vocab_size=self.tokenizer.vocab_size,
              embed_dim=m.embed_dim,
              dtype=dtype,
              **dict(m.text),
          ),
      )
    return self._model

  def init_params(self, rng, batch):
    b = batch["train"]
    enc = jax.jit(self.model.init)(
        rng,
        np.asarray(b["frames"][:2]),
        np.asarray(b["frame_mask"][:2]),
        np.asarray(b["tokens"][:2]),
        np.asarray(b["token_mask"][:2]),
    )
    return {"encoders": enc, "log_scale": self._temperature.init_param()}

  def init_aux(self, rng, params):
    """The weight net and its optimiser state (with the meta-weights)."""
    if not self.meta_enabled:
      return {}
    net = self.weight_net.init(
        jax.random.fold_in(rng, 7), jnp.zeros((1,), jnp.float32)
    )
    return {bilevel.META_KEY: bilevel.init_meta_state(net, self.weight_tx)}

  def logit_scale(self, params) -> jax.Array:
    """s = 1 / τ (``config.loss.temperature``), at most 1 / min τ."""
    return self._temperature.logit_scale(params["log_scale"])

  def project_params(self, params):
    """Keeps the learned log s inside its bounds after every update."""
    return dict(
        params, log_scale=self._temperature.project(params["log_scale"])
    )

  # Model ------------------------------------------------------------------
  def encode(self, encoder_params, batch, rng=None):
    """(video [B, E], text [B, E]) embeddings; dropout when rng is given."""
    train = rng is not None
    return self.model.apply(
        encoder_params,
        batch.get("frames"),
        batch.get("frame_mask"),
        batch.get("tokens"),
        batch.get("token_mask"),
        train=train,
        rngs={"dropout": rng} if train else None,
    )

  # Loss -------------------------------------------------------------------
  def per_sample_loss(self, params, batch, rng):
    """Per-pair margin InfoNCE [B] and metrics (``bilevel.PerSampleLoss``)."""
    v, t = self.encode(params["encoders"], batch, rng)
    scale = self.logit_scale(params)
    per_sample = losses.angular_margin_info_nce(
        v, t, float(self.config.loss.margin), 1.0 / scale
    )
    return per_sample, {"logit_scale": scale}

  def loss_fn(self, params, batch, rng, stage: Stage, step):
    """Mean per-pair loss; with ``loss.clean_oracle`` the mean over the
    batch's clean pairs only (a reference that reads the noise flags)."""
    del stage, step
    per_sample, metrics = self.per_sample_loss(params, batch["train"], rng)
    if self.config.loss.clean_oracle:
      keep = 1.0 - batch["train"]["noisy"].astype(per_sample.dtype)
      return jnp.sum(keep * per_sample) / jnp.maximum(jnp.sum(keep), 1.0), (
          metrics
      )
    return jnp.mean(per_sample), metrics

  def train_step(
      self, state: TrainState, batch, stage: Stage, run
  ) -> tuple[TrainState, dict]:
    """The bilevel step (or the plain one); log s is projected after it."""
    if self.meta_enabled:
      state, metrics, per = bilevel.bilevel_step(
          state,
          batch["train"],
          batch["meta"],
          loss_fn=self.per_sample_loss,
          weight_fn=self.weight_net.apply,
          weight_tx=self.weight_tx,
          options=self.options,
          learning_rate=run.learning_rate(),
      )
      noisy = batch["train"]["noisy"].astype(jnp.float32)
      w = per["weights"]
      metrics["weight_noisy"] = jnp.sum(w * noisy) / jnp.maximum(
          jnp.sum(noisy), 1.0
      )
      metrics["weight_clean"] = jnp.sum(w * (1 - noisy)) / jnp.maximum(
          jnp.sum(1 - noisy), 1.0
      )
      # In-batch AUCs (0.5 in a batch without noisy pairs): of the weights
      # for clean vs noisy, and of the losses for noisy vs clean.
      metrics["weight_auc"] = auc_lib.pairwise_auc(w, noisy < 0.5)
      metrics["loss_auc"] = auc_lib.pairwise_auc(per["losses"], noisy > 0.5)
      state = state.replace(params=self.project_params(state.params))
    else:
      state, metrics = super().train_step(state, batch, stage, run)
    return state, metrics

  # Prediction and evaluation -------------------------------------------------
  modalities = {"video": base.VIDEO, "text": base.TEXT}
  similarity = "cosine"

  def embed(self, params, modality, inputs):
    v, t = self.encode(
        params["encoders"], {k: inputs[k] for k in _MODALITY_KEYS[modality]}
    )
    return v if modality == "video" else t

  def eval_source(self, split):
    return self._pairs(split)

  def eval_inputs(self, records):
    out = self.transform(records, f"{self.config.data.name} evaluation")
    inputs = {
        k: out[k] for k in ("frames", "frame_mask", "tokens", "token_mask")
    }
    return inputs, {
        "video_id": records["video"],
        "caption": records["caption"],
    }

  def modality_inputs(self, modality, records):
    if modality == "video":
      frames = np.stack(records)
      return {
          "frames": frames,
          "frame_mask": np.ones(frames.shape[:2], bool),
      }
    tokens, token_mask = self.tokenizer.encode(
        list(records), int(self.config.data.max_tokens), where="text input"
    )
    return {"tokens": tokens, "token_mask": token_mask}

  @functools.cached_property
  def _loss_jit(self):
    def run(params, net, batch):
      per_sample, _ = self.per_sample_loss(params, batch, None)
      weights = (
          jnp.ones_like(per_sample)
          if net is None
          else self.weight_net.apply(net, per_sample)
      )
      return per_sample, weights

    return jax.jit(run)

  def _weight_net(self, state):
    """The weight net's params in ``state.aux`` (None without meta)."""
    meta = state.aux.get(bilevel.META_KEY) if state.aux else None
    return None if meta is None else meta["params"]

  def train_weights(self, state, limit: int | None = None) -> dict:
    """Per-sample loss, weight and noisy flag of the first train pairs.

    Losses are computed on consecutive batches of ``data.batch_size``
    pairs in source order (in-batch negatives, as in training); without a
    weight net every weight is 1.
    """
    pairs = self._pairs("train")
    bs = int(self.config.data.batch_size)
    limit = limit or int(self.config.weight_eval_pairs)
    limit = max(bs, (min(limit, len(pairs)) // bs) * bs)
    net = self._weight_net(state)
    params = sharded.local_replica(state.params)
    out = {"losses": [], "weights": [], "noisy": []}
    for start in range(0, limit, bs):
      records = sharded.stack_records(
          [pairs[i] for i in range(start, start + bs)]
      )
      batch = self.transform(records, pairs.name)
      per_sample, weights = self._loss_jit(params, net, batch)
      out["losses"].append(np.asarray(per_sample))
      out["weights"].append(np.asarray(weights))
      out["noisy"].append(batch["noisy"])
    return {k: np.concatenate(v) for k, v in out.items()}

  def extra_metrics(self, context, run):
    """The logit scale, and how the weights sit on the train pairs (every
    evaluation; the weight-vs-loss plot at the test one): mean weight and
    loss of clean and noisy pairs, their AUCs (``vt_eval.weight_summary``).
    Without a weight net every weight is 1 (the arms stay comparable)."""
    del run
    result = {"logit_scale": float(self.logit_scale(context.params))}
    per = self.train_weights(context.state)
    result.update(
        vt_eval.weight_summary(per["weights"], per["noisy"], per["losses"])
    )
    net = self._weight_net(context.state)
    if net is not None and context.plot_dir and context.split == "test":
      grid = np.linspace(
          0.0, float(per["losses"].max()) * 1.05, 200, dtype=np.float32
      )
      curve = np.asarray(self.weight_net.apply(net, jnp.asarray(grid)))
      vt_eval.plot_weight_vs_loss(
          per["losses"],
          per["weights"],
          per["noisy"],
          os.path.join(context.plot_dir, "weight_vs_loss.png"),
          curve=(grid, curve),
          title="MAMA: learned weight vs per-sample loss (train pairs)",
      )
    return result


# The model inputs each modality reads.
_MODALITY_KEYS = {
    "video": ("frames", "frame_mask"),
    "text": ("tokens", "token_mask"),
}
