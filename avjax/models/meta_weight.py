"""Meta-Weight-Net: an MLP mapping a sample's loss to its training weight.

Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping For Sample
Weighting", NeurIPS 2019 (the reweighting MAMA builds on). The original net
is ``Linear(1, 100) → ReLU → Linear(100, 1) → sigmoid``; here the hidden
widths, the hidden activation and the output activation are attributes (set
from ``config.meta.net``), with the original as the default.

The input is the per-sample loss under ``stop_gradient``: the weight net is
trained only through the bilevel meta-gradient (``avjax.train.bilevel``), and
the model is never trained to change its own losses to move its weights.

Input scaling: the net sees ℓ / ``input_scale``. A loss of a few nats fed in
as is gives hidden activations of a few units, so that the output logit,
a sum over 100 of them, moves by ~lr · Σ|hⱼ| per Adam step of the weight net
and the sigmoid saturates within a few hundred steps, after which its
gradient vanishes and nothing moves it back. Dividing by a typical loss scale
(MAMA: ln B, the InfoNCE loss of a chance-level model with B pairs per
batch; a classifier: ln C for C classes) keeps inputs of order 0–1.

Initialisation: hidden layers as the reference implementation (PyTorch's
``nn.Linear`` default: kernel and bias uniform in ±1/√fan_in, so the ReLU
kinks fall across the input range), and a **zero output layer** (kernel and
bias), so that at initialisation every weight is exactly sigmoid(0) = 0.5
(``tanh01``: 0.5) for every input and every seed: the map starts neutral,
and training with it is plain training (normalised weights) or plain
training at half the learning rate (unnormalised). The reference's own
output layer (uniform ±0.1) starts from maps that already differ by seed
(about 0.5 ± 0.2 for losses of a few nats). The zero output layer is still
trainable from the first step: its gradient is the hidden activations,
which are not zero; the hidden layers receive gradient from the second step.
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
# Every output activation maps the real line into (0, 1), and 0 to 0.5.
OUTPUT_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh01": lambda x: 0.5 * (jnp.tanh(x) + 1.0),
}


def _torch_uniform(fan_in: int):
  """PyTorch ``nn.Linear``'s default init of kernel and bias: U(±1/√fan_in)."""
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class MetaWeightNet(nn.Module):
  """Per-sample loss [B] → weight [B] in (0, 1); exactly 0.5 at init.

  Attributes:
    hidden_dims: widths of the hidden layers (Meta-Weight-Net: (100,)).
    activation: hidden activation, one of ``HIDDEN_ACTIVATIONS``.
    output_activation: one of ``OUTPUT_ACTIVATIONS`` (default "sigmoid").
    input_scale: the net sees loss / input_scale (> 0; see the module
      docstring), in the units of the loss (nats for cross-entropies).
  """

  hidden_dims: Sequence[int] = (100,)
  activation: str = "relu"
  output_activation: str = "sigmoid"
  input_scale: float = 1.0

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
    if not float(self.input_scale) > 0:
      raise ValueError(
          f"config.meta.net.input_scale={self.input_scale} must be > 0"
      )
    if losses.ndim != 1:
      raise ValueError(
          f"MetaWeightNet takes per-sample losses [B]; got shape "
          f"{losses.shape}"
      )
    x = jax.lax.stop_gradient(losses)[:, None] / jnp.asarray(
        self.input_scale, losses.dtype
    )
    act = HIDDEN_ACTIVATIONS[self.activation]
    fan_in = 1
    for i, width in enumerate(self.hidden_dims):
      dense = nn.Dense(
          int(width),
          name=f"hidden_{i}",
          param_dtype=losses.dtype,
          kernel_init=_torch_uniform(fan_in),
          bias_init=_torch_uniform(fan_in),
      )
      x = act(dense(x))
      fan_in = int(width)
    x = nn.Dense(
        1,
        name="out",
        param_dtype=losses.dtype,
        kernel_init=nn.initializers.zeros,
        bias_init=nn.initializers.zeros,
    )(x)[:, 0]
    return OUTPUT_ACTIVATIONS[self.output_activation](x)
