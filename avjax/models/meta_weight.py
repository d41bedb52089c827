"""Meta-Weight-Net: an MLP mapping a sample's loss to its training weight.

Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping For Sample
Weighting", NeurIPS 2019 (the reweighting MAMA builds on). The original net
is ``Linear(1, 100) → ReLU → Linear(100, 1) → sigmoid``; here the hidden
widths, the hidden activation and the output activation are attributes (set
from ``config.meta.net``), with the original as the default.

The input is the per-sample loss under ``stop_gradient``: the weight net is
trained only through the bilevel meta-gradient (``avjax.train.bilevel``), and
the model is never trained to change its own losses to move its weights.

Initialisation (a choice the paper leaves to PyTorch's defaults): flax's
LeCun-normal kernels and zero biases, so at the start every weight is close
to sigmoid(0) = 0.5 for losses of order one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

HIDDEN_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
}
# Every output activation maps the real line into (0, 1).
OUTPUT_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh01": lambda x: 0.5 * (jnp.tanh(x) + 1.0),
}


class MetaWeightNet(nn.Module):
  """Per-sample loss [B] → weight [B] in (0, 1).

  Attributes:
    hidden_dims: widths of the hidden layers (Meta-Weight-Net: (100,)).
    activation: hidden activation, one of ``HIDDEN_ACTIVATIONS``.
    output_activation: one of ``OUTPUT_ACTIVATIONS`` (default "sigmoid").
  """

  hidden_dims: Sequence[int] = (100,)
  activation: str = "relu"
  output_activation: str = "sigmoid"

  @nn.compact
  def __call__(self, losses: jax.Array) -> jax.Array:
    """Weights of the samples whose losses are ``losses``.

    Args:
      losses: float [B] per-sample losses (the gradient is stopped here).

    Returns:
      float [B] weights in (0, 1), same dtype as ``losses``.
    """
    if self.activation not in HIDDEN_ACTIVATIONS:
      raise ValueError(
          f"config.meta.net.activation={self.activation!r} is not "
          f"one of {sorted(HIDDEN_ACTIVATIONS)}"
      )
    if self.output_activation not in OUTPUT_ACTIVATIONS:
      raise ValueError(
          f"config.meta.net.output_activation={self.output_activation!r} is "
          f"not one of {sorted(OUTPUT_ACTIVATIONS)}"
      )
    if losses.ndim != 1:
      raise ValueError(
          f"MetaWeightNet takes per-sample losses [B]; got shape "
          f"{losses.shape}"
      )
    x = jax.lax.stop_gradient(losses)[:, None]
    act = HIDDEN_ACTIVATIONS[self.activation]
    for i, width in enumerate(self.hidden_dims):
      x = act(
          nn.Dense(int(width), name=f"hidden_{i}", param_dtype=losses.dtype)(x)
      )
    x = nn.Dense(1, name="out", param_dtype=losses.dtype)(x)[:, 0]
    return OUTPUT_ACTIVATIONS[self.output_activation](x)
