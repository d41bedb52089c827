"""CMD: cross-modal denoising for spoken-caption ↔ image retrieval.

Zhou et al., arXiv 2408.13705 (Interspeech 2024).

Two encoders map a spoken caption to frame features + a global embedding and
an image to patch features + a global embedding
(``avjax.models.speech_image``). The global embeddings are aligned with a
symmetric InfoNCE loss with a learnable temperature. During training only,
the CMD head corrupts the speech frame features (Gaussian noise, masking,
swapping frames with other captions' frames; ``avjax.models.corruption``)
and a small cross-attention decoder (``avjax.models.denoiser``) whose
queries are the noisy frames and whose keys/values are the image patches
rebuilds the clean frames; the reconstruction loss is added with a weight.
Optionally (``config.cmd.symmetric``) a second head denoises the image
patches from the speech frames. Retrieval uses only the encoders.

Parameters are one pytree ``{"encoders", "log_temperature", "cmd_head"}``;
``embed`` reads only ``params["encoders"]``, so dropping ``"cmd_head"``
cannot change retrieval (tested).

Decisions the paper leaves open (config fields in ``configs/cmd.py``):
  * Temperature: τ = exp(log_temperature), initialised at 0.07 and kept in
    [0.01, 0.5] (CLIP caps 1/τ at 100): the loss clips it and ``train_step``
    projects the parameter back into range after each update, as CLIP clamps
    its logit scale in place, so it can always move back from the bound.
  * Target: the clean frame features under ``stop_gradient`` (BYOL /
    data2vec practice). The encoders still get the CMD gradient through the
    noisy queries (speech) and the keys/values (image), as the issue asks;
    stopping it on the target removes the trivial way to lower the loss by
    moving the target itself (e.g. collapsing all frames to one vector).
  * Distance: per-frame MSE after a parameter-free LayerNorm of both the
    reconstruction and the target (``normalize=True``), which is
    scale-invariant, so shrinking the features does not lower it either;
    "cosine" and "smooth_l1" are the alternatives. The loss is averaged over
    valid frames (``loss_on="all"``) or only the masked / swapped ones
    (``"corrupted"``, MAE style).
  * Noise: the summary in papers.md mentions swapping features with other
    samples'; ratios were not found. Masked frames get a learned mask token.
  * Head size: 2 cross-attention layers at the encoders' width (the paper's
    depth was not found); its parameter count is logged at start-up and
    reported as ``head_params`` in the metrics.
  * Optional SpecAugment / image-shift input augmentation
    (``config.augment``) is applied before the encoders, identically with or
    without the head.
  * The head's attention map plotted at evaluation is the last decoder
    layer's, averaged over heads and over the frames of one stretch of the
    caption, with the clean (uncorrupted) frames as queries. On AV-digits the
    stretches are equal splits of a prefix-free caption, one per spoken digit
    (an approximation: words differ in length).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from avjax import losses
from avjax.data.pipeline import features as features_lib
from avjax.data.pipeline import iterators
from avjax.data.pipeline import sources
from avjax.eval import retrieval
from avjax.eval import sharded
from avjax.methods import base
from avjax.models import corruption
from avjax.models import denoiser
from avjax.models import precision
from avjax.models import speech_image
from avjax.models import temperature as temperature_lib
from avjax.train.stages import Stage

PyTree = Any
HEAD = "cmd_head"
_TRAIN_KEYS = ("audio", "audio_mask", "image", "image_id")
_DISTANCES = ("mse", "cosine", "smooth_l1")
_LOSS_ON = ("all", "corrupted")
_CONTEXTS = ("matched", "shuffled")
_HEAD_SUMS = (
    "cmd_recon_dist",
    "cmd_recon_dist_shuffled",
    "cmd_corrupt_dist",
    "cmd_frames",
)


def count_params(tree: PyTree) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _standardize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Parameter-free LayerNorm over the last axis."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.var(x, axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def frame_distance(
    pred: jax.Array,
    target: jax.Array,
    distance: str = "mse",
    normalize: bool = True,
) -> jax.Array:
  """Per-token distance [B, T] between [B, T, D] predictions and targets.

  Args:
    pred, target: [B, T, D].
    distance: "mse" (mean over D of squared differences), "cosine"
      (1 − cosine similarity) or "smooth_l1" (Huber, δ = 1, mean over D).
    normalize: standardise both along D first (parameter-free LayerNorm).
  """
  if distance not in _DISTANCES:
    raise ValueError(
        f"config.cmd.distance={distance!r} is not one of " f"{list(_DISTANCES)}"
    )
  if normalize:
    pred, target = _standardize(pred), _standardize(target)
  if distance == "cosine":
    num = jnp.sum(pred * target, axis=-1)
    den = jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1)
    return 1.0 - num / jnp.maximum(den, 1e-6)
  diff = pred - target
  if distance == "mse":
    return jnp.mean(diff**2, axis=-1)
  abs_diff = jnp.abs(diff)
  return jnp.mean(
      jnp.where(abs_diff < 1.0, 0.5 * diff**2, abs_diff - 0.5), axis=-1
  )


def shuffle_context(
    context: speech_image.EncoderOutput,
) -> speech_image.EncoderOutput:
  """Gives example b the tokens of example b − 1 (a roll over the batch)."""
  return context._replace(
      features=jnp.roll(context.features, 1, axis=0),
      mask=jnp.roll(context.mask, 1, axis=0),
      embedding=jnp.roll(context.embedding, 1, axis=0),
  )


def relevance_groups(batch: dict[str, np.ndarray]) -> np.ndarray:
  """Retrieval relevance group of each example of a batch: int64 [B].

  AV-digits captions (records with "digits", int [B, MAX_DIGITS] padded
  with -1): the digit sequence, coded as sum_k (d_k + 1) * 11**k, since the
  spoken caption says only the sequence, so canvases that share it cannot
  be told apart by it. Other datasets (Flickr8k Audio, SpokenCOCO): the
  image id.
  """
  if "digits" not in batch:
    return np.asarray(batch["image_id"]).astype(np.int64)
  digits = np.asarray(batch["digits"]).astype(np.int64)
  if digits.ndim != 2 or digits.min(initial=0) < -1 or digits.max() > 9:
    raise ValueError(
        "batch 'digits' must be int [B, max_digits] of digit classes 0-9 "
        f"padded with -1; got shape {digits.shape}, values "
        f"{digits.min()}..{digits.max()}"
    )
  return np.sum((digits + 1) * 11 ** np.arange(digits.shape[1]), axis=1)


def _masked_average(values: jax.Array, weights: jax.Array) -> jax.Array:
  weights = weights.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


class _FixedLengthAudio:
  """Random-access source view with audio cropped / zero-padded to N samples.

  The real spoken-caption datasets store variable-length waveforms; batching
  needs one length. "audio_length" is clipped to N so the frame mask stays
  exact. Only the keys the method uses are kept.
  """

  def __init__(self, source, num_samples: int):
    self.source = source
    self.num_samples = int(num_samples)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index):
    record = self.source[index]
    audio = np.asarray(record["audio"])
    if audio.ndim != 1:
      raise ValueError(
          f"record {index}: 'audio' must be a 1-D waveform, got "
          f"shape {audio.shape}"
      )
    length = min(
        int(record["audio_length"]) if "audio_length" in record else len(audio),
        self.num_samples,
    )
    return {
        "audio": features_lib.pad_or_crop(audio, self.num_samples),
        "audio_length": np.int32(length),
        "image": np.asarray(record["image"]),
        "image_id": np.int32(record["image_id"]),
    }


class CMD(base.Method):
  """Contrastive speech–image retrieval with a cross-modal denoising head."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    dtype = precision.config_dtype(config)
    self.model = speech_image.SpeechImageEncoders(
        speech=speech_image.SpeechEncoder(
            embed_dim=m.embed_dim, dtype=dtype, **dict(m.speech)
        ),
        image=speech_image.ImageEncoder(
            embed_dim=m.embed_dim, dtype=dtype, **dict(m.image)
        ),
    )
    cmd = config.cmd
    self.use_cmd = float(cmd.weight) > 0.0
    self.symmetric = self.use_cmd and bool(cmd.symmetric)
    if cmd.distance not in _DISTANCES:
      raise ValueError(
          f"config.cmd.distance={cmd.distance!r} is not one of "
          f"{list(_DISTANCES)}"
      )
    if cmd.loss_on not in _LOSS_ON:
      raise ValueError(
          f"config.cmd.loss_on={cmd.loss_on!r} is not one of "
          f"{list(_LOSS_ON)}"
      )
    if cmd.context not in _CONTEXTS:
      raise ValueError(
          f"config.cmd.context={cmd.context!r} is not one of "
          f"{list(_CONTEXTS)}"
      )
    for name in ("speech_corruption", "image_corruption"):
      c = cmd[name]
      if c.mask_fraction + c.swap_fraction > 1.0:
        raise ValueError(
            f"config.cmd.{name}: mask_fraction + swap_fraction "
            f"= {c.mask_fraction + c.swap_fraction} exceeds 1"
        )
    self.head = denoiser.CrossModalDenoiser(dtype=dtype, **dict(cmd.head))
    self._temperature = temperature_lib.LearnedTemperature.from_config(
        config.loss.temperature
    )
    mel = features_lib.MelSpec(**dict(config.data.log_mel))
    self._train_transform = features_lib.CaptionsFeatures(mel)
    self._eval_transform = features_lib.CaptionsFeatures(mel, keep_text=True)

  # Data -------------------------------------------------------------------
  def _source(self, split: str):
    d = self.config.data
    source = sources.load_config_source(d, split)
    seconds = d.max_audio_seconds
    if seconds:
      source = _FixedLengthAudio(source, int(round(seconds * 16000)))
    return source

  def _transform_train(self, batch):
    out = self._train_transform(batch)
    missing = [k for k in _TRAIN_KEYS if k not in out]
    if missing:
      raise ValueError(
          f"dataset {self.config.data.name!r}: batches lack "
          f"keys {missing}; they have {sorted(out)}"
      )
    return {k: out[k] for k in _TRAIN_KEYS}

  def train_iterator(self, batch_size, seed, process_index, process_count):
    return iterators.make_train_iterator(
        self._source("train"),
        batch_size=batch_size,
        seed=seed,
        batch_transform=self._transform_train,
        process_index=process_index,
        process_count=process_count,
    )

  # Parameters -------------------------------------------------------------
  def init_params(self, rng, batch):
    params = jax.jit(self._init_params)(
        rng,
        np.asarray(batch["audio"][:2]),
        np.asarray(batch["audio_mask"][:2]),
        np.asarray(batch["image"][:2]),
    )
    if self.use_cmd:
      logging.info(
          "CMD head: %d parameters (encoders: %d).",
          count_params(params[HEAD]),
          count_params(params["encoders"]),
      )
    return params

  def _init_params(self, rng, audio, mask, image):
    rng_enc, rng_head, rng_tok = jax.random.split(rng, 3)
    enc = self.model.init(rng_enc, audio, mask, image)
    params = {
        "encoders": enc,
        "log_temperature": self._temperature.init_param(),
    }
    if self.use_cmd:
      s, i = self.model.apply(enc, audio, mask, image)
      params[HEAD] = self._init_head(rng_head, rng_tok, s, i)
    return params

  def _init_head(self, rng_head, rng_tok, s, i):
    k1, k2 = jax.random.split(rng_head)
    t1, t2 = jax.random.split(rng_tok)
    token = lambda k, d: 0.02 * jax.random.normal(k, (d,), jnp.float32)
    head = {
        "speech_from_image": self.head.init(
            k1, s.features, i.features, s.mask, i.mask
        ),
        "speech_mask_token": token(t1, s.features.shape[-1]),
    }
    if self.symmetric:
      head["image_from_speech"] = self.head.init(
          k2, i.features, s.features, i.mask, s.mask
      )
      head["image_mask_token"] = token(t2, i.features.shape[-1])
    return head

  def temperature(self, params) -> jax.Array:
    """τ (``config.loss.temperature``, ``avjax.models.temperature``)."""
    return self._temperature.value(params["log_temperature"])

  def project_params(self, params):
    """Keeps the learned log τ inside its bounds after every update."""
    return dict(
        params,
        log_temperature=self._temperature.project(params["log_temperature"]),
    )

  # Model ------------------------------------------------------------------
  def encode(
      self, encoder_params, audio=None, audio_mask=None, image=None, rng=None
  ):
    """Runs the encoders; returns (speech, image) EncoderOutputs or None."""
    train = rng is not None
    return self.model.apply(
        encoder_params,
        audio,
        audio_mask,
        image,
        train=train,
        rngs={"dropout": rng} if train else None,
    )

  def embed(self, params, audio=None, audio_mask=None, image=None):
    """Retrieval embeddings: (speech [B, E] or None, image [B, E] or None).

    Reads only ``params["encoders"]``: the CMD head plays no part.
    """
    s, i = self.encode(params["encoders"], audio, audio_mask, image)
    return (
        None if s is None else s.embedding,
        None if i is None else i.embedding,
    )

  def denoise(
      self,
      head_params,
      noisy,
      context,
      query_mask,
      context_mask,
      direction: str = "speech_from_image",
      rng=None,
  ):
    """Applies one CMD head; returns (reconstruction, attention maps)."""
    train = rng is not None
    return self.head.apply(
        head_params[direction],
        noisy,
        context,
        query_mask,
        context_mask,
        train=train,
        rngs={"dropout": rng} if train else None,
    )

  # Loss -------------------------------------------------------------------
  def _denoising_loss(
      self, head_params, queries, context, direction: str, corr_cfg, rng
  ):
    """Corrupts ``queries`` tokens, rebuilds them from ``context`` tokens.

    Returns (loss, metrics) with the reconstruction distance and the
    distance of the corrupted input itself (what the head starts from).

    Ablations (``configs/cmd.py``): ``cmd.context="shuffled"`` gives each
    example the previous example's context tokens (a roll over the batch), so
    the head cannot use the paired modality; ``cmd.stop_gradient_input``
    stops the gradient on the features before they are corrupted, so the
    encoder of the query modality gets no CMD gradient through the noisy
    queries (only ``stop_gradient_target=False`` still lets it through the
    target).
    """
    cfg = self.config.cmd
    rng_corrupt, rng_drop = jax.random.split(rng)
    target = queries.features
    if cfg.stop_gradient_target:
      target = jax.lax.stop_gradient(target)
    if cfg.context == "shuffled":
      context = shuffle_context(context)
    inputs = queries.features
    if cfg.stop_gradient_input:
      inputs = jax.lax.stop_gradient(inputs)
    token = head_params[direction.split("_")[0] + "_mask_token"]
    corr = corruption.corrupt(
        rng_corrupt,
        inputs,
        queries.mask,
        noise_std=corr_cfg.noise_std,
        mask_fraction=corr_cfg.mask_fraction,
        swap_fraction=corr_cfg.swap_fraction,
        fill=token,
    )
    recon, _ = self.denoise(
        head_params,
        corr.features,
        context.features,
        queries.mask,
        context.mask,
        direction,
        rng=rng_drop,
    )
    weights = queries.mask
    if cfg.loss_on == "corrupted" and (
        corr_cfg.mask_fraction or corr_cfg.swap_fraction
    ):
      weights = corr.masked | corr.swapped
    dist = functools.partial(
        frame_distance, distance=cfg.distance, normalize=cfg.normalize
    )
    loss = _masked_average(dist(recon, target), weights)
    corrupt_dist = _masked_average(dist(corr.features, target), weights)
    return loss, {
        f"cmd_{direction}": loss,
        f"corrupt_dist_{direction}": corrupt_dist,
    }

  def augment(self, batch, rng):
    """Training-time input augmentation (``config.augment``): SpecAugment
    masks on the log-mels, random translations of the images."""
    cfg = self.config.augment
    audio, image = batch["audio"], batch["image"]
    rng_a, rng_i = jax.random.split(rng)
    if cfg.time_masks or cfg.freq_masks:
      audio = speech_image.spec_augment(
          rng_a,
          audio,
          batch["audio_mask"],
          cfg.time_masks,
          cfg.max_time_width,
          cfg.freq_masks,
          cfg.max_freq_width,
      )
    image = speech_image.random_shift(rng_i, image, cfg.image_shift)
    return audio, image

  def loss_fn(self, params, batch, rng, stage: Stage, step):
    del stage, step
    rng_enc, rng_s, rng_i, rng_aug = jax.random.split(rng, 4)
    audio, image = self.augment(batch, rng_aug)
    s, i = self.encode(
        params["encoders"], audio, batch["audio_mask"], image, rng=rng_enc
    )
    tau = self.temperature(params)
    contrastive = jnp.mean(losses.info_nce(s.embedding, i.embedding, tau))
    metrics = {"contrastive": contrastive, "temperature": tau}
    loss = contrastive
    if self.use_cmd:
      cfg = self.config.cmd
      rec, m = self._denoising_loss(
          params[HEAD], s, i, "speech_from_image", cfg.speech_corruption, rng_s
      )
      metrics.update(m)
      cmd_loss = rec
      if self.symmetric:
        rec_i, m = self._denoising_loss(
            params[HEAD], i, s, "image_from_speech", cfg.image_corruption, rng_i
        )
        metrics.update(m)
        cmd_loss = cmd_loss + cfg.image_weight * rec_i
      loss = loss + cfg.weight * cmd_loss
    return loss, metrics

  # Prediction and evaluation -------------------------------------------------
  modalities = {"speech": base.AUDIO, "image": base.IMAGE}
  similarity = "cosine"

  def embed(self, params, modality, inputs):
    if modality == "speech":
      s, _ = self.encode(
          params["encoders"], inputs["audio"], inputs["audio_mask"], None
      )
      return s.embedding
    _, i = self.encode(params["encoders"], None, None, inputs["image"])
    return i.embedding

  def predict_fns(self):
    fns = super().predict_fns()
    if self.use_cmd:
      fns["denoiser_distances"] = self._denoiser_outputs
      fns["denoiser_attention"] = lambda p, x: self._denoiser_outputs(
          p, x, attention=True
      )["maps"]
    return fns

  def eval_source(self, split):
    return self._source(split)

  def eval_inputs(self, records):
    out = self._eval_transform(records)
    inputs = {k: out[k] for k in ("audio", "audio_mask", "image")}
    return inputs, {"image_id": out["image_id"], "group": relevance_groups(out)}

  def modality_inputs(self, modality, records):
    if modality == "image":
      return {"image": features_lib.image_to_float(np.stack(records))}
    # Spoken captions are (waveform, valid length) of any length: padded to
    # the longest, the frame mask marks each one's valid frames.
    length = max(len(w) for w, _ in records)
    raw = {
        "audio": np.stack(
            [np.pad(w, (0, length - len(w))) for w, _ in records]
        ),
        "audio_length": np.asarray([n for _, n in records], np.int32),
    }
    out = self._eval_transform(raw)
    return {"audio": out["audio"], "audio_mask": out["audio_mask"]}

  def _denoiser_outputs(self, params, inputs, attention: bool = False):
    """``head_distances`` of a batch of model inputs (encoders included)."""
    s, i = self.encode(
        params["encoders"],
        inputs["audio"],
        inputs["audio_mask"],
        inputs["image"],
    )
    return self.head_distances(params[HEAD], s, i, attention)

  def head_distances(self, head_params, s, i, attention: bool = False):
    """The speech head on encoder outputs, under a fixed corruption key.

    Args:
      head_params: ``params[HEAD]``.
      s, i: the speech and image ``EncoderOutput``s of a batch.
      attention: also return the attention maps.

    Returns:
      Per-example sums over valid frames [B]: "cmd_recon_dist" (the
      reconstruction from the pair's image vs the clean frames),
      "cmd_recon_dist_shuffled" (the same from another example's image, see
      `shuffle_context`), "cmd_corrupt_dist" (the corrupted input vs the
      clean frames) and "cmd_frames" (valid frames); with ``attention``,
      also "maps", the last decoder layer's head-averaged cross-attention
      [B, Q, P] on clean frames.
    """
    cfg = self.config.cmd
    corr = corruption.corrupt(
        jax.random.PRNGKey(0),
        s.features,
        s.mask,
        noise_std=cfg.speech_corruption.noise_std,
        mask_fraction=cfg.speech_corruption.mask_fraction,
        swap_fraction=cfg.speech_corruption.swap_fraction,
        fill=head_params["speech_mask_token"],
    )
    recon, _ = self.denoise(
        head_params, corr.features, i.features, s.mask, i.mask
    )
    other = shuffle_context(i)
    recon_shuffled, _ = self.denoise(
        head_params, corr.features, other.features, s.mask, other.mask
    )
    dist = functools.partial(
        frame_distance, distance=cfg.distance, normalize=cfg.normalize
    )
    per_row = lambda d: jnp.sum(d * s.mask, axis=1)
    out = {
        "cmd_recon_dist": per_row(dist(recon, s.features)),
        "cmd_recon_dist_shuffled": per_row(dist(recon_shuffled, s.features)),
        "cmd_corrupt_dist": per_row(dist(corr.features, s.features)),
        "cmd_frames": jnp.sum(s.mask, axis=1),
    }
    if attention:
      _, maps = self.denoise(
          head_params, s.features, i.features, s.mask, i.mask
      )
      out["maps"] = jnp.mean(maps[-1], axis=1)
    return out

  def extra_metrics(self, context, run):
    """Temperature, parameter counts and, with the head, its mean
    per-frame distances to the clean frames (``head_distance_metrics``);
    retrieval examples and denoiser attention maps when plotting."""
    del run
    params = context.params
    result = {
        "temperature": float(self.temperature(params)),
        "head_params": float(count_params(params[HEAD]))
        if HEAD in params
        else 0.0,
        "encoder_params": float(count_params(params["encoders"])),
    }
    if HEAD in params:
      head = context.predictions(["denoiser_distances"])["denoiser_distances"]
      result.update(
          head_distance_metrics(
              {k: float(np.sum(head[k], dtype=np.float64)) for k in _HEAD_SUMS}
          )
      )
    if context.plot_dir:
      source = self._source(context.split)
      first = self._eval_transform(
          sharded.stack_records(
              [
                  source[k]
                  for k in range(
                      min(len(source), int(self.config.eval_batch_size))
                  )
              ]
          )
      )
      emb = context.embeddings(("speech", "image"))
      self._plot_retrieval(emb, first, source, context.plot_dir)
      if HEAD in params:
        maps = context.predictions(["denoiser_attention"])["denoiser_attention"]
        self._plot_attention(first, maps, context.plot_dir)
    return result

  # Plots ------------------------------------------------------------------
  def _plot_retrieval(
      self,
      emb,
      batch,
      source,
      plot_dir: str,
      num_queries: int = 6,
      top_k: int = 5,
  ) -> None:
    """Top images of the first spoken captions (``batch``: the split's
    first rows, transformed); the gallery holds each image once."""
    from avjax.eval import plots  # matplotlib only when plotting.

    _, first = np.unique(emb["image_id"], return_index=True)
    gallery = np.sort(first)
    q = np.arange(min(num_queries, len(batch["image_id"])))
    scores = retrieval.similarity_matrix(
        emb["speech"][q], emb["image"][gallery], "cosine"
    )
    top = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    images = np.stack(
        [
            [
                features_lib.image_to_float(
                    np.asarray(source[int(gallery[j])]["image"])[None]
                )[0]
                for j in row
            ]
            for row in top
        ]
    )
    correct = emb["image_id"][gallery][top] == emb["image_id"][q][:, None]
    queries = [batch["audio"][k][batch["audio_mask"][k]] for k in q]
    plots.plot_retrieval_examples(
        queries,
        images,
        correct,
        os.path.join(plot_dir, "retrieval_examples.png"),
        title="CMD: spoken captions → top-5 images (green = the pair)",
        query_kind="spectrogram",
    )

  def _plot_attention(self, batch, maps, plot_dir: str) -> None:
    """Denoiser attention of one caption of ``batch`` (the split's first
    rows) over its image, one map per spoken digit; ``maps`` [N, Q, P]."""
    from avjax.eval import plots  # matplotlib only when plotting.

    example, words = _attention_example(batch)
    strides = tuple(self.config.model.speech.conv_strides)
    frame_mask = speech_image.subsample_mask(
        np.asarray(batch["audio_mask"][example : example + 1]), strides
    )[0]
    valid = int(frame_mask.sum())
    edges = np.linspace(0, valid, len(words) + 1).round().astype(int)
    for k, word in enumerate(words):
      lo, hi = edges[k], max(edges[k + 1], edges[k] + 1)
      att = maps[example, lo:hi].mean(axis=0)
      plots.plot_attention_map(
          batch["image"][example],
          att,
          os.path.join(plot_dir, f"cmd_attention_{k}.png"),
          title=f"denoiser attention, speech frames {lo}–{hi - 1} " f"({word})",
      )


def head_distance_metrics(sums: dict[str, float]) -> dict[str, float]:
  """Mean per-frame head distances from their sums over frames.

  Args:
    sums: "cmd_recon_dist", "cmd_recon_dist_shuffled", "cmd_corrupt_dist"
      (distances summed over valid frames) and "cmd_frames" (their number).

  Returns:
    The three means and "cmd_recon_ratio" = recon / corrupt (NaN when the
    corrupted input already equals the clean frames).
  """
  frames = max(float(sums["cmd_frames"]), 1.0)
  out = {
      k: float(sums[k]) / frames
      for k in ("cmd_recon_dist", "cmd_recon_dist_shuffled", "cmd_corrupt_dist")
  }
  corrupt = out["cmd_corrupt_dist"]
  out["cmd_recon_ratio"] = (
      out["cmd_recon_dist"] / corrupt if corrupt > 0 else float("nan")
  )
  return out


def _attention_example(batch) -> tuple[int, Sequence[str]]:
  """An example to plot and the labels of its stretches of speech.

  On AV-digits: the first caption without a lead-in phrase, one stretch per
  spoken digit (labelled with its word). Elsewhere: example 0, 4 stretches.
  """
  captions = batch.get("caption")
  if captions is not None and "num_digits" in batch:
    for k, text in enumerate(captions):
      words = str(text).split()
      if len(words) == int(batch["num_digits"][k]):
        return k, [f"≈ '{w}'" for w in words]
  return 0, [f"part {k + 1}/4" for k in range(4)]
