"""The compute dtype of the encoders and heads (``config.compute_dtype``).

Every model module takes a ``dtype`` attribute, Flax's convention: its
matrix products, convolutions and activations run in ``dtype`` while its
parameters stay float32 (``param_dtype``), so the optimiser updates float32
weights. What stays float32 whatever ``dtype`` is:

* normalisation statistics (Flax's LayerNorm / GroupNorm compute mean and
  variance in at least float32, then return ``dtype``);
* attention softmaxes (logits are cast to float32 first);
* pooled means over tokens, frames or pixels;
* every module's outputs (embeddings, logits, token features), so losses,
  similarity matrices and evaluation see float32.

bfloat16 has float32's exponent range, so no loss scaling is needed.
"""

from __future__ import annotations

import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> jnp.dtype:
  """``config.compute_dtype`` ("float32" or "bfloat16") → a jnp dtype."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(
        f"config.compute_dtype={name!r} is not one of {list(COMPUTE_DTYPES)}"
    )
  return jnp.dtype(COMPUTE_DTYPES[name])


def config_dtype(config) -> jnp.dtype:
  """The compute dtype of a method's config (float32 when the field is
  absent, e.g. in configs saved before it existed)."""
  return compute_dtype(str(config.get("compute_dtype", "float32")))
