"""The CMD cross-attention denoiser: shapes, masks, identity init, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax.models import corruption
from avjax.models import denoiser


def _inputs(seed=0, b=4, q=9, k=6, d=8):
  keys = jax.random.split(jax.random.PRNGKey(seed), 2)
  noisy = jax.random.normal(keys[0], (b, q, d))
  context = jax.random.normal(keys[1], (b, k, d + 4))
  qmask = np.arange(q)[None] < np.array([9, 5, 2, 9][:b])[:, None]
  cmask = np.arange(k)[None] < np.array([6, 6, 3, 1][:b])[:, None]
  return noisy, context, qmask, cmask


def test_shapes_masks_and_identity_at_init():
  noisy, context, qmask, cmask = _inputs()
  head = denoiser.CrossModalDenoiser(width=16, num_layers=3, num_heads=4)
  params = jax.jit(head.init)(
      jax.random.PRNGKey(1), noisy, context, qmask, cmask
  )
  recon, maps = jax.jit(head.apply)(params, noisy, context, qmask, cmask)
  assert recon.shape == noisy.shape
  assert maps.shape == (3, 4, 4, 9, 6)
  maps = np.asarray(maps)
  np.testing.assert_array_equal(maps * ~cmask[None, :, None, None, :], 0.0)
  rows = np.broadcast_to(qmask[None, :, None, :], maps.shape[:-1])
  np.testing.assert_allclose(maps.sum(-1), rows.astype(float), rtol=1e-5)
  # Zero-initialised residual output: the head starts as the identity.
  np.testing.assert_allclose(
      np.asarray(recon)[qmask], np.asarray(noisy)[qmask], atol=1e-6
  )
  np.testing.assert_array_equal(np.asarray(recon)[~qmask], 0.0)


def test_padding_contents_never_read():
  noisy, context, qmask, cmask = _inputs()
  head = denoiser.CrossModalDenoiser(
      width=16,
      num_layers=2,
      num_heads=4,
      residual_output=False,
      self_attention=True,
  )
  params = jax.jit(head.init)(
      jax.random.PRNGKey(1), noisy, context, qmask, cmask
  )
  recon, maps = jax.jit(head.apply)(params, noisy, context, qmask, cmask)
  recon_big, maps_big = jax.jit(head.apply)(
      params,
      jnp.where(qmask[..., None], noisy, 1e4),
      jnp.where(cmask[..., None], context, 1e4),
      qmask,
      cmask,
  )
  np.testing.assert_allclose(recon_big, recon, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(maps_big, maps, rtol=1e-5, atol=1e-6)


def test_denoiser_reduces_reconstruction_error_on_fixed_batch():
  """Clean frames are a function of the context; half are masked, all are
  noisy; training the head alone must cut the error well below the input's.
  """
  b, q, k, d = 8, 6, 6, 8
  rng = jax.random.split(jax.random.PRNGKey(0), 4)
  context = jax.random.normal(rng[0], (b, k, d))
  mix = jax.random.normal(rng[1], (d, d)) / np.sqrt(d)
  clean = jnp.tanh(context @ mix)  # frame t is a function of patch t
  mask = np.ones((b, q), bool)
  noisy = corruption.corrupt(
      rng[2], clean, mask, noise_std=0.5, mask_fraction=0.5
  ).features
  head = denoiser.CrossModalDenoiser(width=32, num_layers=2, num_heads=4)
  params = jax.jit(head.init)(rng[3], noisy, context, mask)

  def loss(p):
    recon, _ = jax.jit(head.apply)(p, noisy, context, mask)
    return jnp.mean((recon - clean) ** 2)

  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(p, o):
    value, g = jax.value_and_grad(loss)(p)
    u, o = tx.update(g, o)
    return optax.apply_updates(p, u), o, value

  first = float(loss(params))
  for _ in range(200):
    params, opt, _ = step(params, opt)
  last = float(loss(params))
  input_gap = float(jnp.mean((noisy - clean) ** 2))
  np.testing.assert_allclose(first, input_gap, rtol=1e-5)  # identity init
  assert last < 0.2 * first, (first, last)
