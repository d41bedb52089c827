"""CMD method: loss pieces, head isolation, padding, temperature, config."""

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from avjax.data.builders.av_digits import AvDigits, AvDigitsConfig
from avjax import methods
from avjax.methods import base
from avjax.methods import cmd as cmd_lib
from avjax.train.stages import StageScheduler
from avjax.train.state import TrainState

from eval_helpers import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_config(arg=None):
  spec = importlib.util.spec_from_file_location(
      "cmd_config", os.path.join(ROOT, "configs", "cmd.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _tiny_config(arg="quick", **cmd_overrides):
  config = _load_config(arg)
  config.model.embed_dim = 16
  config.model.speech.update(
      {"conv_features": (16, 16), "width": 16, "num_layers": 1, "num_heads": 2}
  )
  config.model.image.update({"width": 16, "num_layers": 1, "num_heads": 2})
  config.cmd.head.update({"width": 16, "num_layers": 1, "num_heads": 2})
  for key, value in cmd_overrides.items():
    *parents, leaf = key.split(".")
    target = config.cmd
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def _batch(b=6, frames=40, mels=40, size=32, seed=0):
  rng = np.random.default_rng(seed)
  lengths = np.array([40, 33, 17, 9, 40, 25][:b])
  mask = np.arange(frames)[None] < lengths[:, None]
  audio = rng.normal(size=(b, frames, mels)).astype(np.float32)
  audio[~mask] = 0.0
  image = rng.uniform(size=(b, size, size, 1)).astype(np.float32)
  return {
      "audio": audio,
      "audio_mask": mask,
      "image": image,
      "image_id": np.arange(b, dtype=np.int32),
  }


def _stage(config):
  return StageScheduler(config.stages)[0]


class _Tiny:
  """One small CMD method shared by the tests of this module, with its
  params, a batch, the batch's encoder outputs and a jitted loss_fn (each
  compiled once)."""

  def __init__(self):
    self.method = cmd_lib.CMD(_tiny_config())
    self.batch = _batch()
    self.params = self.method.init_params(jax.random.PRNGKey(0), self.batch)
    self.stage = _stage(self.method.config)
    self.encode = jax.jit(self.method.encode)
    self.speech, self.image = self.encode(
        self.params["encoders"],
        self.batch["audio"],
        self.batch["audio_mask"],
        self.batch["image"],
    )
    self.loss_fn = jax.jit(self.method.loss_fn, static_argnums=3)


@pytest.fixture(scope="module")
def tiny():
  return _Tiny()


def test_param_tree_and_head_count(tiny):
  params = tiny.params
  assert set(params) == {"encoders", "log_temperature", "cmd_head"}
  assert set(params["cmd_head"]) == {"speech_from_image", "speech_mask_token"}
  n_head = cmd_lib.count_params(params["cmd_head"])
  assert 0 < n_head < cmd_lib.count_params(params["encoders"])
  np.testing.assert_allclose(
      float(tiny.method.temperature(params)), 0.07, rtol=1e-6
  )
  b = tiny.batch
  shapes = lambda m: jax.eval_shape(  # pylint: disable=protected-access
      m._init_params,
      jax.random.PRNGKey(0),
      b["audio"][:2],
      b["audio_mask"][:2],
      b["image"][:2],
  )
  base = shapes(cmd_lib.CMD(_tiny_config("quick,no_cmd")))
  assert set(base) == {"encoders", "log_temperature"}
  sym = shapes(cmd_lib.CMD(_tiny_config("quick,symmetric")))
  assert set(sym["cmd_head"]) == {
      "speech_from_image",
      "speech_mask_token",
      "image_from_speech",
      "image_mask_token",
  }


def test_retrieval_outputs_identical_without_head(tiny):
  batch, params = tiny.batch, tiny.params
  trained = dict(params)  # A head with arbitrary (non-init) values.
  trained["cmd_head"] = jax.tree.map(lambda x: x + 1.0, params["cmd_head"])
  without = {k: v for k, v in params.items() if k != "cmd_head"}
  embed = base.jitted_predictions(tiny.method, ("embed_speech", "embed_image"))
  inputs = {k: batch[k] for k in ("audio", "audio_mask", "image")}
  got0, got = embed(without, inputs), embed(trained, inputs)
  for key in got:
    np.testing.assert_array_equal(got[key], got0[key])


def _speech_from_image_encoder_grads(method, tiny, encode_rng=None):
  """Gradients of the CMD (speech-from-image denoising) loss alone with
  respect to each encoder tower, at the tiny run's parameters with a
  perturbed head: its zero-initialised output layer would block the
  gradient at init, any trained head passes it on."""
  batch = tiny.batch

  def cmd_only(p):
    s, i = method.encode(
        p["encoders"],
        batch["audio"],
        batch["audio_mask"],
        batch["image"],
        rng=encode_rng,
    )
    loss, _ = method._denoising_loss(  # pylint: disable=protected-access
        p["cmd_head"],
        s,
        i,
        "speech_from_image",
        method.config.cmd.speech_corruption,
        jax.random.PRNGKey(2),
    )
    return loss

  p = dict(tiny.params)
  p["cmd_head"] = jax.tree.map(
      lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(3), x.shape),
      p["cmd_head"],
  )
  return jax.jit(jax.grad(cmd_only))(p)["encoders"]["params"]


def test_cmd_gradients_reach_both_encoders(tiny):
  grads = _speech_from_image_encoder_grads(
      tiny.method, tiny, encode_rng=jax.random.PRNGKey(1)
  )
  for tower in ("speech", "image"):
    norm = optax.global_norm(grads[tower])
    assert np.isfinite(norm) and norm > 0, tower


def test_loss_is_finite_and_independent_of_padding_contents(tiny):
  batch = tiny.batch
  big = dict(
      batch,
      audio=np.where(
          batch["audio_mask"][..., None], batch["audio"], 1e4
      ).astype(np.float32),
  )
  loss, m = tiny.loss_fn(
      tiny.params, batch, jax.random.PRNGKey(1), tiny.stage, 0
  )
  loss_big, m_big = tiny.loss_fn(
      tiny.params, big, jax.random.PRNGKey(1), tiny.stage, 0
  )
  assert np.isfinite(loss)
  assert {
      "contrastive",
      "temperature",
      "cmd_speech_from_image",
      "corrupt_dist_speech_from_image",
  } <= set(m)
  np.testing.assert_allclose(loss_big, loss, rtol=1e-5)
  for key in m:
    np.testing.assert_allclose(
        m_big[key], m[key], rtol=1e-4, atol=1e-6, err_msg=key
    )
  # The configured corruption leaves a gap for the head to close.
  assert float(m["corrupt_dist_speech_from_image"]) > 0.1


def test_zero_noise_gives_zero_target_gap(tiny):
  zero = ml_collections.ConfigDict(
      {"noise_std": 0.0, "mask_fraction": 0.0, "swap_fraction": 0.0}
  )
  loss, m = jax.jit(
      lambda head, s, i: tiny.method._denoising_loss(  # pylint: disable=protected-access
          head, s, i, "speech_from_image", zero, jax.random.PRNGKey(0)
      )
  )(tiny.params["cmd_head"], tiny.speech, tiny.image)
  # Uncorrupted input: no gap to close, and the identity-initialised head
  # reconstructs it exactly.
  assert float(m["corrupt_dist_speech_from_image"]) < 1e-6
  assert float(loss) < 1e-6


def test_head_training_on_a_fixed_batch_reduces_reconstruction_error(tiny):
  """The method's denoising loss (fresh corruption every step, learned mask
  token, normalised MSE) trained on one batch's fixed encoder features."""
  method = tiny.method
  corr = ml_collections.ConfigDict(
      {"noise_std": 0.3, "mask_fraction": 0.5, "swap_fraction": 0.0}
  )
  tx = optax.adam(3e-3)

  def loss(head, k):
    return method._denoising_loss(  # pylint: disable=protected-access
        head,
        tiny.speech,
        tiny.image,
        "speech_from_image",
        corr,
        jax.random.fold_in(jax.random.PRNGKey(1), k),
    )

  @jax.jit
  def step(head, opt, k):
    (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(head, k)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(head, updates), opt, metrics

  head = tiny.params["cmd_head"]
  opt = tx.init(head)
  history = []
  for k in range(150):
    head, opt, metrics = step(head, opt, k)
    history.append(
        (
            float(metrics["cmd_speech_from_image"]),
            float(metrics["corrupt_dist_speech_from_image"]),
        )
    )
  first, last = history[0], np.mean(history[-10:], axis=0)
  # The head starts as the identity (error = input gap) and learns to close
  # most of the gap.
  np.testing.assert_allclose(first[0], first[1], rtol=1e-5)
  assert last[0] < 0.5 * last[1], (first, last)
  assert last[0] < 0.5 * first[0], (first, last)


def _encoder_output(features, mask=None):
  features = jnp.asarray(features, jnp.float32)
  if mask is None:
    mask = np.ones(features.shape[:2], bool)
  return cmd_lib.speech_image.EncoderOutput(
      features, jnp.asarray(mask), jnp.mean(features, axis=1)
  )


def test_head_distances_on_a_hand_computed_case():
  """Every valid frame masked by a zero token, a head whose output is its
  input + (1, 2), plain MSE: the three distances by hand."""
  config = _tiny_config(normalize=False)
  config.cmd.speech_corruption.update(
      noise_std=0.0, mask_fraction=1.0, swap_fraction=0.0
  )
  method = cmd_lib.CMD(config)
  speech = _encoder_output(
      [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [9.0, 9.0]]],
      [[True, True], [True, False]],
  )
  image = _encoder_output(np.ones((2, 3, 2)))
  head = method._init_head(  # pylint: disable=protected-access
      jax.random.PRNGKey(0), jax.random.PRNGKey(1), speech, image
  )
  head["speech_mask_token"] = jnp.zeros(2)
  out = head["speech_from_image"]["params"]["out_proj"]
  out["bias"] = jnp.array([1.0, 2.0])  # The kernel is zero-initialised.
  sums = jax.device_get(jax.jit(method.head_distances)(head, speech, image))
  sums = {k: float(np.sum(v)) for k, v in sums.items()}
  # Reconstruction (1, 2) on the 3 valid frames: 0, (2² + 2²) / 2 = 4 and
  # (4² + 3²) / 2 = 12.5; corrupted input (0, 0): 2.5, 12.5 and 25.
  assert sums["cmd_frames"] == 3.0
  got = cmd_lib.head_distance_metrics(sums)
  assert got["cmd_recon_dist"] == pytest.approx(16.5 / 3)
  assert got["cmd_recon_dist_shuffled"] == pytest.approx(16.5 / 3)
  assert got["cmd_corrupt_dist"] == pytest.approx(40.0 / 3)
  assert got["cmd_recon_ratio"] == pytest.approx(16.5 / 40.0)


def test_stop_gradient_input_cuts_the_speech_encoder_off(tiny):
  """With the default config the same CMD-only loss reaches the speech
  encoder (`test_cmd_gradients_reach_both_encoders`); stopping the gradient
  on the head's input (the target is already stopped) leaves it none."""
  method = cmd_lib.CMD(_tiny_config("quick,stop_gradient_input"))
  grads = _speech_from_image_encoder_grads(method, tiny)
  assert float(optax.global_norm(grads["image"])) > 0
  assert float(optax.global_norm(grads["speech"])) == 0.0


def test_shuffle_context_rolls_the_batch():
  x = _encoder_output(np.arange(12.0).reshape(3, 2, 2))
  rolled = cmd_lib.shuffle_context(x)
  np.testing.assert_array_equal(rolled.features[0], x.features[2])
  np.testing.assert_array_equal(rolled.features[1], x.features[0])
  np.testing.assert_array_equal(rolled.embedding[2], x.embedding[1])


def _synthetic_pair(key, batch=32, frames=6, patches=4, dim=16):
  """Frozen random features in which only the image tells a masked frame:
  frame t = z + position_t, image patches = z + noise, z ~ N(0, I) per
  example (the head has no self-attention, so a masked frame cannot read
  the caption's other frames)."""
  k_z, k_noise = jax.random.split(key)
  positions = jax.random.normal(jax.random.PRNGKey(99), (frames, dim))
  z = jax.random.normal(k_z, (batch, 1, dim))
  speech = z + positions[None]
  image = z + 0.3 * jax.random.normal(k_noise, (batch, patches, dim))
  return _encoder_output(speech), _encoder_output(image)


@pytest.mark.parametrize("context", ["matched", "shuffled"])
def test_trained_head_reconstructs_better_from_the_matched_image(context):
  """Trained with its pair's image, the head's reconstruction of masked
  frames is far better from the matched image than from another example's;
  trained with shuffled images (the ablation) it has learned no use for the
  image, and the two are alike."""
  config = _tiny_config(
      context=context, loss_on="corrupted", distance="mse", normalize=True
  )
  config.cmd.speech_corruption.update(
      noise_std=0.0, mask_fraction=0.5, swap_fraction=0.0
  )
  method = cmd_lib.CMD(config)
  speech, image = _synthetic_pair(jax.random.PRNGKey(0))
  head = method._init_head(  # pylint: disable=protected-access
      jax.random.PRNGKey(1), jax.random.PRNGKey(2), speech, image
  )
  tx = optax.adam(3e-3)

  def loss(head, k):
    s, i = _synthetic_pair(jax.random.fold_in(jax.random.PRNGKey(3), k))
    out, _ = method._denoising_loss(  # pylint: disable=protected-access
        head,
        s,
        i,
        "speech_from_image",
        config.cmd.speech_corruption,
        jax.random.fold_in(jax.random.PRNGKey(4), k),
    )
    return out

  @jax.jit
  def step(head, opt, k):
    grads = jax.grad(loss)(head, k)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(head, updates), opt

  opt = tx.init(head)
  for k in range(150):
    head, opt = step(head, opt, k)
  s, i = _synthetic_pair(jax.random.PRNGKey(1000), batch=64)
  got = cmd_lib.head_distance_metrics(
      {
          k: float(np.sum(v))
          for k, v in jax.device_get(
              jax.jit(method.head_distances)(head, s, i)
          ).items()
          if k != "maps"
      }
  )
  ratio = got["cmd_recon_dist"] / got["cmd_recon_dist_shuffled"]
  if context == "matched":
    assert ratio < 0.5, got
  else:
    assert 0.8 < ratio < 1.25, got


class _PushTemperatureUp(cmd_lib.CMD):
  """CMD whose loss only pushes log τ up (cheap to compile)."""

  def loss_fn(self, params, batch, rng, stage, step):
    return -params["log_temperature"], {}


def test_temperature_is_projected_into_range(tiny):
  method = _PushTemperatureUp(tiny.method.config)
  p = dict(tiny.params, log_temperature=jnp.asarray(math.log(5.0)))
  assert float(method.temperature(p)) == pytest.approx(0.5, rel=1e-6)
  state = TrainState.create(p, optax.sgd(10.0), jax.random.PRNGKey(0))
  run = methods.RunInfo.from_config(method.config)
  state, _ = jax.jit(
      lambda s: method.train_step(s, tiny.batch, tiny.stage, run)
  )(state)
  assert float(state.params["log_temperature"]) == pytest.approx(
      math.log(0.5), rel=1e-6
  )


def test_frame_distance_values():
  pred = jnp.array([[[1.0, 2.0, 3.0]]])
  target = jnp.array([[[2.0, 4.0, 6.0]]])
  # Scale-invariant after normalisation.
  np.testing.assert_allclose(
      cmd_lib.frame_distance(pred, target, "mse", normalize=True),
      [[0.0]],
      atol=1e-6,
  )
  np.testing.assert_allclose(
      cmd_lib.frame_distance(pred, target, "mse", normalize=False),
      [[14.0 / 3.0]],
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      cmd_lib.frame_distance(pred, target, "cosine", normalize=False),
      [[0.0]],
      atol=1e-6,
  )
  np.testing.assert_allclose(
      cmd_lib.frame_distance(pred, target, "smooth_l1", normalize=False),
      [[(0.5 + 1.5 + 2.5) / 3.0]],
      rtol=1e-6,
  )
  with pytest.raises(ValueError, match="distance='l3'"):
    cmd_lib.frame_distance(pred, target, "l3")


def test_config_variants_and_bad_settings():
  for arg in (
      None,
      "quick",
      "no_cmd",
      "symmetric,noise=swap",
      "flickr8k_audio",
      "spokencoco",
      "quick,seed=3",
      "shuffled_context",
      "stop_gradient_input",
      "no_stop_target",
  ):
    config = _load_config(arg)
    assert config.method == "cmd"
    assert isinstance(config, ml_collections.ConfigDict)
  assert _load_config("no_cmd").cmd.weight == 0.0
  default = _load_config(None).cmd
  assert default.context == "matched" and not default.stop_gradient_input
  assert default.stop_gradient_target
  assert _load_config("shuffled_context").cmd.context == "shuffled"
  assert _load_config("stop_gradient_input").cmd.stop_gradient_input
  assert not _load_config("no_stop_target").cmd.stop_gradient_target
  assert _load_config("quick,seed=3").seed == 3
  assert _load_config("no_cmd,steps=2000").stages[0].steps == 2000
  assert _load_config(None).stages[0].steps == 1500
  with pytest.raises(ValueError, match="steps=0 is not a positive integer"):
    _load_config("steps=0")
  with pytest.raises(ValueError, match="steps='many'"):
    _load_config("steps=many")
  assert _load_config("flickr8k_audio").data.name == "flickr8k_audio/img224"
  assert (
      _load_config("spokencoco").data.name == "spokencoco/karpathy_img224"
  )  # The published 5k test split.
  with pytest.raises(ValueError, match="noise='pink'"):
    _load_config("noise=pink")
  with pytest.raises(ValueError, match="unknown config argument"):
    _load_config("quik")
  with pytest.raises(ValueError, match="choose one of"):
    _load_config("flickr8k_audio,spokencoco")
  with pytest.raises(ValueError, match="exceeds 1"):
    cmd_lib.CMD(
        _tiny_config(
            **{
                "speech_corruption.mask_fraction": 0.7,
                "speech_corruption.swap_fraction": 0.5,
            }
        )
    )
  with pytest.raises(ValueError, match="loss_on"):
    cmd_lib.CMD(_tiny_config(loss_on="some"))
  with pytest.raises(ValueError, match="config.cmd.context='other'"):
    cmd_lib.CMD(_tiny_config(context="other"))


@pytest.fixture(scope="module")
def tiny_captions(tmp_path_factory):
  """A tiny AV-digits `captions` builder (8 train, 40 test canvases): this
  test is about the head, not the dataset, and needs no full `captions`."""
  config = AvDigitsConfig(
      name="captions_tiny",
      kind="captions",
      caption_split_sizes={"train": 8, "validation": 4, "test": 40},
  )
  builder = AvDigits(
      config=config,
      file_format="array_record",
      data_dir=str(tmp_path_factory.mktemp("captions")),
  )
  builder.download_and_prepare(file_format="array_record")
  return builder


def test_evaluate_same_retrieval_without_head(
    tmp_path, tiny_captions, monkeypatch
):
  config = _tiny_config()
  config.eval_batch_size = 32
  method = cmd_lib.CMD(config)
  monkeypatch.setattr(
      method,
      "_source",
      lambda split: tiny_captions.wrap_data_source(
          tiny_captions.as_data_source(split), split
      ),
  )
  it = method.train_iterator(8, 0, 0, 1)
  params = method.init_params(jax.random.PRNGKey(0), next(it))
  with_head = evaluate(method, params, "test", plot_dir=str(tmp_path))
  without = evaluate(
      method, {k: v for k, v in params.items() if k != "cmd_head"}, "test"
  )
  retrieval_keys = [
      k for k in with_head if k.startswith(("r", "map_", "exact_"))
  ]
  assert "r1_speech2image" in retrieval_keys
  assert "r10_image2speech" in retrieval_keys
  assert "exact_r1_speech2image" in retrieval_keys
  for key in retrieval_keys:
    assert with_head[key] == without[key], key
  assert with_head["head_params"] > 0 and without["head_params"] == 0
  assert with_head["cmd_corrupt_dist"] > 0
  assert with_head["cmd_recon_ratio"] == pytest.approx(
      with_head["cmd_recon_dist"] / with_head["cmd_corrupt_dist"]
  )
  plots = set(os.listdir(tmp_path))
  assert "retrieval_examples.png" in plots
  assert "cmd_attention_0.png" in plots


def test_relevance_groups_code_the_digit_sequence():
  batch = {
      "digits": np.array(
          [[3, 1, -1, -1], [1, 3, -1, -1], [3, 1, -1, -1], [3, 1, 0, -1]]
      ),
      "image_id": np.array([5, 6, 7, 8]),
  }
  groups = cmd_lib.relevance_groups(batch)
  # Equal sequences share a group; order and length matter.
  assert groups[0] == groups[2] == 4 + 2 * 11
  assert len(set(groups.tolist())) == 3
  np.testing.assert_array_equal(
      cmd_lib.relevance_groups({"image_id": np.array([5, 6, 5])}), [5, 6, 5]
  )
  with pytest.raises(ValueError, match="batch 'digits' must be int"):
    cmd_lib.relevance_groups({"digits": np.array([[10, -1]]), "image_id": [0]})


def test_sequence_relevance_lifts_the_test_ceiling_to_one(
    av_digits_captions_dir,
):
  """Oracle embeddings (one-hot of the digit sequence, which is all a
  caption says) on the AV-digits test split: R@1 and MAP are 1 with
  sequence relevance, below 1 with exact image ids (canvases that share a
  sequence tie)."""
  from avjax.data.pipeline import sources  # pylint: disable=import-outside-toplevel
  from avjax.eval import retrieval  # pylint: disable=import-outside-toplevel

  config = _load_config()
  config.data.data_dir = av_digits_captions_dir
  source = sources.load_config_source(config.data, "test")
  records = [source[k] for k in range(len(source))]
  batch = {
      "digits": np.stack([r["digits"] for r in records]),
      "image_id": np.array([r["image_id"] for r in records]),
  }
  groups = cmd_lib.relevance_groups(batch)
  codes, inverse = np.unique(groups, return_inverse=True)
  oracle = np.eye(codes.size)[inverse]
  ids = batch["image_id"]
  assert np.unique(ids).size == len(records) == 500
  assert codes.size < len(records)  # Some canvases share a sequence.
  kw = {"names": ("s", "i"), "ks": (1, 10)}
  grouped = retrieval.cross_modal_retrieval_metrics(
      oracle, oracle, ids, ids, audio_groups=groups, visual_groups=groups, **kw
  )
  exact = retrieval.cross_modal_retrieval_metrics(
      oracle, oracle, ids, ids, **kw
  )
  assert grouped["r1_mean"] == 1.0 and grouped["map_mean"] == 1.0
  # Ties go to the lowest index: one hit per distinct sequence.
  assert exact["r1_mean"] == pytest.approx(codes.size / len(records))
  assert exact["r1_mean"] < 0.9


def test_fixed_length_audio_view_crops_and_pads():
  records = [
      {
          "audio": np.arange(1, 11, dtype=np.int16),
          "audio_length": 10,
          "image": np.zeros((4, 4, 3), np.uint8),
          "image_id": 7,
          "wav_file": b"a.wav",
      },
      {
          "audio": np.arange(1, 4, dtype=np.int16),
          "audio_length": 3,
          "image": np.ones((4, 4, 3), np.uint8),
          "image_id": 8,
          "wav_file": b"b.wav",
      },
  ]
  view = cmd_lib._FixedLengthAudio(records, 6)  # pylint: disable=protected-access
  assert len(view) == 2
  long, short = view[0], view[1]
  np.testing.assert_array_equal(long["audio"], [1, 2, 3, 4, 5, 6])
  assert long["audio_length"] == 6
  np.testing.assert_array_equal(short["audio"], [1, 2, 3, 0, 0, 0])
  assert short["audio_length"] == 3 and short["image_id"] == 8
  assert set(long) == {"audio", "audio_length", "image", "image_id"}
  bad = cmd_lib._FixedLengthAudio(  # pylint: disable=protected-access
      [dict(records[0], audio=np.zeros((2, 3), np.int16))], 6
  )
  with pytest.raises(ValueError, match="1-D waveform"):
    bad[0]
