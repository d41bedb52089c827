"""Synchformer's modules: segment feature extractors and the sync transformer.

Shapes: B clips, S segments per clip, F frames per segment, H×W×C frames,
M mel bins, D extractor width, W sync-transformer width.

* ``segment``: cuts [B, T, ...] into [B, S, F, ...] windows of ``length``
  steps every ``stride`` steps (S = (T - length) // stride + 1; trailing
  steps that do not fill a window are left out).
* ``VisualSegmentEncoder``: a clip's frames → one token per frame (patch
  embeddings mapped to D) → segments of tokens → a small pre-LN transformer
  per segment with learned positions and a learned aggregation token
  prepended → either that token's output, one [D] feature per segment
  (``time_tokens=0``: stage 1, and the one-token ablation), or the outputs
  at the frame tokens mean-pooled to ``time_tokens`` [D] features per
  segment, in time order ([B, S, T, D]: stages 2 and 3, as the official
  stage 2, whose temporal aggregation is the identity: Motionformer's 8
  per segment there).
* ``AudioSegmentEncoder``: a clip's log-mel → one token per ``patch`` mel
  frames (a strided 1-D convolution with the bins as channels; on CPU much
  cheaper than 2-D patches) → segments → the same aggregation transformer.
  Tokens are computed once per clip, so overlapping segments (stage 2) cost
  only the aggregation.
  The paper uses Motionformer / AST with 768-wide features; these are small
  stand-ins of the same shape of computation (tokens → transformer →
  per-segment aggregation), sized for 2 CPU cores.
* ``SyncTransformer``: visual and audio segment features ([B, S, D] or
  [B, S, T, D] with T time tokens per segment), each through its own
  LayerNorm + linear map to W, form the sequence
  [offset token, v_1,1..v_1,T, .., v_S,T, separator, a_1,1..a_S,T]
  (segment-major, time-minor; ``sequence_layout``) with one learned
  position embedding over the whole sequence (no modality embedding;
  papers.md §4), dropout, a pre-LN transformer, and two linear heads on the
  offset token's output: ``offset_head`` (``num_offsets`` classes, stage 2)
  and ``sync_head`` (2 classes, stage 3). Both heads always exist, so the
  parameter tree is the same in every stage; a stage chooses which head it
  reads and trains.

Each module computes in its ``dtype`` with float32 parameters and returns
float32 (``avjax.models.precision``); the log-mel stays float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avjax.data.pipeline import features as features_lib
from avjax.models.encoders import frame_patches
from avjax.models.transformer import TransformerEncoder


def num_segments(total: int, length: int, stride: int) -> int:
  """Windows of ``length`` every ``stride`` that fit in ``total`` steps."""
  if length < 1 or stride < 1:
    raise ValueError(
        f"segment length and stride must be >= 1, got {length}, " f"{stride}"
    )
  if total < length:
    raise ValueError(
        f"a clip of {total} steps is shorter than one segment " f"of {length}"
    )
  return (total - length) // stride + 1


def segment(x: jax.Array, length: int, stride: int) -> jax.Array:
  """[B, T, ...] → [B, S, length, ...]; window s is x[:, s·stride:][:length]."""
  count = num_segments(x.shape[1], length, stride)
  index = (
      jnp.arange(count)[:, None] * stride + jnp.arange(length)[None, :]
  )  # [S, length]
  return x[:, index]


def token_init(stddev: float = 0.02) -> nn.initializers.Initializer:
  """``nn.initializers.normal(stddev)``, bit-identical jitted or not.

  Jitted, XLA fuses the scaling into the normal draw and rounds differently
  (by up to 7e-9 here) from the op-by-op initialisation these models were
  first trained with; the barrier keeps the two programs apart, so a jitted
  ``init`` reproduces those parameters exactly.
  """

  def init(key, shape, dtype=jnp.float32):
    draw = jax.lax.optimization_barrier(jax.random.normal(key, shape, dtype))
    return draw * jnp.array(stddev, dtype)

  return init


class _AggregationTransformer(nn.Module):
  """Tokens [N, K, D] (+ positions) → one feature [N, D] per row."""

  num_layers: int
  num_heads: int
  mlp_ratio: float
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, tokens: jax.Array, *, train: bool, time_tokens: int = 0
  ) -> jax.Array:
    """[N, K, D] → [N, D] (``time_tokens`` 0) or [N, time_tokens, D]."""
    n, k, d = tokens.shape
    pos = self.param("positions", token_init(), (k, d))
    agg = self.param("aggregation_token", token_init(), (1, 1, d))
    x = jnp.concatenate(
        [jnp.broadcast_to(agg, (n, 1, d)), tokens + pos], axis=1
    )
    x = TransformerEncoder(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="transformer",
    )(x, train=train)
    if not time_tokens:
      return x[:, 0]
    return pool_time(x[:, 1:], time_tokens)


def pool_time(x: jax.Array, count: int) -> jax.Array:
  """[N, K, D] → [N, count, D]: means of ``K // count`` consecutive steps."""
  n, k, d = x.shape
  if count < 1 or k % count:
    raise ValueError(
        f"{k} tokens per segment do not pool into {count} time tokens "
        "(time_tokens must divide the segment length)"
    )
  return x.reshape((n, count, k // count, d)).mean(axis=2)


class VisualSegmentEncoder(nn.Module):
  """Video [B, T, H, W, C] → segment features [B, S, D].

  Each frame becomes one token: its ``patch``² patches are embedded
  (Dense + GELU, ``patch_features`` each) and the embeddings of all
  patches, in place order, are mapped to D (so the token knows what is
  where). Tokens are computed once per frame even when segments overlap;
  the tokens of each segment (``length`` frames every ``stride``) are
  aggregated by the transformer. (A strided CNN tokenizer was 5× slower
  per step on 2 CPU cores.)

  Attributes:
    width: D.
    patch: pixels per patch side (H and W divisible by it).
    patch_features: width of each patch embedding.
    num_layers, num_heads, mlp_ratio, dropout: the aggregation transformer.
  """

  width: int = 64
  patch: int = 8
  patch_features: int = 32
  num_layers: int = 1
  num_heads: int = 4
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      video: jax.Array,
      length: int,
      stride: int,
      *,
      train: bool = False,
      time_tokens: int = 0,
  ) -> jax.Array:
    """[B, T, H, W, C] → [B, S, D] (``time_tokens`` 0) or [B, S, T', D]."""
    b, t = video.shape[:2]
    x = frame_patches(
        video.reshape((b * t,) + video.shape[2:]),
        self.patch,
        "config.model.visual.patch",
    ).reshape((b * t, -1, self.patch**2 * video.shape[-1]))
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)
    x = nn.gelu(dense(self.patch_features, "patch_embed")(x))
    x = dense(self.width, "token_proj")(x.reshape((b * t, -1)))
    tokens = segment(x.reshape((b, t, self.width)), length, stride)
    s = tokens.shape[1]
    out = _AggregationTransformer(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="aggregate",
    )(tokens.reshape((b * s, length, -1)), train=train, time_tokens=time_tokens)
    return out.reshape((b, s) + out.shape[1:])


class AudioSegmentEncoder(nn.Module):
  """Log-mel [B, F, M] → segment features [B, S, D].

  Every ``patch`` mel frames become one token (a strided 1-D convolution
  with the mel bins as channels, after standardising each clip's log-mel);
  with a 10 ms hop and ``patch`` 4 that is one token per 40 ms video frame,
  so audio segments use the same ``length`` and ``stride`` in tokens as
  video segments in frames.

  Attributes:
    width: D.
    patch: mel frames per token.
    num_layers, num_heads, mlp_ratio, dropout: the aggregation transformer.
  """

  width: int = 64
  patch: int = 4
  num_layers: int = 1
  num_heads: int = 4
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      log_mel: jax.Array,
      length: int,
      stride: int,
      *,
      train: bool = False,
      time_tokens: int = 0,
  ) -> jax.Array:
    """[B, F, M] → [B, S, D] (``time_tokens`` 0) or [B, S, T', D]."""
    b, f = log_mel.shape[:2]
    if f % self.patch:
      raise ValueError(
          f"{f} mel frames are not divisible into patches of " f"{self.patch}"
      )
    # Per-clip standardisation: log-mel levels differ by orders of magnitude
    # between recordings.
    x = (log_mel - log_mel.mean(axis=(1, 2), keepdims=True)) / (
        log_mel.std(axis=(1, 2), keepdims=True) + 1e-3
    )
    x = nn.gelu(
        nn.Conv(
            self.width,
            (self.patch,),
            strides=(self.patch,),
            padding="VALID",
            dtype=self.dtype,
            name="patches",
        )(x)
    )
    x = nn.Dense(self.width, dtype=self.dtype, name="token_proj")(x)
    tokens = segment(x, length, stride)
    s = tokens.shape[1]
    out = _AggregationTransformer(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="aggregate",
    )(tokens.reshape((b * s, length, -1)), train=train, time_tokens=time_tokens)
    return out.reshape((b, s) + out.shape[1:])


def sequence_layout(
    visual_shape: tuple[int, ...], audio_shape: tuple[int, ...]
) -> dict[str, slice]:
  """Where each part sits in the sync transformer's token sequence.

  Args:
    visual_shape, audio_shape: [B, S, D] or [B, S, T, D] feature shapes.

  Returns:
    {"offset": slice, "visual": slice, "separator": slice, "audio": slice}
    over positions of [offset, S·T visual tokens, separator, S'·T' audio
    tokens]; within a modality token s·T + t is segment s, time token t.
  """
  count = lambda shape: int(np.prod(shape[1:-1]))
  nv, na = count(visual_shape), count(audio_shape)
  return {
      "offset": slice(0, 1),
      "visual": slice(1, 1 + nv),
      "separator": slice(1 + nv, 2 + nv),
      "audio": slice(2 + nv, 2 + nv + na),
  }


class SyncTransformer(nn.Module):
  """Segment features → (offset logits [B, num_offsets], sync logits [B, 2]).

  Attributes:
    width: W.
    num_layers, num_heads, mlp_ratio, dropout: the transformer (dropout
      also on the summed token + position inputs).
    num_offsets: classes of ``offset_head``.
    positions: ``"sequence"``: one learned position embedding per place in
      the whole sequence (the official code's); ``"shared_time"``: visual
      token i and audio token i (the same nominal time) share one learned
      time embedding and each modality adds its own learned embedding; the
      offset and separator tokens, unique already, get none. Needs as many
      visual as audio tokens.
  """

  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 2.0
  dropout: float = 0.1
  num_offsets: int = 21
  positions: str = "sequence"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, visual: jax.Array, audio: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """visual [B, S(, T), Dv], audio [B, S'(, T'), Da] → logits.

    The input sequence (``sequence_layout``) is sown as
    ``intermediates/tokens`` [B, N, W] (before position embeddings).

    Returns:
      {"offset": [B, num_offsets], "sync": [B, 2]}.
    """
    b = visual.shape[0]
    flat = lambda x: x.reshape((b, -1, x.shape[-1]))
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    v = dense(self.width, "visual_proj")(norm("visual_norm")(flat(visual)))
    a = dense(self.width, "audio_proj")(norm("audio_norm")(flat(audio)))
    init = token_init()
    off = self.param("offset_token", init, (1, 1, self.width))
    sep = self.param("separator_token", init, (1, 1, self.width))
    x = jnp.concatenate(
        [
            jnp.broadcast_to(off, (b, 1, self.width)),
            v,
            jnp.broadcast_to(sep, (b, 1, self.width)),
            a,
        ],
        axis=1,
    )
    self.sow("intermediates", "tokens", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(
        x + self._position_embeddings(v.shape[1], a.shape[1])
    )
    x = TransformerEncoder(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="transformer",
    )(x, train=train)
    cls = x[:, 0]
    return {
        "offset": dense(self.num_offsets, "offset_head")(cls).astype(
            jnp.float32
        ),
        "sync": dense(2, "sync_head")(cls).astype(jnp.float32),
    }

  def _position_embeddings(self, num_visual: int, num_audio: int) -> jax.Array:
    """[1 + Nv + 1 + Na, W] added to the token sequence."""
    init = token_init()
    if self.positions == "sequence":
      return self.param(
          "positions", init, (num_visual + num_audio + 2, self.width)
      )
    if self.positions != "shared_time":
      raise ValueError(
          f"config.model.sync.positions={self.positions!r} is not one of "
          "('sequence', 'shared_time')"
      )
    if num_visual != num_audio:
      raise ValueError(
          "config.model.sync.positions='shared_time' needs as many visual as "
          f"audio tokens; got {num_visual} visual and {num_audio} audio"
      )
    time = self.param("time_positions", init, (num_visual, self.width))
    modality = self.param("modality_embeddings", init, (2, self.width))
    none = jnp.zeros((1, self.width), time.dtype)
    return jnp.concatenate(
        [none, time + modality[0], none, time + modality[1]], axis=0
    )


def log_mel(waveform: jax.Array, mel: features_lib.MelSpec) -> jax.Array:
  """``avjax.data.pipeline.features.log_mel`` in JAX, for the jitted step.

  Same definition (centred zero-padded STFT, periodic Hann window of
  ``win_length`` centred in ``n_fft``, power 2, librosa's Slaney mel
  filterbank, log(x + 1e-6)); equal to the numpy version to float32
  rounding (tested).

  Args:
    waveform: float [B, N] samples in [-1, 1].
    mel: STFT and filterbank parameters.

  Returns:
    float32 [B, 1 + N // hop_length, n_mels].
  """
  bank = features_lib.mel_filterbank(
      mel.sample_rate, mel.n_fft, mel.n_mels, float(mel.fmin), float(mel.fmax)
  )
  window = features_lib.stft_window(mel.n_fft, mel.win_length)
  pad = mel.n_fft // 2
  x = jnp.pad(waveform.astype(jnp.float32), ((0, 0), (pad, pad)))
  count = 1 + (x.shape[1] - mel.n_fft) // mel.hop_length
  index = (
      jnp.arange(count)[:, None] * mel.hop_length
      + jnp.arange(mel.n_fft)[None, :]
  )
  spectrum = jnp.fft.rfft(x[:, index] * jnp.asarray(window), axis=-1)
  power = spectrum.real**2 + spectrum.imag**2
  return jnp.log(power @ jnp.asarray(bank.T) + 1e-6)


def white_noise(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
  """Standard normal float32 noise [B, N] for waveform augmentation.

  Box–Muller on 16-bit uniforms from ``jax.random.bits`` (two per 32-bit
  draw), materialised behind an optimisation barrier. Inside the
  Synchformer step on 2 CPU cores, ``jax.random.normal`` on a 32 × 40,960
  waveform followed by the log-mel STFT took ~240 ms more than the STFT
  alone (the draw jitted alone: 65 ms; a barrier did not help), this about
  30 ms. The 16-bit uniforms cut the tails at ±4.9 (a 1e-6 event per
  sample); mean, variance and shape are otherwise those of N(0, 1) (tested
  against SciPy).

  Args:
    key: a PRNG key.
    shape: (B, N), any N >= 1.

  Returns:
    float32 [B, N].
  """
  b, n = shape
  half = (n + 1) // 2
  bits = jax.random.bits(key, (b, half), jnp.uint32)
  u1 = ((bits >> 16).astype(jnp.float32) + 0.5) / 65536.0  # in (0, 1)
  u2 = (bits & 0xFFFF).astype(jnp.float32) / 65536.0
  radius = jnp.sqrt(-2.0 * jnp.log(u1))
  angle = 2.0 * jnp.pi * u2
  noise = jnp.concatenate(
      [radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=1
  )[:, :n]
  return jax.lax.optimization_barrier(noise)
