"""Corruptions of token features for cross-modal denoising (pure jnp).

All functions take features x [B, T, D] and a validity mask bool [B, T]
(True = real frame, False = padding), never touch padded positions, and are
jit/vmap/grad-safe (fractions and noise scales are static Python floats;
the selection is data-dependent but shape-static).

Exact fractions. A corruption of fraction f hits exactly
``k_b = floor(f * n_b + 0.5)`` frames of row b (n_b = its number of valid
frames; round half up): every valid frame gets a uniform random score,
padding gets +inf, and a frame is chosen when its rank among the row's
scores is below k_b — a uniformly random k_b-subset of the valid frames.

Masking and swapping share one ranking, so with both the chosen sets are
disjoint (masked: ranks [0, k_mask); swapped: ranks [k_mask, k_mask +
k_swap)) and each hits its own exact count; this needs
``mask_fraction + swap_fraction <= 1``. (Only when the two rounded counts
together exceed a row's valid frames, e.g. 0.5 + 0.5 of 3 frames, does the
swap get the remainder, n_b - k_mask.)

Swapping (the noise one summary of the paper describes): each chosen frame
of row b is replaced by a uniformly random valid frame of another row
b' != b (a fresh b' per frame). It needs a batch of at least 2.

Gaussian noise has an absolute standard deviation (features come out of a
LayerNorm, so dims are roughly unit-scale) and is added to every valid
frame.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Corruption(NamedTuple):
  """Result of :func:`corrupt`.

  Attributes:
    features: float [B, T, D], the corrupted features (padding untouched).
    masked: bool [B, T], frames replaced by the fill value.
    swapped: bool [B, T], frames replaced by other rows' frames.
  """

  features: jax.Array
  masked: jax.Array
  swapped: jax.Array


def _check_fraction(value: float, name: str) -> float:
  value = float(value)
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"{name}={value} must be in [0, 1]")
  return value


def num_selected(mask: jax.Array, fraction: float) -> jax.Array:
  """int32 [B]: frames a corruption of ``fraction`` hits in each row."""
  n = jnp.sum(mask, axis=1).astype(jnp.float32)
  return jnp.floor(fraction * n + 0.5).astype(jnp.int32)


def random_ranks(rng: jax.Array, mask: jax.Array) -> jax.Array:
  """int32 [B, T]: a uniformly random order of each row's valid frames.

  Valid frames get ranks 0..n_b-1 in random order; padding ranks after them.
  """
  scores = jax.random.uniform(rng, mask.shape)
  scores = jnp.where(mask, scores, jnp.inf)
  order = jnp.argsort(scores, axis=1)
  return jnp.argsort(order, axis=1).astype(jnp.int32)


def select_fraction(
    rng: jax.Array, mask: jax.Array, fraction: float
) -> jax.Array:
  """bool [B, T]: exactly ``num_selected(mask, fraction)`` random valid
  frames per row."""
  fraction = _check_fraction(fraction, "fraction")
  k = num_selected(mask, fraction)
  return (random_ranks(rng, mask) < k[:, None]) & mask


def add_gaussian_noise(
    rng: jax.Array, x: jax.Array, mask: jax.Array, std: float
) -> jax.Array:
  """x + std·N(0, 1) on valid frames; padding unchanged."""
  if std < 0:
    raise ValueError(f"noise std={std} must be >= 0")
  noise = std * jax.random.normal(rng, x.shape, x.dtype)
  return jnp.where(mask[..., None], x + noise, x)


def mask_frames(
    x: jax.Array, selected: jax.Array, fill: jax.Array | float = 0.0
) -> jax.Array:
  """Replaces the selected frames [B, T] by ``fill`` (scalar or [D])."""
  fill = jnp.broadcast_to(jnp.asarray(fill, x.dtype), x.shape[-1:])
  return jnp.where(selected[..., None], fill, x)


def swap_frames(
    rng: jax.Array, x: jax.Array, mask: jax.Array, selected: jax.Array
) -> jax.Array:
  """Replaces each selected frame with a random valid frame of another row.

  Args:
    rng: PRNG key.
    x: [B, T, D] features, B >= 2.
    mask: bool [B, T] validity (donor frames are drawn from valid frames).
    selected: bool [B, T] frames to replace.

  Returns:
    [B, T, D]; unselected frames unchanged.
  """
  batch, length = mask.shape
  if batch < 2:
    raise ValueError(
        f"swapping frames between samples needs a batch of at "
        f"least 2, got features of shape {x.shape}"
    )
  k_row, k_frame = jax.random.split(rng)
  shift = jax.random.randint(k_row, (batch, length), 1, batch)
  donor = (jnp.arange(batch)[:, None] + shift) % batch  # != own row
  # Valid frame indices of each row first (stable), then the padding.
  valid_first = jnp.argsort(~mask, axis=1, stable=True)
  n_valid = jnp.maximum(jnp.sum(mask, axis=1), 1)
  u = jax.random.uniform(k_frame, (batch, length))
  j = jnp.minimum(
      jnp.floor(u * n_valid[donor]).astype(jnp.int32), n_valid[donor] - 1
  )
  frame = valid_first[donor, j]
  replacement = x[donor, frame]
  return jnp.where(selected[..., None], replacement, x)


def corrupt(
    rng: jax.Array,
    x: jax.Array,
    mask: jax.Array,
    *,
    noise_std: float = 0.0,
    mask_fraction: float = 0.0,
    swap_fraction: float = 0.0,
    fill: jax.Array | float = 0.0,
) -> Corruption:
  """Swaps, masks, then adds Gaussian noise (see the module docstring).

  Args:
    rng: PRNG key.
    x: [B, T, D] clean features.
    mask: bool [B, T] validity.
    noise_std: std of additive Gaussian noise on valid frames (0: none).
    mask_fraction: fraction of valid frames replaced by ``fill``.
    swap_fraction: fraction of valid frames replaced by other rows' frames.
    fill: mask value, scalar or [D] (e.g. a learned mask token).

  Returns:
    A :class:`Corruption`. With all three settings 0 the features are
    returned unchanged (bit-exact).
  """
  mask_fraction = _check_fraction(mask_fraction, "mask_fraction")
  swap_fraction = _check_fraction(swap_fraction, "swap_fraction")
  if mask_fraction + swap_fraction > 1.0 + 1e-9:
    raise ValueError(
        f"mask_fraction + swap_fraction = "
        f"{mask_fraction + swap_fraction} must be <= 1 (they "
        "select disjoint frames)"
    )
  if x.ndim != 3 or mask.shape != x.shape[:2]:
    raise ValueError(
        f"corrupt expects x [B, T, D] and mask [B, T], got "
        f"{x.shape} and {mask.shape}"
    )
  mask = mask.astype(bool)
  rng_rank, rng_swap, rng_noise = jax.random.split(rng, 3)
  ranks = random_ranks(rng_rank, mask)
  n_mask = num_selected(mask, mask_fraction)[:, None]
  n_swap = num_selected(mask, swap_fraction)[:, None]
  masked = (ranks < n_mask) & mask
  # Ranks >= n_b are padding, so `& mask` caps the rare overflow of two
  # rounded counts (e.g. 0.5 + 0.5 of 3 frames) at the row's valid frames.
  swapped = (ranks >= n_mask) & (ranks < n_mask + n_swap) & mask
  if swap_fraction > 0:
    x = swap_frames(rng_swap, x, mask, swapped)
  if mask_fraction > 0:
    x = mask_frames(x, masked, fill)
  if noise_std > 0:
    x = add_gaussian_noise(rng_noise, x, mask, noise_std)
  return Corruption(x, masked, swapped)
