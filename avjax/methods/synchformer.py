"""Synchformer: audio-visual synchronisation from sparse cues.

Iashin, Xie, Rahtu & Zisserman, arXiv 2401.16423 (ICASSP 2024); facts in
``shared/design/papers.md`` §4. Three stages in one run of the shared loop,
each a ``config.stages`` entry whose ``kind`` picks the loss and whose
``train`` / ``exclude`` path prefixes pick the parameters its optimiser
updates (``make_optimizer``: ``optax.multi_transform`` with
``optax.set_to_zero`` on the rest, so untrained parameters stay
bit-identical through the stage):

1. ``contrastive``: the audio and visual segment extractors
   (``avjax.models.sync``) encode each non-overlapping segment of a synced
   crop to one feature; symmetric InfoNCE over all segments of the batch,
   flattened to [B·S, D]: the positive of (clip b, segment s) is the other
   modality's (b, s), every other segment of the batch — also the other
   segments of clip b — is a negative. The temperature is learned (its log
   is a parameter, ``config.loss.temperature``: initialised at 0.07 and
   kept in [0.001, 0.5] by ``avjax.models.temperature``).
2. ``offset``: extractors frozen (their outputs also pass through
   ``stop_gradient``, so no backward pass is spent on them); segments with
   50 % overlap, each giving ``model.time_tokens`` time tokens per modality
   (the official stage 2 keeps each segment's time tokens; 0 = one
   aggregated token per segment, the ablation); the sync transformer
   (``params["sync"]``) and its offset head, cross-entropy over the
   ``num_offsets`` classes of the audio shift the pipeline applied.
3. ``sync``: synchronisability fine-tuning, as the official code does it: a
   second sync transformer, ``params["synchronisability"]``, starts as a
   copy of stage 2's (copied in the stage's first step, ``train_step``) and
   trains with its 2-way head on the offset token (extractors frozen; by
   default its offset head too, so ``offset_top1_after_stage3`` shows how
   much offset information the fine-tuned transformer keeps) on the
   pipeline's 50/50 synchronisable (a grid offset) / unsynchronisable
   (audio shifted by a whole crop length) windows. Offsets are predicted by
   stage 2's transformer, which stage 3 leaves bit-identical. The
   ``head_only_stage3`` ablation trains the 2-way head alone.

Choices the paper leaves open (config fields):
  * extractor sizes (``config.model``): small transformers sized for 2 CPU
    cores instead of Motionformer / AST;
  * per-stage learning rates (``stages[i].optimizer`` overrides
    ``config.optimizer``; each stage's schedule spans its own steps and its
    optimiser state starts fresh);
  * training audio gets Gaussian noise of std U(0, ``data.audio_noise``) of
    full scale, on device (``avjax.models.sync.white_noise``);
  * evidence attribution (``extra_metrics``): gradient × input at the sync
    module's inputs, summed per segment and modality (see
    ``_attribution``).

Evaluation: ``predict_fns()["sync_offsets"]`` gives, per clip, offset
logits of stage 2's transformer ("offset") and of stage 3's
("offset_after_stage3"), synchronisability logits, evidence scores and the
log-mel; ``config.evals.sync`` (the shared ``sync_offset`` evaluator) turns
them into accuracies, and ``extra_metrics`` adds the evidence hit rates, a
non-learned reference on the same draws (``avjax.eval.sync_reference``,
cue ``config.diagnostics.reference_cue``: what the data allow without
training) and the plots.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avjax import losses
from avjax.data.pipeline import features as features_lib
from avjax.data.pipeline import sources
from avjax.data.pipeline import sync as sync_pipeline
from avjax.data.pipeline import iterators
from avjax.eval import sync as sync_eval
from avjax.eval import sync_reference
from avjax.methods.base import Method
from avjax.models import precision
from avjax.models import sync as sync_models
from avjax.models import temperature as temperature_lib
from avjax.train import optim
from avjax.train.stages import Stage
from avjax.train.state import TrainState

_KINDS = ("contrastive", "offset", "sync")
# The parameters of the sync transformer each stage-2/3 kind reads.
_SYNC_PARAMS = {"offset": "sync", "sync": "synchronisability"}
# What ``eval_inputs`` passes to the model; the rest is metadata.
_MODEL_INPUTS = ("video", "audio_shifted", "audio_check")


def param_path(path: tuple[Any, ...]) -> str:
  """A pytree key path as "a/b/c"."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def _matches(path: str, prefixes: tuple[str, ...]) -> bool:
  return any(path == p or path.startswith(p + "/") for p in prefixes)


def trainable_labels(
    params: Any, train: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> Any:
  """ "train" / "frozen" per leaf: trained iff under a ``train`` prefix and
  not under an ``exclude`` prefix (paths as in ``param_path``)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: (
          "train"
          if _matches(param_path(p), train)
          and not _matches(param_path(p), exclude)
          else "frozen"
      ),
      params,
  )


def segment_contrastive_loss(
    visual: jax.Array, audio: jax.Array, temperature
) -> jax.Array:
  """Stage-1 loss: mean symmetric InfoNCE over every segment of the batch.

  Args:
    visual, audio: [B, S, D] segment features of B clips.
    temperature: τ (scalar).

  Returns:
    Scalar: ``losses.info_nce`` on the [B·S, D] flattened features, so row
    b·S + s (clip b, segment s) has the other modality's (b, s) as its only
    positive and every other segment of the batch, also of clip b, as a
    negative.
  """
  b, s, d = visual.shape
  return jnp.mean(
      losses.info_nce(
          visual.reshape((b * s, d)),
          audio.reshape((b * s, d)),
          temperature=temperature,
      )
  )


class Synchformer(Method):
  """Segment contrastive pretraining, offset classifier, synchronisability."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    d, m = config.data, config.model
    self.spec = sync_pipeline.SyncSpec(
        fps=float(d.fps),
        sample_rate=int(d.sample_rate),
        crop_frames=int(d.crop_frames),
        num_offsets=int(d.num_offsets),
        max_offset=float(d.max_offset),
        jitter=float(d.jitter),
        mel=features_lib.MelSpec(
            sample_rate=int(d.sample_rate), **dict(d.log_mel)
        ),
    )
    self.segment_length = int(m.segment_frames)
    self.time_tokens = int(m.time_tokens)
    dtype = precision.config_dtype(config)
    self.visual = sync_models.VisualSegmentEncoder(
        dtype=dtype, **dict(m.visual)
    )
    self.audio = sync_models.AudioSegmentEncoder(dtype=dtype, **dict(m.audio))
    self.sync = sync_models.SyncTransformer(
        num_offsets=self.spec.num_offsets, dtype=dtype, **dict(m.sync)
    )
    mel_per_frame = (
        self.spec.sample_rate
        / self.spec.fps
        / (self.spec.mel.hop_length * self.audio.patch)
    )
    if not math.isclose(mel_per_frame, 1.0):
      raise ValueError(
          f"config: audio tokens must match video frames one to one; "
          f"sample_rate / fps / (hop_length * audio.patch) = "
          f"{mel_per_frame:g}, expected 1"
      )
    for stage in config.stages:
      kind = stage.get("kind")
      if kind not in _KINDS:
        raise ValueError(
            f"config.stages[{stage.name!r}].kind={kind!r} is not "
            f"one of {_KINDS}"
        )
    self._temperature = temperature_lib.LearnedTemperature.from_config(
        config.loss.temperature
    )
    self._txs: dict[int, optax.GradientTransformation] = {}
    self._eval_cache: dict[str, dict[str, np.ndarray]] = {}

  # Data -------------------------------------------------------------------
  def _source(self, split: str):
    return sources.load_config_source(self.config.data, split)

  def train_iterator(self, batch_size, seed, process_index, process_count):
    return sync_pipeline.make_train_iterator(
        self._source("train"),
        self.spec,
        batch_size,
        seed,
        process_index=process_index,
        process_count=process_count,
    )

  def _inputs(self, batch, window: str, rng=None):
    """Device inputs: video float [B, L, H, W, C], log-mel [B, F, M]."""
    video = batch["video"].astype(jnp.float32) / 255.0
    audio = batch[f"audio_{window}"].astype(jnp.float32) / 32768.0
    noise = float(self.config.data.audio_noise)
    if rng is not None and noise > 0:
      k1, k2 = jax.random.split(rng)
      std = jax.random.uniform(k1, (audio.shape[0], 1), maxval=noise)
      audio = audio + std * sync_models.white_noise(k2, audio.shape)
    mel = sync_models.log_mel(audio, self.spec.mel)[:, : self.spec.mel_frames]
    return video, mel

  # Model ------------------------------------------------------------------
  @property
  def stride(self) -> int:
    """Stage-2/3 segment stride (frames / audio tokens)."""
    return int(self.config.model.segment_stride)

  def init_params(self, rng, batch):
    # One compiled program instead of ~230 op-by-op compilations (about 10 s
    # of start-up on 2 CPU cores); bit-identical values (`token_init`).
    return jax.jit(self._init_params)(
        rng, {k: np.asarray(v[:2]) for k, v in batch.items()}
    )

  def _init_params(self, rng, batch):
    kv, ka, ks = jax.random.split(rng, 3)
    video, mel = self._inputs(batch, "synced")
    pv = self.visual.init(kv, video, self.segment_length, self.stride)
    pa = self.audio.init(ka, mel, self.segment_length, self.stride)
    fv, fa = self.sync_features(
        {"visual": pv["params"], "audio": pa["params"]}, video, mel
    )
    ps = self.sync.init(ks, fv, fa)["params"]
    return {
        "visual": pv["params"],
        "audio": pa["params"],
        "sync": ps,
        # Overwritten by a copy of "sync" when stage 3 starts.
        "synchronisability": jax.tree.map(jnp.copy, ps),
        "temperature": {"log": self._temperature.init_param()},
    }

  def features(
      self, params, video, mel, stride: int, rng=None, time_tokens: int = 0
  ):
    """Segment features: visual, audio [B, S, D] (``time_tokens`` 0) or
    [B, S, time_tokens, D]."""
    train = rng is not None
    rngs = (lambda k: {"dropout": k}) if train else (lambda k: None)
    kv, ka = jax.random.split(rng) if train else (None, None)
    fv = self.visual.apply(
        {"params": params["visual"]},
        video,
        self.segment_length,
        stride,
        train=train,
        time_tokens=time_tokens,
        rngs=rngs(kv),
    )
    fa = self.audio.apply(
        {"params": params["audio"]},
        mel,
        self.segment_length,
        stride,
        train=train,
        time_tokens=time_tokens,
        rngs=rngs(ka),
    )
    return fv, fa

  def sync_features(self, params, video, mel, rng=None):
    """Stage-2/3 features: overlapping segments, ``time_tokens`` each."""
    return self.features(
        params, video, mel, self.stride, rng, time_tokens=self.time_tokens
    )

  def temperature(self, params) -> jax.Array:
    """Stage 1's τ (``config.loss.temperature``)."""
    return self._temperature.value(params["temperature"]["log"])

  def project_params(self, params):
    return dict(
        params,
        temperature={
            "log": self._temperature.project(params["temperature"]["log"])
        },
    )

  # Each stage trains other parameters, with a fresh optimiser state.
  stage_optimizers = "per_stage"

  def make_optimizer(self, stage: Stage, run):
    """Stage ``stage``'s optimiser: trains only its ``train`` prefixes."""
    del run  # Each stage's schedule spans the stage.
    if stage.index not in self._txs:
      cfg = ml_collections.ConfigDict(self.config.optimizer.to_dict())
      cfg.update(dict(stage.options.optimizer))
      train = tuple(stage.options.train)
      exclude = tuple(stage.options.exclude)
      self._txs[stage.index] = optax.multi_transform(
          {
              "train": optim.make_optimizer(cfg, stage.steps),
              "frozen": optax.set_to_zero(),
          },
          functools.partial(trainable_labels, train=train, exclude=exclude),
      )
    return self._txs[stage.index]

  # Loss -------------------------------------------------------------------
  def _frozen(self, stage: Stage, name: str) -> bool:
    return not _matches(name, tuple(stage.options.train))

  def train_step(
      self, state: TrainState, batch, stage: Stage, run
  ) -> tuple[TrainState, dict]:
    """The default step; stage 3's first step first copies stage 2's sync
    transformer into ``params["synchronisability"]`` (the fine-tuning
    starts from the offset model, as in the official code)."""
    if stage.options.kind == "sync":
      fresh = state.step == stage.start
      params = dict(state.params)
      params["synchronisability"] = jax.tree.map(
          lambda new, old: jnp.where(fresh, new, old),
          params["sync"],
          params["synchronisability"],
      )
      state = state.replace(params=params)
    return super().train_step(state, batch, stage, run)

  def loss_fn(self, params, batch, rng, stage: Stage, step):
    kind = stage.options.kind
    k_noise, k_feat, k_sync = jax.random.split(rng, 3)
    if kind == "contrastive":
      video, mel = self._inputs(batch, "synced", k_noise)
      fv, fa = self.features(params, video, mel, self.segment_length, k_feat)
      tau = self.temperature(params)
      loss = segment_contrastive_loss(fv, fa, tau)
      b, s, d = fv.shape
      sim = fv.reshape((b * s, d)) @ fa.reshape((b * s, d)).T
      acc = jnp.mean(jnp.argmax(sim, axis=1) == jnp.arange(b * s))
      return loss, {"temperature": tau, "segment_retrieval_acc": acc}
    window, target, head = (
        ("shifted", "offset_label", "offset")
        if kind == "offset"
        else ("check", "sync_label", "sync")
    )
    video, mel = self._inputs(batch, window, k_noise)
    feat_rng = None if self._frozen(stage, "visual") else k_feat
    fv, fa = self.sync_features(params, video, mel, feat_rng)
    if self._frozen(stage, "visual"):
      fv = jax.lax.stop_gradient(fv)
    if self._frozen(stage, "audio"):
      fa = jax.lax.stop_gradient(fa)
    logits = self.sync.apply(
        {"params": params[_SYNC_PARAMS[kind]]},
        fv,
        fa,
        train=True,
        rngs={"dropout": k_sync},
    )[head]
    labels = batch[target]
    loss = jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    )
    acc = jnp.mean(jnp.argmax(logits, axis=1) == labels)
    return loss, {f"{head}_acc": acc}

  # Eval -------------------------------------------------------------------
  def _attribution(self, params, fv, fa):
    """Evidence per segment: Σ_t |Σ_d f_std · ∂ logit_pred / ∂ f_std|.

    Gradient × input at the sync module's inputs — the features of each
    segment and modality that the sync transformer sees (its time tokens t,
    or the one aggregated token) — for the predicted offset class, summed
    over a segment's tokens. Chosen over attention rollout because it needs
    one backward pass, covers both modalities on the same scale (the change
    of the chosen logit), and sums exactly to the granularity of the
    evidence metric (segments); rollout through pre-LN residual blocks and
    the per-modality projections has no such direct reading. The absolute
    value counts evidence against other classes too.
    """

    def chosen(fv_, fa_):
      logits = self.sync.apply({"params": params["sync"]}, fv_, fa_)["offset"]
      pred = jax.lax.stop_gradient(jnp.argmax(logits, axis=1))
      return jnp.sum(jnp.take_along_axis(logits, pred[:, None], axis=1))

    gv, ga = jax.grad(chosen, argnums=(0, 1))(fv, fa)

    def per_segment(g, f):
      score = jnp.abs(jnp.sum(g * f, -1))  # [B, S] or [B, S, T]
      return score if score.ndim == 2 else jnp.sum(score, -1)

    return per_segment(gv, fv), per_segment(ga, fa)

  def predict_fns(self):
    return {"sync_offsets": self.predict}

  def predict(self, params, batch):
    """Per clip of a batch with "video", "audio_shifted", "audio_check":
    offset logits of stage 2's transformer ("offset") and of stage 3's
    ("offset_after_stage3", through the offset head it copied), the
    synchronisability logits of the "check" window ("sync"), per-segment
    evidence ("score_video", "score_audio") and the log-mel."""
    video, mel = self._inputs(batch, "shifted")
    fv, fa = self.sync_features(params, video, mel)
    offset = self.sync.apply({"params": params["sync"]}, fv, fa)["offset"]
    tuned = {"params": params["synchronisability"]}
    offset_tuned = self.sync.apply(tuned, fv, fa)["offset"]
    score_v, score_a = self._attribution(params, fv, fa)
    video_c, mel_c = self._inputs(batch, "check")
    fv_c, fa_c = self.sync_features(params, video_c, mel_c)
    sync = self.sync.apply(tuned, fv_c, fa_c)["sync"]
    return {
        "offset": offset,
        "offset_after_stage3": offset_tuned,
        "sync": sync,
        "score_video": score_v,
        "score_audio": score_a,
        "mel": mel,
    }

  def eval_data(self, split: str) -> dict[str, np.ndarray]:
    """The split's fixed evaluation draws as arrays (cached): model inputs,
    labels, event times and clip indices."""
    if split not in self._eval_cache:
      max_clips = (
          self.config.diagnostics.val_max_clips
          if split == "validation"
          else None
      )
      self._eval_cache[split] = sync_pipeline.load_eval(
          self._source(split), self.spec, max_clips=max_clips
      )
    return self._eval_cache[split]

  def eval_source(self, split):
    return iterators.ArraySource(self.eval_data(split))

  def eval_inputs(self, records):
    inputs = {k: records[k] for k in _MODEL_INPUTS}
    return inputs, {k: v for k, v in records.items() if k not in inputs}

  def segment_spans(self) -> np.ndarray:
    spec = self.spec
    count = sync_models.num_segments(
        spec.crop_frames, self.segment_length, self.stride
    )
    return sync_eval.segment_spans(
        count, self.segment_length / spec.fps, self.stride / spec.fps
    )

  def reference_scores(self, split: str) -> dict[str, np.ndarray]:
    """The non-learned reference on the split's draws (cached).

    Returns:
      offset [N, num_offsets] correlation per class of the shifted window;
      sync [N] best correlation of the stage-3 window (its synchronisability
      score).
    """
    key = f"reference/{split}"
    if key not in self._eval_cache:
      data = self.eval_data(split)
      cue = str(self.config.diagnostics.reference_cue)
      ref = functools.partial(
          sync_reference.offset_scores,
          fps=self.spec.fps,
          sample_rate=self.spec.sample_rate,
          offsets=self.spec.offsets(),
          cue=cue,
      )
      self._eval_cache[key] = {
          "offset": ref(data["video"], data["audio_shifted"]),
          "sync": ref(data["video"], data["audio_check"]).max(axis=1),
      }
    return self._eval_cache[key]

  def extra_metrics(self, context, run):
    """The non-learned reference's accuracies on the same draws, evidence
    hit rates (sparse data) and, with a plot dir, the plots."""
    del run
    split = context.split
    out = context.predictions(["sync_offsets"])
    pred = out["sync_offsets"]
    labels = out["offset_label"]
    reference = self.reference_scores(split)
    result = {
        "reference_offset_top1": sync_eval.offset_accuracy(
            reference["offset"], labels
        ),
        "reference_offset_top1_tol1": sync_eval.offset_accuracy(
            reference["offset"], labels, tolerance=1
        ),
        "reference_sync_auc": sync_eval.roc_auc(
            reference["sync"], out["sync_label"]
        ),
    }
    spans = self.segment_spans()
    evidence = sync_eval.evidence_hits(
        pred["score_video"],
        pred["score_audio"],
        out["video_events"],
        out["audio_events"],
        spans,
    )
    if evidence["evidence_clips"] > 0:
      result.update(evidence)
    if context.plot_dir:
      self._plots(self.eval_data(split), pred, spans, context.plot_dir)
    return result

  def _plots(self, data, pred, spans, plot_dir: str) -> None:
    from avjax.eval import plots  # pylint: disable=import-outside-toplevel
    from avjax.eval import sync_plots  # pylint: disable=import-outside-toplevel

    spec = self.spec
    names = [f"{o:+.1f}" for o in spec.offsets()]
    matrix = sync_eval.confusion_matrix(
        data["offset_label"], np.argmax(pred["offset"], 1), spec.num_offsets
    )
    sync_plots.plot_confusion_matrix(
        matrix,
        names,
        os.path.join(plot_dir, "offset_confusion.png"),
        title=f"Offset classes, {self.config.data.name} (test)",
    )
    count = int(self.config.diagnostics.evidence_plots)
    has_event = np.isfinite(data["video_events"]).any(axis=1)
    chosen = (
        np.flatnonzero(has_event)[:count]
        if has_event.any()
        else (np.arange(min(count, len(has_event))))
    )
    mel_rate = spec.sample_rate / spec.mel.hop_length
    pred_class = np.argmax(pred["offset"], 1)
    for n, i in enumerate(chosen):
      sync_plots.plot_evidence_timeline(
          data["video"][i],
          pred["mel"][i],
          pred["score_video"][i],
          pred["score_audio"][i],
          spans,
          spec.fps,
          mel_rate,
          data["video_events"][i],
          data["audio_events"][i],
          os.path.join(plot_dir, f"evidence_{n}.png"),
          title=(
              f"test clip {int(data['clip_index'][i])}: true offset "
              f"{spec.offsets()[data['offset_label'][i]]:+.1f} s, "
              f"predicted {spec.offsets()[pred_class[i]]:+.1f} s"
          ),
      )
    log = os.path.join(os.path.dirname(os.path.abspath(plot_dir)), "log.jsonl")
    if os.path.exists(log):
      with open(log, encoding="utf-8") as f:
        has_val = any(
            "val/offset_top1" in json.loads(line) for line in f if line.strip()
        )
      if has_val:
        plots.plot_training_curves(
            log,
            os.path.join(plot_dir, "val_offset_accuracy.png"),
            ["val/offset_top1", "val/offset_top1_tol1", "train/loss"],
            title="Validation offset accuracy during training",
        )
