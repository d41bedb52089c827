"""Pre-LN transformer pieces: masked attention never reads padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import transformer


def _mask(lengths, length):
  return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


def _normal(seed, shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_attention_weights_zero_on_padding_and_normalised():
  q, k = _normal(0, (3, 5, 16)), _normal(1, (3, 7, 16))
  mask = _mask([7, 4, 1], 7)
  mha = transformer.MultiHeadAttention(num_heads=4)
  params = jax.jit(mha.init)(jax.random.PRNGKey(2), q, k, mask)
  out, w = jax.jit(mha.apply)(params, q, k, mask)
  assert out.shape == (3, 5, 16) and w.shape == (3, 4, 5, 7)
  w = np.asarray(w)
  np.testing.assert_array_equal(w * ~mask[:, None, None, :], 0.0)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_attention_ignores_padded_key_values():
  q, k = _normal(0, (2, 4, 8)), _normal(1, (2, 6, 8))
  mask = _mask([6, 3], 6)
  mha = transformer.MultiHeadAttention(num_heads=2)
  params = jax.jit(mha.init)(jax.random.PRNGKey(2), q, k, mask)
  out, _ = jax.jit(mha.apply)(params, q, k, mask)
  big = jnp.where(mask[..., None], k, 1e4)
  out_big, _ = jax.jit(mha.apply)(params, q, big, mask)
  np.testing.assert_allclose(out, out_big, rtol=1e-5, atol=1e-6)


def test_fully_masked_row_gives_zero_not_nan():
  q, k = _normal(0, (2, 3, 8)), _normal(1, (2, 4, 8))
  mask = _mask([4, 0], 4)
  mha = transformer.MultiHeadAttention(num_heads=2)
  params = jax.jit(mha.init)(jax.random.PRNGKey(2), q, k, mask)
  _, w = jax.jit(mha.apply)(params, q, k, mask)
  assert np.all(np.isfinite(w))
  np.testing.assert_array_equal(np.asarray(w)[1], 0.0)


def test_encoder_valid_outputs_independent_of_padding_contents():
  x = _normal(0, (3, 9, 16))
  mask = _mask([9, 5, 2], 9)
  enc = transformer.TransformerEncoder(num_layers=2, num_heads=4)
  params = jax.jit(enc.init)(jax.random.PRNGKey(1), x, mask)
  out = jax.jit(enc.apply)(params, x, mask)
  out_big = jax.jit(enc.apply)(params, jnp.where(mask[..., None], x, 1e4), mask)
  np.testing.assert_allclose(out, out_big, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(out)[~mask], 0.0)


def test_encoder_padded_row_equals_unpadded_sequence():
  x = _normal(0, (2, 8, 16))
  mask = _mask([8, 3], 8)
  enc = transformer.TransformerEncoder(num_layers=2, num_heads=4)
  params = jax.jit(enc.init)(jax.random.PRNGKey(1), x, mask)
  batched = jax.jit(enc.apply)(params, x, mask)
  alone = jax.jit(enc.apply)(params, x[1:, :3], None)
  np.testing.assert_allclose(batched[1, :3], alone[0], rtol=1e-5, atol=1e-5)


def test_cross_attention_block_ignores_padded_context():
  x, c = _normal(0, (2, 5, 16)), _normal(1, (2, 6, 12))
  qmask, cmask = _mask([5, 2], 5), _mask([6, 3], 6)
  for self_attention in (False, True):
    block = transformer.CrossAttentionBlock(
        num_heads=4, self_attention=self_attention
    )
    params = jax.jit(block.init)(jax.random.PRNGKey(2), x, c, qmask, cmask)
    out, w = jax.jit(block.apply)(params, x, c, qmask, cmask)
    assert out.shape == x.shape and w.shape == (2, 4, 5, 6)
    out_big, _ = jax.jit(block.apply)(
        params,
        jnp.where(qmask[..., None], x, 1e4),
        jnp.where(cmask[..., None], c, 1e4),
        qmask,
        cmask,
    )
    np.testing.assert_allclose(out, out_big, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out)[~qmask], 0.0)


def test_masked_mean_and_positions():
  x = jnp.arange(12.0).reshape(1, 4, 3)
  np.testing.assert_allclose(
      transformer.masked_mean(x, _mask([2], 4)), [[1.5, 2.5, 3.5]]
  )
  np.testing.assert_array_equal(
      transformer.masked_mean(x, _mask([0], 4)), [[0.0, 0.0, 0.0]]
  )
  pos = transformer.sinusoidal_positions(10, 8)
  assert pos.shape == (10, 8)
  np.testing.assert_allclose(pos[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
  with pytest.raises(ValueError, match="even dim"):
    transformer.sinusoidal_positions(10, 7)


def test_bad_shapes_raise():
  x = _normal(0, (2, 5, 8))
  enc = transformer.TransformerEncoder(num_layers=1, num_heads=2)
  with pytest.raises(ValueError, match="mask has shape"):
    enc.init(jax.random.PRNGKey(0), x, np.ones((2, 4), bool))
  with pytest.raises(ValueError, match="divisible by num_heads"):
    transformer.MultiHeadAttention(num_heads=3).init(
        jax.random.PRNGKey(0), x, x
    )
