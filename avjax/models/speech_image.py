"""Speech and image encoders for spoken-caption ↔ image retrieval (CMD).

Both encoders return an :class:`EncoderOutput`: token features (speech
frames or image patches) for the cross-modal denoiser, their validity mask,
and one global embedding per example for retrieval.

Speech: log-mel frames [B, T, n_mels] → 1-D convolutions over time (the
strided ones subsample time) → linear map to the model width + sinusoidal
positions → pre-LN transformer with a key padding mask → frame features
[B, T', D]. The global embedding is the masked mean of the frames, projected
to ``embed_dim``.

Image: ViT-style: non-overlapping ``patch_size`` patches → linear patch
embedding + learned position embeddings → pre-LN transformer → patch
features [B, P, D]; the global embedding is the mean of the patches,
projected.

Decisions the paper (which uses pretrained HuBERT-like and CLIP-like
encoders) leaves to us:
  * Padding never influences a valid frame. Padded input frames are zeroed
    before every convolution and each conv uses a fixed symmetric "SAME"
    padding of ``kernel // 2`` (not Flax's length-dependent "SAME"), so the
    features of an utterance do not depend on how much padding follows it.
    The frame mask is subsampled with the conv strides (frame ``j`` is valid
    iff input frame ``j * stride`` is): an utterance of L frames keeps
    ceil(L / stride) frames, exactly what a lone unpadded utterance gives.
  * Normalisation is LayerNorm only (no statistics across time or batch),
    for the same reason.
  * Speech positions are fixed sinusoids (utterance length is open-ended);
    image positions are learned (the patch grid is fixed).
  * Global embeddings are mean-pooled (no CLS token) and not L2-normalised
    here; the contrastive loss and cosine retrieval normalise them.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

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


class SpeechEncoder(nn.Module):
  """Log-mel frames → frame features, frame mask and a global embedding.

  Attributes:
    conv_features: channels of the 1-D conv front-end layers.
    conv_strides: time stride of each conv layer (same length).
    conv_kernel: odd kernel size (in frames) of the conv layers.
    width: transformer width D.
    num_layers / num_heads / mlp_ratio / dropout: transformer settings.
    embed_dim: width E of the global embedding.
  """

  conv_features: Sequence[int] = (64, 64)
  conv_strides: Sequence[int] = (2, 2)
  conv_kernel: int = 3
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  dropout: float = 0.0
  embed_dim: int = 64

  @nn.compact
  def __call__(self, log_mel: jax.Array, mask: jax.Array | None = None, *,
               train: bool = False) -> EncoderOutput:
    """Encodes log-mel [B, T, n_mels] with frame mask bool [B, T]."""
    if log_mel.ndim != 3:
      raise ValueError("SpeechEncoder expects log-mel [B, T, n_mels], got "
                       f"shape {log_mel.shape}")
    if len(self.conv_features) != len(self.conv_strides):
      raise ValueError(f"conv_features {tuple(self.conv_features)} and "
                       f"conv_strides {tuple(self.conv_strides)} differ in "
                       "length")
    if self.conv_kernel % 2 != 1:
      raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
    batch, frames = log_mel.shape[:2]
    if mask is None:
      mask = jnp.ones((batch, frames), bool)
    elif mask.shape != (batch, frames):
      raise ValueError(f"audio_mask has shape {mask.shape}, expected "
                       f"({batch}, {frames}) to match log-mel "
                       f"{log_mel.shape}")
    mask = mask.astype(bool)
    x = log_mel.astype(jnp.float32)
    half = self.conv_kernel // 2
    for i, (f, s) in enumerate(zip(self.conv_features, self.conv_strides)):
      x = jnp.where(mask[..., None], x, 0.0)
      x = nn.Conv(f, (self.conv_kernel,), strides=(s,),
                  padding=((half, half),), name=f"conv_{i}")(x)
      mask = mask[:, ::s]
      x = nn.gelu(nn.LayerNorm(name=f"conv_norm_{i}")(x))
    x = nn.Dense(self.width, name="input_proj")(x)
    x = x + transformer.sinusoidal_positions(x.shape[1], self.width)[None]
    x = transformer.TransformerEncoder(
        self.num_layers, self.num_heads, self.mlp_ratio, self.dropout,
        name="transformer")(x, mask, train=train)
    pooled = transformer.masked_mean(x, mask)
    embedding = nn.Dense(self.embed_dim, name="projection")(pooled)
    return EncoderOutput(x, mask, embedding)


class ImageEncoder(nn.Module):
  """Images [B, H, W, C] → patch features, all-True mask, global embedding.

  Attributes:
    patch_size: side of the square non-overlapping patches; must divide H, W.
    width: transformer width D.
    num_layers / num_heads / mlp_ratio / dropout: transformer settings.
    embed_dim: width E of the global embedding.
  """

  patch_size: int = 8
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  dropout: float = 0.0
  embed_dim: int = 64

  @nn.compact
  def __call__(self, images: jax.Array, *,
               train: bool = False) -> EncoderOutput:
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim != 4:
      raise ValueError("ImageEncoder expects images [B, H, W, C], got shape "
                       f"{images.shape}")
    _, height, width, _ = images.shape
    p = self.patch_size
    if height % p or width % p:
      raise ValueError(f"image size {height}x{width} is not divisible by "
                       f"patch_size={p}")
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID",
                name="patch_embed")(images.astype(jnp.float32))
    x = x.reshape(x.shape[0], -1, self.width)
    pos = self.param("position_embedding", nn.initializers.normal(0.02),
                     (x.shape[1], self.width))
    x = x + pos[None]
    mask = jnp.ones(x.shape[:2], bool)
    x = transformer.TransformerEncoder(
        self.num_layers, self.num_heads, self.mlp_ratio, self.dropout,
        name="transformer")(x, mask, train=train)
    embedding = nn.Dense(self.embed_dim, name="projection")(
        jnp.mean(x, axis=1))
    return EncoderOutput(x, mask, embedding)


class SpeechImageEncoders(nn.Module):
  """The two CMD encoders under one parameter tree {'speech', 'image'}.

  ``__call__(log_mel, audio_mask, images)`` returns (speech EncoderOutput,
  image EncoderOutput); pass None for a modality to skip it (retrieval
  galleries). ``init`` needs both.
  """

  speech: SpeechEncoder
  image: ImageEncoder

  def __call__(self, log_mel: jax.Array | None,
               audio_mask: jax.Array | None, images: jax.Array | None, *,
               train: bool = False
               ) -> tuple[EncoderOutput | None, EncoderOutput | None]:
    s = None if log_mel is None else self.speech(log_mel, audio_mask,
                                                 train=train)
    i = None if images is None else self.image(images, train=train)
    return s, i
