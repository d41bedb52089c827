"""config.compute_dtype: bfloat16 compute with float32 parameters.

Three levels:
* every model module, traced: its matrix products and convolutions take
  ``dtype`` operands, its sums, exponentials and reciprocal square roots
  (normalisation statistics, softmaxes, pooled means) take float32, its
  parameters and outputs are float32;
* every method's quick config with its model narrowed (``_SMALL``, so the
  test compiles in seconds), one step on its first batch with the same
  float32 parameters: the bfloat16 loss is within ``_LOSS_RTOL`` of the
  float32 loss (forward only: compiling the backward pass too doubled the
  test's time);
* (slow) the same small configs trained for a few dozen steps and evaluated
  in both dtypes: the headline metric lands within a band of the float32
  run's.
docs/benchmarks.md has both measurements at the full quick configs (one
step, and the whole quick run) with their commands.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import config_utils
from avjax import methods
from avjax.models import denoiser
from avjax.models import encoders
from avjax.models import heads
from avjax.models import precision
from avjax.models import speech_image
from avjax.models import sync
from avjax.models import video_text
from avjax.train import loop
from avjax.train.stages import StageScheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Primitives whose operands must be in the compute dtype, and those that
# accumulate (statistics, softmax, pooling) and must see float32.
_COMPUTE = ("dot_general", "conv_general_dilated")
_FLOAT32 = ("reduce_sum", "exp", "rsqrt", "log")


def test_compute_dtype_names():
  assert precision.compute_dtype("float32") == jnp.float32
  assert precision.compute_dtype("bfloat16") == jnp.bfloat16
  with pytest.raises(ValueError, match=r"config.compute_dtype='float16'"):
    precision.compute_dtype("float16")
  config = config_utils.load_config_file(
      os.path.join(ROOT, "configs", "tstl_ca.py"), "quick"
  )
  assert precision.config_dtype(config) == jnp.float32
  del config.compute_dtype
  assert precision.config_dtype(config) == jnp.float32  # Older configs.


def _equations(jaxpr):
  """Every equation of a jaxpr, sub-jaxprs (jit, custom_jvp, ...) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          yield from _equations(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          yield from _equations(sub)


def _modules(dtype):
  """name → (module, init/apply args): every model module at a tiny size."""
  b = 2
  rng = np.random.default_rng(0)
  f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  mask = jnp.asarray([[True] * 12 + [False] * 4, [True] * 16])
  tiny = dict(num_layers=1, num_heads=2)
  return {
      "conv": (encoders.ConvEncoder((4, 8), 16, 8, dtype=dtype), (f(b, 8, 8),)),
      "time_conv": (
          encoders.TimeConvEncoder((4, 8), 3, 16, 8, dtype=dtype),
          (f(b, 16, 6), mask),
      ),
      "mlp": (encoders.MLPEncoder((16,), 8, dtype=dtype), (f(b, 12),)),
      "correspondence_head": (
          heads.CorrespondenceHead((16,), "concat_product", dtype=dtype),
          (f(b, 8), f(b, 8)),
      ),
      "linear_classifier": (
          heads.LinearClassifier(5, dtype=dtype),
          (f(b, 8),),
      ),
      "speech": (
          speech_image.SpeechEncoder(
              (8, 8),
              width=16,
              embed_dim=8,
              pooling="mean_max",
              dtype=dtype,
              **tiny,
          ),
          (f(b, 16, 6), mask),
      ),
      "image_vit": (
          speech_image.ImageEncoder(
              4, (4,), width=16, embed_dim=8, dtype=dtype, **tiny
          ),
          (f(b, 16, 16, 1),),
      ),
      "image_conv": (
          speech_image.ImageEncoder(
              2,
              (4,),
              width=16,
              num_layers=0,
              embed_dim=8,
              pooling="max",
              stem_downsample="max_pool",
              dtype=dtype,
          ),
          (f(b, 8, 8, 1),),
      ),
      "denoiser": (
          denoiser.CrossModalDenoiser(
              16, 1, 2, self_attention=True, dtype=dtype
          ),
          (f(b, 16, 8), f(b, 4, 8), mask),
      ),
      "sync_visual": (
          sync.VisualSegmentEncoder(16, 4, 4, dtype=dtype, **tiny),
          (f(b, 6, 8, 8, 1), 4, 2),
      ),
      "sync_audio": (
          sync.AudioSegmentEncoder(16, 2, dtype=dtype, **tiny),
          (f(b, 12, 5), 4, 2),
      ),
      "sync_transformer": (
          sync.SyncTransformer(16, num_offsets=3, dtype=dtype, **tiny),
          (f(b, 2, 16), f(b, 2, 16)),
      ),
      "video": (
          video_text.VideoEncoder(
              4, 4, (8,), 16, max_frames=4, embed_dim=8, dtype=dtype, **tiny
          ),
          (f(b, 3, 8, 8), jnp.asarray([[True, True, False], [True] * 3])),
      ),
      "text": (
          video_text.TextEncoder(11, 16, embed_dim=8, dtype=dtype, **tiny),
          (jnp.asarray(rng.integers(0, 11, (b, 16))), mask),
      ),
  }


@pytest.mark.parametrize("name", sorted(_modules(jnp.float32)))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_module_computes_in_dtype_with_float32_params_and_outputs(name, dtype):
  module, args = _modules(dtype)[name]
  # Shapes and dtypes only: nothing is compiled or run.
  params = jax.eval_shape(lambda k: module.init(k, *args), jax.random.key(0))
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  apply = lambda p: module.apply(p, *args)
  closed = jax.make_jaxpr(apply)(params)
  floats = [
      a.dtype for a in closed.out_avals if jnp.issubdtype(a.dtype, jnp.floating)
  ]
  assert floats and set(floats) == {jnp.dtype("float32")}, floats
  equations = list(_equations(closed.jaxpr))
  compute = [e for e in equations if e.primitive.name in _COMPUTE]
  assert compute, f"{name}: no matrix product or convolution traced"
  for e in compute:
    assert all(v.aval.dtype == dtype for v in e.invars), (
        name,
        e.primitive.name,
        [v.aval for v in e.invars],
    )
  for e in equations:
    if e.primitive.name in _FLOAT32:
      assert all(v.aval.dtype == jnp.float32 for v in e.invars), (
          name,
          e.primitive.name,
          [v.aval for v in e.invars],
      )


# method: (AV-digits config its quick run reads, headline metric, band).
_QUICK = {
    "tstl_ca": ("pairs", "map_mean", 0.05),
    "avc": ("pairs", "probe_acc_audio", 0.05),
    "cmd": ("captions", "r10_mean", 0.05),
    "synchformer": ("sync", "offset_top1_tol1", 0.05),
    "mama": ("video_text", "r5_mean", 0.05),
}
# Narrow models and small batches, so that compiling each step twice (one
# program per dtype) stays short.
_SMALL = {
    "tstl_ca": {
        "data.batch_size": 32,
        "data.cache_features": False,
        "model.embed_dim": 16,
        "model.audio_kwargs.features": (16, 32),
        "model.audio_kwargs.hidden_dim": 32,
        "model.visual_kwargs.features": (8, 16),
        "model.visual_kwargs.hidden_dim": 32,
    },
    "avc": {
        "data.batch_size": 32,
        "model.embed_dim": 16,
        "model.audio_kwargs.features": (8, 16),
        "model.audio_kwargs.hidden_dim": 32,
        "model.visual_kwargs.features": (8, 16),
        "model.visual_kwargs.hidden_dim": 32,
    },
    "cmd": {
        "data.batch_size": 16,
        "model.embed_dim": 16,
        "model.speech.conv_features": (16, 16),
        "model.speech.width": 16,
        "model.speech.num_layers": 1,
        "model.speech.num_heads": 2,
        "model.image.stem_features": (8, 8, 16),
        "model.image.width": 16,
        "model.image.num_heads": 2,
        "cmd.head.width": 16,
        "cmd.head.num_layers": 1,
        "cmd.head.num_heads": 2,
    },
    "synchformer": {
        "data.batch_size": 8,
        "model.visual.width": 16,
        "model.visual.num_heads": 2,
        "model.visual.patch_features": 8,
        "model.audio.width": 16,
        "model.audio.num_heads": 2,
        "model.sync.width": 16,
        "model.sync.num_heads": 2,
        "model.sync.num_layers": 1,
    },
    "mama": {
        "data.batch_size": 16,
        "data.cache_features": False,
        "meta.batch_size": 16,
        "model.embed_dim": 16,
        "model.video.patch_features": 8,
        "model.video.frame_dim": 16,
        "model.video.num_layers": 1,
        "model.video.num_heads": 2,
        "model.text.width": 16,
        "model.text.num_layers": 1,
        "model.text.num_heads": 2,
        "meta.net.hidden_dims": (8,),
    },
}
# Measured at these sizes: up to 2.1e-3 relative between the two losses
# (and 0.6e-4 – 4.6e-4 at the full quick configs, docs/benchmarks.md).
_LOSS_RTOL = 5e-3


def _quick_config(name, data_dir, arg="quick", **overrides):
  config = config_utils.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py"), arg
  )
  config.data.data_dir = data_dir
  config.update_from_flattened_dict(dict(_SMALL[name], **overrides))
  return config


def _step_loss(config, batch):
  """(first stage's training loss at step 0, the initial parameters)."""
  method = methods.get_method(config)
  stage = StageScheduler(config.stages)[0]
  params = method.init_params(jax.random.PRNGKey(0), batch)
  loss = jax.jit(
      lambda p: method.loss_fn(
          p, batch, jax.random.PRNGKey(1), stage, jnp.int32(0)
      )[0]
  )(params)
  return float(loss), params


@pytest.mark.parametrize("name", sorted(_QUICK))
def test_one_step_loss_bfloat16_matches_float32(name, av_digits_dir):
  data_dir = av_digits_dir.prepare(_QUICK[name][0])
  config = _quick_config(name, data_dir)
  method = methods.get_method(config)
  batch = next(method.train_iterator(config.data.batch_size, 0, 0, 1))
  loss32, params32 = _step_loss(config, batch)
  config.compute_dtype = "bfloat16"
  loss16, params16 = _step_loss(config, batch)
  # Same float32 parameters (initialisation does not depend on the dtype).
  jax.tree.map(np.testing.assert_array_equal, params32, params16)
  assert np.isfinite(loss16)
  np.testing.assert_allclose(loss16, loss32, rtol=_LOSS_RTOL)
  assert loss16 != loss32  # It did compute in bfloat16.


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_QUICK))
def test_short_quick_run_metric_bfloat16_within_band(
    name, av_digits_dir, tmp_path
):
  dataset, metric, band = _QUICK[name]
  data_dir = av_digits_dir.prepare(dataset)
  results = {}
  for dtype in ("float32", "bfloat16"):
    config = _quick_config(
        name,
        data_dir,
        "quick" if name == "avc" else "quick,steps=60",  # AVC: 60 steps.
        compute_dtype=dtype,
        eval_every=0,
        checkpoint_every=60,
    )
    results[dtype] = loop.train_and_evaluate(config, str(tmp_path / dtype))
  assert abs(results["bfloat16"][metric] - results["float32"][metric]) <= (
      band
  ), (metric, results["float32"][metric], results["bfloat16"][metric])
