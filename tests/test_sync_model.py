"""avjax.models.sync: segment cutting, extractors, sync transformer, log-mel."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.data.pipeline import features
from avjax.models import sync


@pytest.mark.parametrize(
    "total,length,stride",
    [(64, 16, 8), (64, 16, 16), (120, 16, 8), (20, 16, 8)],
)
def test_segments_cover_clip_with_length_and_stride(total, length, stride):
  x = jnp.arange(2 * total).reshape(2, total) * 10
  seg = np.asarray(sync.segment(x, length, stride))
  expected = []
  start = 0
  while start + length <= total:  # numpy loop reference
    expected.append(np.asarray(x)[:, start : start + length])
    start += stride
  np.testing.assert_array_equal(seg, np.stack(expected, axis=1))
  covered = np.zeros(total, bool)
  covered[np.unique(seg[0] // 10)] = True
  # Every step up to the last full window is covered; none is invented.
  last = (len(expected) - 1) * stride + length
  assert covered[:last].all() and not covered[last:].any()
  if (total - length) % stride == 0:
    assert covered.all()


def test_segment_errors():
  with pytest.raises(ValueError, match="shorter than one segment"):
    sync.segment(jnp.zeros((1, 10)), 16, 8)
  with pytest.raises(ValueError, match=">= 1"):
    sync.num_segments(64, 16, 0)


def test_log_mel_matches_numpy_features():
  rng = np.random.default_rng(0)
  wave = (rng.standard_normal((3, 8000)) * 0.1).astype(np.float32)
  mel = features.MelSpec(n_mels=40)
  want = features.log_mel(wave, n_mels=40)
  got = np.asarray(jax.jit(lambda w: sync.log_mel(w, mel))(wave))
  assert got.shape == want.shape == (3, 51, 40)
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_extractors_one_feature_per_segment_and_causality_of_cutting():
  v = sync.VisualSegmentEncoder(width=16, patch=8, patch_features=8)
  a = sync.AudioSegmentEncoder(width=16, patch=4)
  video = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 16, 16, 1))
  mel = jax.random.normal(jax.random.PRNGKey(1), (2, 128, 10))
  pv = v.init(jax.random.PRNGKey(2), video, 16, 8)
  pa = a.init(jax.random.PRNGKey(3), mel, 16, 8)
  fv = v.apply(pv, video, 16, 8)
  fa = a.apply(pa, mel, 16, 8)
  assert fv.shape == (2, 3, 16) and fa.shape == (2, 3, 16)
  # Changing frames 24..31 (only in segment 2) changes only segment 2.
  fv2 = v.apply(pv, video.at[:, 24:].set(0.0), 16, 8)
  np.testing.assert_allclose(fv2[:, :2], fv[:, :2], atol=1e-6)
  assert not np.allclose(fv2[:, 2], fv[:, 2])
  # Audio token k covers mel frames 4k..4k+3: frames 96.. sit in segment 2.
  fa2 = a.apply(pa, mel.at[:, 96:].set(0.0), 16, 8)
  assert not np.allclose(fa2[:, 2], fa[:, 2])


def test_sync_transformer_heads():
  model = sync.SyncTransformer(
      width=16, num_layers=1, num_heads=2, num_offsets=21, dropout=0.1
  )
  fv = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 8))
  fa = jax.random.normal(jax.random.PRNGKey(1), (3, 7, 12))
  params = model.init(jax.random.PRNGKey(2), fv, fa)
  out = model.apply(params, fv, fa)
  assert out["offset"].shape == (3, 21) and out["sync"].shape == (3, 2)
  assert params["params"]["positions"].shape == (16, 16)  # 1 + 7 + 1 + 7
  # Deterministic without dropout, stochastic with it.
  again = model.apply(params, fv, fa)
  np.testing.assert_array_equal(out["offset"], again["offset"])
  drop = model.apply(
      params, fv, fa, train=True, rngs={"dropout": jax.random.PRNGKey(3)}
  )
  assert not np.allclose(drop["offset"], out["offset"])
  # Swapping audio segments changes the prediction (order matters).
  swapped = model.apply(params, fv, fa[:, ::-1])
  assert not np.allclose(swapped["offset"], out["offset"])


def _added_positions(positions, visual, audio):
  """[B, N, W] the sync transformer adds to its token sequence: the input
  of its first dropout minus the sown tokens, with random parameters (not
  the small init) so that equalities are not trivial."""
  model = sync.SyncTransformer(width=16, num_heads=2, positions=positions)
  params = model.init(jax.random.PRNGKey(0), visual, audio)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = tree.unflatten(
      [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
  )
  _, state = model.apply(
      params,
      visual,
      audio,
      capture_intermediates=True,
      mutable=["intermediates"],
  )
  inter = state["intermediates"]
  return np.asarray(inter["Dropout_0"]["__call__"][0] - inter["tokens"][0])


@pytest.mark.parametrize("shape", [(7,), (3, 4)])
def test_shared_time_positions_pair_the_visual_and_audio_token_of_a_time(
    shape,
):
  visual = jax.random.normal(jax.random.PRNGKey(2), (2, *shape, 8))
  audio = jax.random.normal(jax.random.PRNGKey(3), (2, *shape, 6))
  layout = sync.sequence_layout(visual.shape, audio.shape)
  pos = _added_positions("shared_time", visual, audio)
  pv, pa = pos[:, layout["visual"]], pos[:, layout["audio"]]
  np.testing.assert_array_equal(pos[:, layout["offset"]], 0.0)
  np.testing.assert_array_equal(pos[:, layout["separator"]], 0.0)
  # Token i of both modalities: one time embedding, so their difference is
  # the same (modality) vector at every time ...
  diff = pv - pa
  np.testing.assert_allclose(
      diff, np.broadcast_to(diff[:, :1], diff.shape), atol=1e-5
  )
  # ... while different times have different embeddings.
  assert not np.allclose(pv[:, 0], pv[:, 1], atol=0.1)
  # The official layout: a position per place, no such pairing.
  pos = _added_positions("sequence", visual, audio)
  diff = pos[:, layout["visual"]] - pos[:, layout["audio"]]
  assert not np.allclose(diff[:, 0], diff[:, 1], atol=0.1)


def test_shared_time_positions_errors_name_the_config_key():
  visual = jnp.zeros((1, 7, 8))
  with pytest.raises(ValueError, match=r"positions='shared_time'.*7 visual"):
    sync.SyncTransformer(positions="shared_time").init(
        jax.random.PRNGKey(0), visual, jnp.zeros((1, 6, 8))
    )
  with pytest.raises(ValueError, match=r"config.model.sync.positions='time'"):
    sync.SyncTransformer(positions="time").init(
        jax.random.PRNGKey(0), visual, visual
    )


def test_time_tokens_are_frame_outputs_pooled_in_time_order():
  v = sync.VisualSegmentEncoder(width=16, patch=8, patch_features=8)
  video = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 16, 16, 1))
  pv = v.init(jax.random.PRNGKey(2), video, 16, 8)
  one = v.apply(pv, video, 16, 8)
  tokens = v.apply(pv, video, 16, 8, time_tokens=4)
  assert one.shape == (2, 3, 16) and tokens.shape == (2, 3, 4, 16)
  # Time token t of segment s pools frames s·8 + 4t .. s·8 + 4t + 3: a
  # change confined to frames 28..31 of the clip changes only time token 3
  # of segment 2 ... through attention every token of segment 2, but no
  # token of segments 0 and 1 (frames 0..23).
  changed = v.apply(pv, video.at[:, 28:].set(0.0), 16, 8, time_tokens=4)
  np.testing.assert_allclose(changed[:, :2], tokens[:, :2], atol=1e-6)
  assert not np.allclose(changed[:, 2], tokens[:, 2])
  # With 16 time tokens (no pooling) the tokens are the transformer's
  # outputs at the frame tokens; pooling by 4 is their mean in groups.
  full = v.apply(pv, video, 16, 8, time_tokens=16)
  np.testing.assert_allclose(
      full.reshape(2, 3, 4, 4, 16).mean(axis=3), tokens, atol=1e-6
  )
  with pytest.raises(ValueError, match="do not pool into 5 time tokens"):
    v.apply(pv, video, 16, 8, time_tokens=5)


def test_sync_sequence_count_and_order_of_time_tokens():
  s_v, s_a, t, d, w = 14, 14, 8, 6, 16
  model = sync.SyncTransformer(width=w, num_layers=1, num_heads=2)
  fv = jax.random.normal(jax.random.PRNGKey(0), (2, s_v, t, d))
  fa = jax.random.normal(jax.random.PRNGKey(1), (2, s_a, t, d + 2))
  params = model.init(jax.random.PRNGKey(2), fv, fa)
  _, state = model.apply(params, fv, fa, mutable=["intermediates"])
  (tokens,) = state["intermediates"]["tokens"]
  n = 1 + s_v * t + 1 + s_a * t  # the official 1 + 14·8 + 1 + 14·6 layout
  assert tokens.shape == (2, n, w)
  assert params["params"]["positions"].shape == (n, w)
  layout = sync.sequence_layout(fv.shape, fa.shape)
  assert layout == {
      "offset": slice(0, 1),
      "visual": slice(1, 113),
      "separator": slice(113, 114),
      "audio": slice(114, 226),
  }
  p = params["params"]

  def project(x, name):  # numpy LayerNorm (eps 1e-6) + Dense, per token
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    norm = p[f"{name}_norm"]
    y = (x - mean) / np.sqrt(var + 1e-6) * norm["scale"] + norm["bias"]
    return y @ p[f"{name}_proj"]["kernel"] + p[f"{name}_proj"]["bias"]

  fv_np, fa_np, tok = np.asarray(fv), np.asarray(fa), np.asarray(tokens)
  for s in (0, 5, 13):
    for k in (0, 3, 7):  # token 1 + s·T + k is segment s, time token k
      np.testing.assert_allclose(
          tok[:, 1 + s * t + k], project(fv_np[:, s, k], "visual"), atol=1e-5
      )
      np.testing.assert_allclose(
          tok[:, layout["audio"].start + s * t + k],
          project(fa_np[:, s, k], "audio"),
          atol=1e-5,
      )
  np.testing.assert_allclose(tok[0, 0], np.asarray(p["offset_token"])[0, 0])
  np.testing.assert_allclose(
      tok[1, layout["separator"].start],
      np.asarray(p["separator_token"])[0, 0],
  )


def test_white_noise_is_standard_normal_and_keyed():
  from scipy import stats  # An independent reference for N(0, 1).

  key = jax.random.PRNGKey(0)
  x = np.asarray(sync.white_noise(key, (8, 25_001)))  # odd N
  assert x.shape == (8, 25_001) and x.dtype == np.float32
  flat = x.ravel()
  assert abs(flat.mean()) < 0.005 and abs(flat.std() - 1.0) < 0.005
  assert stats.kstest(flat, "norm").statistic < 0.003
  assert abs(stats.kurtosis(flat)) < 0.02  # Gaussian tails, not uniform's
  # Neighbouring samples (the two halves of one Box–Muller pair sit
  # N/2 apart) are uncorrelated.
  half = (x.shape[1] + 1) // 2
  assert (
      abs(np.corrcoef(x[:, : half - 1].ravel(), x[:, half:].ravel())[0, 1])
      < 0.01
  )
  assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01
  np.testing.assert_array_equal(
      x, np.asarray(sync.white_noise(key, (8, 25_001)))
  )
  other = np.asarray(sync.white_noise(jax.random.PRNGKey(1), (8, 25_001)))
  assert abs(np.corrcoef(flat, other.ravel())[0, 1]) < 0.01


@pytest.mark.parametrize("shape", [(1, 1, 64), (17, 64)])
def test_token_init_jitted_equals_flax_normal_op_by_op(shape):
  # The Synchformer parameters of the README table came from op-by-op
  # initialisation; the jitted init must reproduce them bit for bit.
  key = jax.random.PRNGKey(5)
  op_by_op = nn.initializers.normal(0.02)(key, shape)
  jitted = jax.jit(sync.token_init(), static_argnums=1)(key, shape)
  np.testing.assert_array_equal(np.asarray(jitted), np.asarray(op_by_op))
