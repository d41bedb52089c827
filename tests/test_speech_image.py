"""Speech and image encoders: shapes, frame masks, padding invariance."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import speech_image


def _speech(**kw):
  kw = {
      "conv_features": (16, 16),
      "conv_strides": (2, 2),
      "width": 16,
      "num_layers": 2,
      "num_heads": 2,
      "embed_dim": 8,
      "pooling": "mean_max",
      **kw,
  }
  return speech_image.SpeechEncoder(**kw)


def _batch(lengths, frames=37, mels=10, seed=0):
  x = jax.random.normal(jax.random.PRNGKey(seed), (len(lengths), frames, mels))
  mask = np.arange(frames)[None, :] < np.asarray(lengths)[:, None]
  return x, mask


@pytest.fixture(scope="module")
def speech():
  """(jitted apply, params) of one small speech encoder shared by tests;
  parameter shapes do not depend on batch or length."""
  enc = _speech()
  x, mask = _batch([37, 20])
  return jax.jit(enc.apply), jax.jit(enc.init)(jax.random.PRNGKey(1), x, mask)


def test_speech_shapes_and_subsampled_mask(speech):
  apply, params = speech
  x, mask = _batch([37, 20, 5, 1])
  out = apply(params, x, mask)
  assert out.features.shape == (4, 10, 16)  # ceil(ceil(37/2)/2)
  assert out.embedding.shape == (4, 8)
  # ceil(L / 4) valid frames, as a prefix.
  np.testing.assert_array_equal(out.mask.sum(1), [10, 5, 2, 1])
  np.testing.assert_array_equal(
      out.mask, np.arange(10)[None] < np.array([10, 5, 2, 1])[:, None]
  )
  np.testing.assert_array_equal(np.asarray(out.features)[~out.mask], 0.0)


def test_padding_filled_with_large_values_changes_nothing_valid(speech):
  apply, params = speech
  x, mask = _batch([37, 23, 9, 4])
  out = apply(params, x, mask)
  out_big = apply(params, jnp.where(mask[..., None], x, 1e4), mask)
  valid = np.asarray(out.mask)
  np.testing.assert_allclose(
      np.asarray(out_big.features)[valid],
      np.asarray(out.features)[valid],
      rtol=1e-5,
      atol=1e-5,
  )
  np.testing.assert_allclose(
      out_big.embedding, out.embedding, rtol=1e-5, atol=1e-5
  )


def test_padded_utterance_equals_unpadded_utterance(speech):
  apply, params = speech
  x, mask = _batch([37, 13])
  batched = apply(params, x, mask)
  alone = apply(params, x[1:, :13], None)
  n = int(alone.mask.sum())
  assert n == int(batched.mask[1].sum()) == 4
  np.testing.assert_allclose(
      batched.features[1, :n], alone.features[0], rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
      batched.embedding[1], alone.embedding[0], rtol=1e-5, atol=1e-5
  )


def test_image_encoder_shapes_and_jit_grad():
  images = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 32, 1))
  enc = speech_image.ImageEncoder(
      patch_size=8, width=16, num_layers=1, num_heads=2, embed_dim=8
  )
  params = jax.jit(enc.init)(jax.random.PRNGKey(1), images)
  out = jax.jit(enc.apply)(params, images)
  assert out.features.shape == (3, 16, 16)
  assert out.embedding.shape == (3, 8)
  assert bool(jnp.all(out.mask))
  grads = jax.jit(
      jax.grad(lambda p: jnp.sum(enc.apply(p, images).embedding ** 2))
  )(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_hybrid_image_encoder_with_conv_stem():
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 1))
  enc = speech_image.ImageEncoder(
      patch_size=1,
      stem_features=(8, 8, 16),
      width=16,
      num_layers=1,
      num_heads=2,
      embed_dim=8,
      pooling="max",
  )
  params = jax.jit(enc.init)(jax.random.PRNGKey(1), images)
  out = jax.jit(enc.apply)(params, images)
  assert out.features.shape == (2, 16, 16)  # 32 / 2**3 = 4 → 4x4 tokens
  assert out.embedding.shape == (2, 8)


def _conv_image_encoder(stem_downsample="max_pool"):
  return speech_image.ImageEncoder(
      patch_size=1,
      stem_features=(4, 8, 8),
      stem_downsample=stem_downsample,
      stem_norm=False,
      width=8,
      num_layers=0,
      embed_dim=6,
      pooling="max",
  )


@pytest.mark.parametrize("stem_downsample", ["max_pool", "stride"])
def test_convolutional_image_encoder_is_translation_invariant(stem_downsample):
  """num_layers=0: the embedding max-pools the stem's tokens before any
  position embedding, so a blob moved by the stem's total stride (8 px)
  on a blank canvas keeps its embedding exactly, while the tokens the CMD
  head attends to (with their positions) change."""
  canvas = np.zeros((2, 48, 48, 1), np.float32)
  blob = jax.random.uniform(jax.random.PRNGKey(0), (10, 10))
  canvas[0, 12:22, 12:22, 0] = blob
  canvas[1, 20:30, 28:38, 0] = blob  # shifted by (8, 16) pixels
  enc = _conv_image_encoder(stem_downsample)
  params = enc.init(jax.random.PRNGKey(1), canvas)
  out = jax.jit(enc.apply)(params, canvas)
  assert out.features.shape == (2, 36, 8)  # 48 / 2**3 = 6 → 6x6 tokens
  np.testing.assert_allclose(
      out.embedding[0], out.embedding[1], rtol=1e-5, atol=1e-6
  )
  assert not np.allclose(
      np.sort(out.features[0], axis=0), np.sort(out.features[1], axis=0)
  )
  transformer = enc.clone(num_layers=1, num_heads=2)
  params = transformer.init(jax.random.PRNGKey(1), canvas)
  out = transformer.apply(params, canvas)
  assert not np.allclose(out.embedding[0], out.embedding[1], atol=1e-4)


def test_max_pool_stem_pools_after_each_convolution():
  images = jax.random.uniform(jax.random.PRNGKey(0), (1, 16, 16, 1))
  enc = speech_image.ImageEncoder(
      patch_size=1,
      stem_features=(3,),
      stem_downsample="max_pool",
      stem_norm=False,
      width=4,
      num_layers=0,
      embed_dim=2,
  )
  params = enc.init(jax.random.PRNGKey(1), images)
  conv = params["params"]["stem_conv_0"]
  # Independent reference: 3x3 "same" convolution, GELU, 2x2 max pool.
  padded = np.pad(np.asarray(images[0, :, :, 0]), 1)
  kernel = np.asarray(conv["kernel"])[:, :, 0, :]
  fmap = np.stack(
      [
          [
              (padded[r : r + 3, c : c + 3, None] * kernel).sum((0, 1))
              for c in range(16)
          ]
          for r in range(16)
      ]
  ) + np.asarray(conv["bias"])
  fmap = np.asarray(jax.nn.gelu(fmap))
  pooled = fmap.reshape(8, 2, 8, 2, 3).max((1, 3))
  patch = params["params"]["patch_embed"]
  tokens = pooled.reshape(64, 3) @ np.asarray(patch["kernel"])[0, 0]
  tokens += np.asarray(patch["bias"])
  out = enc.apply(params, images)
  pos = np.asarray(params["params"]["position_embedding"])
  np.testing.assert_allclose(out.features[0], tokens + pos, atol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
def test_max_pool_2x2_matches_flax_max_pool(size):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, *size, 3))
  want = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
  np.testing.assert_array_equal(speech_image.max_pool_2x2(x), want)
  # Without ties the gradient reaches exactly each window's maximum.
  grad = jax.grad(lambda x: jnp.sum(speech_image.max_pool_2x2(x)))(x)
  want_grad = jax.grad(
      lambda x: jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME"))
  )(x)
  np.testing.assert_array_equal(grad, want_grad)


def test_two_encoders_skip_a_modality():
  x, mask = _batch([37, 10])
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3))
  model = speech_image.SpeechImageEncoders(
      _speech(num_layers=1),
      speech_image.ImageEncoder(
          patch_size=4, width=16, num_layers=1, num_heads=2, embed_dim=8
      ),
  )
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x, mask, images)
  assert set(params["params"]) == {"speech", "image"}
  s, i = jax.jit(model.apply)(params, x, mask, None)
  assert i is None and s.embedding.shape == (2, 8)
  s2, i2 = jax.jit(model.apply)(params, None, None, images)
  assert s2 is None and i2.features.shape == (2, 16, 16)


def test_bad_inputs_raise():
  x, mask = _batch([37, 10])
  enc = _speech()
  with pytest.raises(ValueError, match="audio_mask has shape"):
    enc.init(jax.random.PRNGKey(0), x, mask[:, :30])
  with pytest.raises(ValueError, match=r"log-mel \[B, T, n_mels\]"):
    enc.init(jax.random.PRNGKey(0), x[0])
  with pytest.raises(ValueError, match="conv_kernel must be odd"):
    _speech(conv_kernel=4).init(jax.random.PRNGKey(0), x, mask)
  with pytest.raises(ValueError, match="stem_downsample must be"):
    speech_image.ImageEncoder(stem_features=(4,), stem_downsample="avg").init(
        jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1))
    )
  with pytest.raises(ValueError, match="not divisible by patch_size"):
    speech_image.ImageEncoder(patch_size=8).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 20, 20, 1))
    )


def test_utterance_normalize_uses_valid_frames_only():
  x, mask = _batch([37, 12])
  out = np.asarray(speech_image.utterance_normalize(x, mask))
  big = np.asarray(
      speech_image.utterance_normalize(jnp.where(mask[..., None], x, 1e4), mask)
  )
  np.testing.assert_allclose(big, out, rtol=1e-5, atol=1e-5)
  valid = out[1, :12]
  np.testing.assert_allclose(valid.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(valid.std(0), 1.0, rtol=1e-3)
  np.testing.assert_array_equal(out[1, 12:], 0.0)


def test_spec_augment_masks_within_valid_frames():
  x, mask = _batch([37, 12], frames=40, mels=20)
  x = jnp.where(mask[..., None], x, 1e4)
  out = np.asarray(
      speech_image.spec_augment(
          jax.random.PRNGKey(0),
          x,
          mask,
          num_time_masks=2,
          max_time_width=5,
          num_freq_masks=1,
          max_freq_width=4,
      )
  )
  np.testing.assert_array_equal(out[~mask], 1e4)  # padding untouched
  changed = np.any(out != np.asarray(x), axis=-1)
  assert not np.any(changed & ~mask)
  # At most 2 time masks of <= 5 frames, plus frames touched by the
  # frequency mask (all valid frames when its width is > 0).
  outs = [
      np.asarray(
          speech_image.spec_augment(jax.random.PRNGKey(k), x, mask, 1, 5, 0, 0)
      )
      for k in range(20)
  ]
  for o in outs:
    rows = np.any(o != np.asarray(x), axis=-1)
    assert rows.sum(axis=1).max() <= 5
    assert not np.any(rows & ~mask)


def test_random_shift_translates_with_zero_fill():
  img = np.zeros((3, 8, 8, 1), np.float32)
  img[:, 3, 4, 0] = 1.0
  out = np.asarray(speech_image.random_shift(jax.random.PRNGKey(0), img, 2))
  for k in range(3):
    ys, xs = np.nonzero(out[k, ..., 0])
    assert len(ys) == 1 and abs(ys[0] - 3) <= 2 and abs(xs[0] - 4) <= 2
  np.testing.assert_array_equal(
      speech_image.random_shift(jax.random.PRNGKey(0), img, 0), img
  )


def test_pooling_kinds_ignore_padding():
  x = jnp.array([[[1.0, -2.0], [3.0, 0.0], [1e4, 1e4]]])
  mask = np.array([[True, True, False]])
  np.testing.assert_allclose(speech_image.pool(x, mask, "mean"), [[2.0, -1.0]])
  np.testing.assert_allclose(speech_image.pool(x, mask, "max"), [[3.0, 0.0]])
  np.testing.assert_allclose(
      speech_image.pool(x, mask, "mean_max"), [[2.0, -1.0, 3.0, 0.0]]
  )
  np.testing.assert_array_equal(
      speech_image.pool(x, np.zeros((1, 3), bool), "max"), [[0.0, 0.0]]
  )
  with pytest.raises(ValueError, match="pooling='sum'"):
    speech_image.pool(x, mask, "sum")
