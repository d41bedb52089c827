"""Speech and image encoders for spoken-caption ↔ image retrieval (CMD).

Both encoders return an :class:`EncoderOutput`: token features (speech
frames or image patches) for the cross-modal denoiser, their validity mask,
and one global embedding per example for retrieval.

Speech: log-mel frames [B, T, n_mels] → optional per-utterance mean/variance
normalisation → 1-D convolutions over time (the strided ones subsample
time) → linear map to the model width + sinusoidal positions → pre-LN
transformer with a key padding mask → frame features [B, T', D]. The global
embedding is a masked pooling of the frames, projected to ``embed_dim``.

Image: ViT-style: an optional convolutional stem, non-overlapping
``patch_size`` patches → linear patch embedding + learned position
embeddings → pre-LN transformer → patch features [B, P, D]; the global
embedding is a pooling of the patches, projected.

Also here: the training-time input augmentations used with these encoders
(``spec_augment``, ``random_shift``), pure jnp and padding-aware.

Decisions the paper (which uses pretrained HuBERT-like and CLIP-like
encoders) leaves to us:
  * Padding never influences a valid frame. Padded input frames are zeroed
    before every convolution and each conv uses a fixed symmetric "SAME"
    padding of ``kernel // 2`` (not Flax's length-dependent "SAME"), so the
    features of an utterance do not depend on how much padding follows it.
    The frame mask is subsampled with the conv strides (frame ``j`` is valid
    iff input frame ``j * stride`` is): an utterance of L frames keeps
    ceil(L / stride) frames, exactly what a lone unpadded utterance gives.
  * Normalisation is LayerNorm only (no statistics across batch) and the
    input normalisation uses only the utterance's valid frames, for the same
    reason.
  * Speech positions are fixed sinusoids (utterance length is open-ended);
    image positions are learned (the patch grid is fixed).
  * Trained from scratch on small data (AV-digits), a plain ViT with 8×8
    patches and mean pooling learned nothing in the first few hundred steps
    (even with digit labels); a small stride-2 conv stem before the patches
    (the "hybrid" ViT of Dosovitskiy et al.) whose tokens each see about one
    digit, with max pooling over tokens (a multiple-instance "which digits
    are present" read-out), did. Both are options (``stem_features``,
    ``pooling``); configs/cmd.py picks them for AV-digits.
  * Global embeddings are not L2-normalised here; the contrastive loss and
    cosine retrieval normalise them.

Both encoders compute in their ``dtype`` with float32 parameters; the input
normalisation, pooling and the outputs are float32
(``avjax.models.precision``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import transformer


class EncoderOutput(NamedTuple):
  """What a CMD encoder returns.

  Attributes:
    features: float32 [B, N, D] frame or patch features (padding zeroed).
    mask: bool [B, N], True for real frames / patches.
    embedding: float32 [B, E] global embedding (not normalised).
  """

  features: jax.Array
  mask: jax.Array
  embedding: jax.Array


def subsample_mask(mask: jax.Array, strides: Sequence[int]) -> jax.Array:
  """Frame mask [B, T] after convs with these time strides → [B, T']."""
  for s in strides:
    mask = mask[:, ::s]
  return mask


POOLINGS = ("mean", "max", "mean_max")


def pool(x: jax.Array, mask: jax.Array, kind: str) -> jax.Array:
  """Pools tokens x [B, N, D] over the valid ones (mask [B, N]).

  "mean" → [B, D]; "max" (per-channel maximum; rows without a valid token
  give 0) → [B, D]; "mean_max" → their concatenation [B, 2D].
  """
  if kind not in POOLINGS:
    raise ValueError(f"pooling={kind!r} is not one of {list(POOLINGS)}")
  mean = transformer.masked_mean(x, mask)
  if kind == "mean":
    return mean
  valid = mask[..., None]
  peak = jnp.max(jnp.where(valid, x, -jnp.inf), axis=1)
  peak = jnp.where(jnp.any(valid, axis=1), peak, 0.0)
  return peak if kind == "max" else jnp.concatenate([mean, peak], axis=-1)


def _masked_moments(
    x: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Mean and variance over the valid frames: [B, T, F] → 2 × [B, 1, F]."""
  w = mask[..., None].astype(x.dtype)
  n = jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)
  x = jnp.where(w > 0, x, 0.0)
  mean = jnp.sum(x, axis=1, keepdims=True) / n
  var = jnp.sum(w * (x - mean) ** 2, axis=1, keepdims=True) / n
  return mean, var


def utterance_normalize(
    log_mel: jax.Array, mask: jax.Array, eps: float = 1e-5
) -> jax.Array:
  """Per-utterance, per-bin mean/variance normalisation over valid frames.

  log_mel [B, T, F], mask bool [B, T] → [B, T, F]; padded frames → 0.
  """
  mean, var = _masked_moments(log_mel, mask)
  out = (log_mel - mean) * jax.lax.rsqrt(var + eps)
  return jnp.where(mask[..., None], out, 0.0)


def spec_augment(
    rng: jax.Array,
    log_mel: jax.Array,
    mask: jax.Array,
    num_time_masks: int = 2,
    max_time_width: int = 8,
    num_freq_masks: int = 2,
    max_freq_width: int = 6,
) -> jax.Array:
  """SpecAugment-style masking (Park et al. 2019) within valid frames.

  Each time mask covers w ~ U{0..max_time_width} consecutive frames starting
  uniformly inside the utterance's valid part; each frequency mask covers
  w ~ U{0..max_freq_width} consecutive bins. Masked values are set to the
  utterance's per-bin mean (so 0 after ``utterance_normalize``). Padding is
  untouched.

  Args:
    rng: PRNG key.
    log_mel: [B, T, F] float.
    mask: bool [B, T] valid frames.

  Returns:
    [B, T, F].
  """
  batch, frames, bins = log_mel.shape
  keys = jax.random.split(rng, 4)
  lengths = jnp.sum(mask, axis=1)
  t = jnp.arange(frames)[None, None, :]
  widths = jax.random.randint(
      keys[0], (batch, num_time_masks), 0, max_time_width + 1
  )
  starts = jnp.floor(
      jax.random.uniform(keys[1], (batch, num_time_masks))
      * jnp.maximum(lengths[:, None] - widths + 1, 1)
  )
  time_hit = jnp.any(
      (t >= starts[..., None]) & (t < starts[..., None] + widths[..., None]),
      axis=1,
  )
  f = jnp.arange(bins)[None, None, :]
  fwidths = jax.random.randint(
      keys[2], (batch, num_freq_masks), 0, max_freq_width + 1
  )
  fstarts = jax.random.randint(
      keys[3], (batch, num_freq_masks), 0, jnp.maximum(bins - fwidths + 1, 1)
  )
  freq_hit = jnp.any(
      (f >= fstarts[..., None]) & (f < fstarts[..., None] + fwidths[..., None]),
      axis=1,
  )
  hit = (time_hit & mask)[:, :, None] | (freq_hit[:, None, :] & mask[..., None])
  mean, _ = _masked_moments(log_mel, mask)
  return jnp.where(hit, mean, log_mel)


def random_shift(
    rng: jax.Array, images: jax.Array, max_shift: int
) -> jax.Array:
  """Translates each image by its own random (dy, dx) in [-s, s]², zero fill.

  images [B, H, W, C] → [B, H, W, C]. AV-digits canvases are ink on black,
  so the fill matches the background; a uniform shift keeps the digits'
  reading order.
  """
  if max_shift <= 0:
    return images
  batch, height, width, _ = images.shape
  s = max_shift
  padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
  offsets = jax.random.randint(rng, (batch, 2), 0, 2 * s + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(
        img, (off[0], off[1], 0), (height, width, img.shape[-1])
    )

  return jax.vmap(crop)(padded, offsets)


class SpeechEncoder(nn.Module):
  """Log-mel frames → frame features, frame mask and a global embedding.

  Attributes:
    conv_features: channels of the 1-D conv front-end layers.
    input_norm: normalise each mel bin to zero mean, unit variance over the
      utterance's valid frames (cepstral mean-variance normalisation);
      removes gain and channel differences.
    conv_strides: time stride of each conv layer (same length).
    conv_kernel: odd kernel size (in frames) of the conv layers.
    width: transformer width D.
    num_layers / num_heads / mlp_ratio / dropout: transformer settings.
    embed_dim: width E of the global embedding.
    dtype: compute dtype.
  """

  conv_features: Sequence[int] = (64, 64)
  conv_strides: Sequence[int] = (2, 2)
  conv_kernel: int = 3
  input_norm: bool = True
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  dropout: float = 0.0
  embed_dim: int = 64
  pooling: str = "mean"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      log_mel: jax.Array,
      mask: jax.Array | None = None,
      *,
      train: bool = False,
  ) -> EncoderOutput:
    """Encodes log-mel [B, T, n_mels] with frame mask bool [B, T]."""
    if log_mel.ndim != 3:
      raise ValueError(
          "SpeechEncoder expects log-mel [B, T, n_mels], got "
          f"shape {log_mel.shape}"
      )
    if len(self.conv_features) != len(self.conv_strides):
      raise ValueError(
          f"conv_features {tuple(self.conv_features)} and "
          f"conv_strides {tuple(self.conv_strides)} differ in "
          "length"
      )
    if self.conv_kernel % 2 != 1:
      raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
    batch, frames = log_mel.shape[:2]
    if mask is None:
      mask = jnp.ones((batch, frames), bool)
    elif mask.shape != (batch, frames):
      raise ValueError(
          f"audio_mask has shape {mask.shape}, expected "
          f"({batch}, {frames}) to match log-mel "
          f"{log_mel.shape}"
      )
    mask = mask.astype(bool)
    x = log_mel.astype(jnp.float32)
    if self.input_norm:
      x = utterance_normalize(x, mask)
    half = self.conv_kernel // 2
    for i, (f, s) in enumerate(zip(self.conv_features, self.conv_strides)):
      x = jnp.where(mask[..., None], x, 0.0)
      x = nn.Conv(
          f,
          (self.conv_kernel,),
          strides=(s,),
          padding=((half, half),),
          dtype=self.dtype,
          name=f"conv_{i}",
      )(x)
      mask = mask[:, ::s]
      x = nn.gelu(nn.LayerNorm(dtype=self.dtype, name=f"conv_norm_{i}")(x))
    x = nn.Dense(self.width, dtype=self.dtype, name="input_proj")(x)
    x = x + transformer.sinusoidal_positions(x.shape[1], self.width)[None]
    x = transformer.TransformerEncoder(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="transformer",
    )(x, mask, train=train)
    embedding = nn.Dense(self.embed_dim, dtype=self.dtype, name="projection")(
        pool(x, mask, self.pooling)
    )
    return EncoderOutput(x, mask, embedding.astype(jnp.float32))


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max pooling with stride 2 over [B, H, W, C] ("SAME": an odd last
  row / column is pooled on its own) → [B, ceil(H/2), ceil(W/2), C].

  A reshape and a max: its gradient is an element-wise select (tied
  maxima share it) instead of `nn.max_pool`'s select-and-scatter, which is
  slower on XLA:CPU.
  """
  b, h, w, c = x.shape
  x = jnp.pad(
      x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf
  )
  return x.reshape(b, (h + 1) // 2, 2, (w + 1) // 2, 2, c).max(axis=(2, 4))


class ImageEncoder(nn.Module):
  """Images [B, H, W, C] → patch features, all-True mask, global embedding.

  Attributes:
    patch_size: side of the square non-overlapping patches, in pixels of
      the stem's output (of the image when there is no stem); must divide
      its height and width.
    stem_features: channels of an optional convolutional stem (3×3 convs,
      each halving H and W, + optional LayerNorm + GELU) before the patch
      embedding — the "hybrid" ViT of Dosovitskiy et al.; () = plain ViT.
    stem_downsample: how each stem layer halves H and W: "stride" (the
      convolution has stride 2) or "max_pool" (stride 1, then 2×2 max
      pooling after the activation).
    stem_norm: LayerNorm over channels after each stem convolution.
    width: transformer width D (the tokens' width also without layers).
    num_layers / num_heads / mlp_ratio / dropout: transformer settings.
      num_layers=0 makes a convolutional encoder: the global embedding pools
      the patch tokens themselves (no position embedding, no final
      LayerNorm), and the returned features are the tokens plus their
      position embeddings (what a cross-attention head reads).
    embed_dim: width E of the global embedding.
    dtype: compute dtype.
  """

  patch_size: int = 8
  stem_features: Sequence[int] = ()
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  dropout: float = 0.0
  embed_dim: int = 64
  pooling: str = "mean"
  stem_downsample: str = "stride"
  stem_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, images: jax.Array, *, train: bool = False
  ) -> EncoderOutput:
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim != 4:
      raise ValueError(
          "ImageEncoder expects images [B, H, W, C], got shape "
          f"{images.shape}"
      )
    x = images.astype(jnp.float32)
    if self.stem_downsample not in ("stride", "max_pool"):
      raise ValueError(
          "ImageEncoder.stem_downsample must be 'stride' or 'max_pool', "
          f"got {self.stem_downsample!r}"
      )
    pool_in_stem = self.stem_downsample == "max_pool"
    for i, f in enumerate(self.stem_features):
      x = nn.Conv(
          f,
          (3, 3),
          strides=(1, 1) if pool_in_stem else (2, 2),
          padding=((1, 1), (1, 1)),
          dtype=self.dtype,
          name=f"stem_conv_{i}",
      )(x)
      if self.stem_norm:
        x = nn.LayerNorm(dtype=self.dtype, name=f"stem_norm_{i}")(x)
      x = nn.gelu(x)
      if pool_in_stem:
        x = max_pool_2x2(x)
    _, height, width, _ = x.shape
    p = self.patch_size
    if height % p or width % p:
      raise ValueError(
          f"image size {images.shape[1]}x{images.shape[2]} "
          f"({height}x{width} after the stem) is not divisible "
          f"by patch_size={p}"
      )
    x = nn.Conv(
        self.width,
        (p, p),
        strides=(p, p),
        padding="VALID",
        dtype=self.dtype,
        name="patch_embed",
    )(x)
    x = x.reshape(x.shape[0], -1, self.width)
    pos = self.param(
        "position_embedding",
        nn.initializers.normal(0.02),
        (x.shape[1], self.width),
    )
    mask = jnp.ones(x.shape[:2], bool)
    if self.num_layers:
      x = transformer.TransformerEncoder(
          self.num_layers,
          self.num_heads,
          self.mlp_ratio,
          self.dropout,
          self.dtype,
          name="transformer",
      )(x + pos[None], mask, train=train)
      pooled = pool(x, mask, self.pooling)
    else:
      # A convolutional encoder: the global embedding pools the stem's
      # tokens directly (no position embedding, no LayerNorm, which slowed
      # digit recognition here); the tokens the CMD head attends to carry
      # their positions.
      x = x.astype(jnp.float32)
      pooled = pool(x, mask, self.pooling)
      x = x + pos[None]
    embedding = nn.Dense(self.embed_dim, dtype=self.dtype, name="projection")(
        pooled
    )
    return EncoderOutput(x, mask, embedding.astype(jnp.float32))


class SpeechImageEncoders(nn.Module):
  """The two CMD encoders under one parameter tree {'speech', 'image'}.

  ``__call__(log_mel, audio_mask, images)`` returns (speech EncoderOutput,
  image EncoderOutput); pass None for a modality to skip it (retrieval
  galleries). ``init`` needs both.
  """

  speech: SpeechEncoder
  image: ImageEncoder

  def __call__(
      self,
      log_mel: jax.Array | None,
      audio_mask: jax.Array | None,
      images: jax.Array | None,
      *,
      train: bool = False,
  ) -> tuple[EncoderOutput | None, EncoderOutput | None]:
    s = (
        None
        if log_mel is None
        else self.speech(log_mel, audio_mask, train=train)
    )
    i = None if images is None else self.image(images, train=train)
    return s, i
