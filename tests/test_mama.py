"""MAMA: its loss, step, data streams, bad input and video–text eval."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import methods
from avjax.config_utils import load_config_file
from avjax.eval import auc as auc_lib
from avjax.eval import video_text as vt_eval
from avjax.methods import mama
from avjax.models import video_text as vt_models
from avjax.train import bilevel
from avjax.train.state import TrainState

from eval_helpers import evaluate

_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "mama.py")
_DATASET = "video_text_noise40"


def small_config(data_dir, arg="quick,noise=40", **overrides):
  """The quick config with tiny encoders (fast to compile)."""
  config = load_config_file(_CONFIG, arg)
  config.data.data_dir = data_dir
  config.data.batch_size = 8
  config.meta.batch_size = 8
  config.model.embed_dim = 16
  config.model.video.update(
      {"patch_features": 8, "frame_dim": 16, "num_layers": 1, "num_heads": 2}
  )
  config.model.text.update({"width": 16, "num_layers": 1, "num_heads": 2})
  config.meta.net.hidden_dims = (8,)
  config.eval_batch_size = 100
  config.weight_eval_pairs = 64
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def data_dir(av_digits_dir):
  return av_digits_dir.prepare(_DATASET)


def _state(method, config, batch, seed=0):
  """(initial train state, the first stage, the run info)."""
  run = methods.RunInfo.from_config(config)
  rng = jax.random.PRNGKey(seed)
  params = method.init_params(rng, batch)
  state = TrainState.create(
      params,
      method.make_optimizer(run.stages[0], run),
      jax.random.PRNGKey(seed + 1),
      aux=method.init_aux(rng, params),
  )
  return state, run.stages[0], run


def _numpy_info_nce(a, b, temperature):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  logits = a @ b.T / temperature
  out = []
  for i in range(len(a)):
    row = np.log(np.exp(logits[i]).sum()) - logits[i, i]
    col = np.log(np.exp(logits[:, i]).sum()) - logits[i, i]
    out.append(0.5 * (row + col))
  return np.array(out)


def test_margin_zero_loss_is_info_nce(data_dir):
  config = small_config(data_dir, "quick,noise=40,meta_only")
  method = mama.MAMA(config)
  batch = next(method.train_iterator(8, 0, 0, 1))
  state, _, _ = _state(method, config, batch)
  per_sample, metrics = jax.jit(method.per_sample_loss)(
      state.params, batch["train"], None
  )
  v, t = jax.jit(method.encode)(state.params["encoders"], batch["train"])
  scale = float(metrics["logit_scale"])
  assert scale == pytest.approx(1 / 0.07, rel=1e-5)
  np.testing.assert_allclose(
      per_sample,
      _numpy_info_nce(
          np.asarray(v, np.float64), np.asarray(t, np.float64), 1 / scale
      ),
      rtol=1e-4,
  )
  config.loss.margin = 0.5  # A margin lowers the positives' losses.
  with_margin, _ = jax.jit(mama.MAMA(config).per_sample_loss)(
      state.params, batch["train"], None
  )
  assert np.all(np.asarray(with_margin) <= np.asarray(per_sample) + 1e-6)
  assert np.any(np.asarray(with_margin) < np.asarray(per_sample) - 1e-4)


def test_bilevel_train_step_keeps_the_weight_net_in_aux(data_dir):
  config = small_config(data_dir)
  method = mama.MAMA(config)
  iterator = method.train_iterator(8, 0, 0, 1)
  batch = next(iterator)
  assert set(batch) == {"train", "meta"}
  assert batch["meta"]["frames"].shape == (8, 8, 32, 32)
  assert batch["train"]["tokens"].shape == (8, 32)
  state, stage, run = _state(method, config, batch)
  assert set(state.params) == {"encoders", "log_scale"}  # No copy of aux.
  step = jax.jit(lambda s, b: method.train_step(s, b, stage, run))
  # Step 0 runs at learning rate 0 (warm-up), so its virtual step and the
  # meta-gradient are zero; the checked step is the second.
  state, _ = step(state, batch)
  batch = next(iterator)
  params0 = state.params
  phi0 = state.aux[bilevel.META_KEY]["params"]
  state, metrics = step(state, batch)
  for key in (
      "loss",
      "meta_loss",
      "weight_mean",
      "weight_noisy",
      "weight_clean",
      "logit_scale",
  ):
    assert np.isfinite(float(metrics[key])), key
  phi1 = state.aux[bilevel.META_KEY]["params"]
  assert any(
      not np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(phi0), jax.tree.leaves(phi1))
  )
  assert set(state.params) == {"encoders", "log_scale"}
  # The logged mean weights: the updated net on the pre-step losses.
  _, w = method._loss_jit(params0, phi1, batch["train"])
  noisy = batch["train"]["noisy"].astype(bool)
  assert noisy.any() and (~noisy).any()
  assert float(metrics["weight_noisy"]) == pytest.approx(
      float(np.mean(np.asarray(w)[noisy])), rel=1e-5
  )
  assert float(metrics["weight_clean"]) == pytest.approx(
      float(np.mean(np.asarray(w)[~noisy])), rel=1e-5
  )
  assert float(metrics["weight_auc"]) == pytest.approx(
      auc_lib.auc(np.asarray(w), ~noisy), abs=1e-6
  )
  # The net sees loss / ln B (B = 8 here).
  assert method.weight_net.input_scale == pytest.approx(math.log(8))


def test_clean_oracle_drops_the_noisy_pairs(data_dir):
  config = small_config(data_dir, "quick,noise=40,clean_oracle")
  method = mama.MAMA(config)
  assert not method.meta_enabled and config.loss.margin == 0.0
  batch = next(method.train_iterator(8, 0, 0, 1))
  state, stage, _ = _state(method, config, batch)
  loss, _ = method.loss_fn(state.params, batch, None, stage, 0)
  per_sample, _ = method.per_sample_loss(state.params, batch["train"], None)
  clean = ~batch["train"]["noisy"].astype(bool)
  assert clean.any() and (~clean).any()
  assert float(loss) == pytest.approx(
      float(np.asarray(per_sample)[clean].mean()), rel=1e-5
  )
  config.meta.enabled = True
  config.optimizer.eps_root = 1e-16
  with pytest.raises(ValueError, match="config.loss.clean_oracle"):
    mama.MAMA(config)


def test_logit_scale_is_capped(data_dir):
  config = small_config(data_dir, "quick,noise=40,infonce")
  method = mama.MAMA(config)
  batch = next(method.train_iterator(8, 0, 0, 1))
  state, stage, run = _state(method, config, batch)
  params = dict(state.params, log_scale=jnp.asarray(10.0))
  assert float(method.logit_scale(params)) == pytest.approx(100.0, rel=1e-5)
  new, _ = jax.jit(lambda s, b: method.train_step(s, b, stage, run))(
      state.replace(params=params), batch
  )
  assert float(new.params["log_scale"]) <= math.log(100.0) + 1e-6
  assert new.aux == {}
  weights = evaluate(method, state.params, "validation")  # No net: all 1.
  assert weights["weight_noisy"] == weights["weight_clean"] == 1.0
  assert weights["loss_noisy"] > 0


def test_both_streams_resume_from_the_iterator_state(data_dir):
  config = small_config(data_dir)
  method = mama.MAMA(config)
  iterator = method.train_iterator(8, 3, 0, 1)
  for _ in range(3):
    next(iterator)
  saved = iterator.get_state()
  assert set(saved) == {"train", "meta"}
  expected = [next(iterator) for _ in range(2)]
  fresh = method.train_iterator(8, 3, 0, 1)
  fresh.set_state(saved)
  for want in expected:
    got = next(fresh)
    for stream in ("train", "meta"):
      for key in want[stream]:
        np.testing.assert_array_equal(got[stream][key], want[stream][key])
  with pytest.raises(ValueError, match="streams"):
    fresh.set_state({"train": saved["train"]})


@pytest.mark.parametrize("paraphrases", [False, True])
def test_cached_splits_give_the_decoded_batches(data_dir, paraphrases):
  """data.cache_features (the default) transforms the train and meta splits
  once into memory; the batches (over an epoch boundary without
  paraphrases) are the ones decoded record by record."""
  batches = {}
  for cache in (False, True):
    config = small_config(
        data_dir,
        **{
            "data.cache_features": cache,
            "data.use_paraphrases": paraphrases,
            "meta.batch_size": 64,
        },
    )
    method = mama.MAMA(config)
    iterator = method.train_iterator(64, 5, 0, 1)
    count = 8 if paraphrases else len(method._pairs("train")) // 64 + 2
    batches[cache] = [next(iterator) for _ in range(count)]
  for want, got in zip(batches[False], batches[True]):
    assert set(got) == set(want) == {"train", "meta"}
    for stream in want:
      assert sorted(got[stream]) == sorted(want[stream])
      for key in want[stream]:
        np.testing.assert_array_equal(got[stream][key], want[stream][key])


def test_bad_input_is_named(data_dir, monkeypatch):
  config = small_config(data_dir)
  method = mama.MAMA(config)
  good = {
      "frames": np.zeros((2, 8, 32, 32), np.uint8),
      "caption": np.array([b"a 3 moves left", b"a zebra flies"]),
      "noisy": np.zeros(2, np.int32),
  }
  out = method.transform(good)
  assert out["tokens"][1, 1] == 1  # "zebra": the unknown token.
  with pytest.raises(ValueError, match="T > 0"):
    method.transform(
        dict(good, frames=np.zeros((2, 0, 32, 32), np.uint8)),
        "av_digits/video_text:train",
    )
  with pytest.raises(ValueError, match="caption 1 of the batch is empty"):
    method.transform(dict(good, caption=np.array([b"a 3", b""])))
  with pytest.raises(ValueError, match="config.optimizer.eps_root > 0"):
    mama.MAMA(small_config(data_dir, **{"optimizer.eps_root": 0.0}))
  with pytest.raises(ValueError, match="config.meta.split='meta_set'"):
    mama.MAMA(
        small_config(data_dir, **{"meta.split": "meta_set"})
    ).train_iterator(8, 0, 0, 1)
  monkeypatch.setattr(jax, "device_count", lambda: 3)
  with pytest.raises(
      ValueError,
      match="config.meta.batch_size=8 is not " "divisible by the 3 devices",
  ):
    method.train_iterator(9, 0, 0, 1)


def test_video_encoder_rejects_zero_frames():
  enc = vt_models.VideoEncoder(
      patch_size=4,
      patch_features=4,
      conv_features=(4,),
      frame_dim=8,
      num_layers=1,
      num_heads=2,
      embed_dim=4,
  )
  with pytest.raises(ValueError, match="zero frames"):
    enc.init(jax.random.PRNGKey(0), jnp.zeros((2, 0, 8, 8), jnp.uint8))
  x = jnp.zeros((2, 3, 8, 8, 3), jnp.uint8)
  params = jax.jit(enc.init)(jax.random.PRNGKey(0), x)
  apply = jax.jit(enc.apply)
  assert apply(params, x, None).shape == (2, 4)
  # A masked frame is never read.
  mask = jnp.array([[True, True, False]] * 2)
  y = x.at[:, 2].set(255)
  np.testing.assert_allclose(
      apply(params, x, mask), apply(params, y, mask), atol=1e-6
  )
  assert not np.allclose(apply(params, x, None), apply(params, y, None))
  with pytest.raises(
      ValueError, match="not divisible by " "config.model.video.patch_size=4"
  ):
    enc.init(jax.random.PRNGKey(0), jnp.zeros((2, 3, 6, 8), jnp.uint8))


def test_evaluate_metrics_and_plot(data_dir, tmp_path):
  config = small_config(data_dir)
  method = mama.MAMA(config)
  batch = next(method.train_iterator(8, 0, 0, 1))
  state, _, _ = _state(method, config, batch)
  result = evaluate(
      method, state.params, "test", plot_dir=str(tmp_path), aux=state.aux
  )
  for key in (
      "r1_text2video",
      "r1_video2text",
      "r10_text2video",
      "medr_text2video",
      "medr_video2text",
      "mc_accuracy",
      "weight_noisy",
      "weight_clean",
      "loss_noisy",
  ):
    assert np.isfinite(result[key]), key
  assert 0.0 <= result["mc_accuracy"] <= 1.0
  assert os.path.getsize(tmp_path / "weight_vs_loss.png") > 1000
  # Validation evaluations report the weights too (without a plot).
  val = evaluate(method, state.params, "validation", aux=state.aux)
  for key in ("weight_clean", "weight_noisy", "weight_auc", "loss_auc"):
    assert np.isfinite(val[key]), key
  # The neutral initial net: every weight 0.5, so no separation.
  assert val["weight_clean"] == val["weight_noisy"] == 0.5
  assert val["weight_auc"] == 0.5


def test_multiple_choice():
  captions = [f"caption {i % 12}" for i in range(30)]
  choices, answers = vt_eval.make_choices(captions, 5, seed=1)
  assert choices.shape == (30, 5)
  for i in range(30):
    assert choices[i, answers[i]] == i
    texts = [captions[j] for j in choices[i]]
    assert len(set(texts)) == 5
  rng = np.random.default_rng(0)
  video = rng.normal(size=(30, 6))
  text = video + 0.8 * rng.normal(size=(30, 6))
  want = np.mean(
      [
          np.argmax(
              [
                  np.dot(video[i], text[j])
                  / np.linalg.norm(video[i])
                  / np.linalg.norm(text[j])
                  for j in choices[i]
              ]
          )
          == answers[i]
          for i in range(30)
      ]
  )
  assert vt_eval.multiple_choice_accuracy(
      video, text, choices, answers
  ) == pytest.approx(want)
  with pytest.raises(ValueError, match="distinct captions"):
    vt_eval.make_choices(["a", "b", "a", "c"], 5)


def test_weight_summary():
  s = vt_eval.weight_summary(
      np.array([0.9, 0.2, 0.1, 0.3]),
      np.array([0, 0, 1, 1]),
      np.array([1.0, 5.0, 4.0, 6.0]),
  )
  # Clean > noisy weight in 3 of the 4 (clean, noisy) pairs (0.2 < 0.3);
  # noisy > clean loss in 3 of 4 (4 < 5).
  assert s == pytest.approx(
      {
          "weight_clean": 0.55,
          "weight_noisy": 0.2,
          "loss_clean": 3.0,
          "loss_noisy": 5.0,
          "weight_gap": 0.35,
          "weight_auc": 0.75,
          "loss_auc": 0.75,
      }
  )
  assert set(vt_eval.weight_summary(np.ones(2), np.zeros(2), np.ones(2))) == {
      "weight_clean",
      "loss_clean",
  }


def test_config_arguments():
  base = load_config_file(_CONFIG, None)
  assert base.meta.enabled and base.loss.margin > 0
  assert base.data.name == "av_digits/video_text"
  c = load_config_file(_CONFIG, "noise=20,infonce,steps=7,seed=2")
  assert c.data.name == "av_digits/video_text_noise20"
  assert not c.meta.enabled and c.loss.margin == 0
  assert c.stages[0].steps == 7 and c.seed == 2
  c = load_config_file(_CONFIG, "longtail,meta_only")
  assert c.data.name == "av_digits/video_text_longtail"
  assert c.meta.enabled and c.loss.margin == 0
  c = load_config_file(_CONFIG, "margin_only")
  assert not c.meta.enabled and c.loss.margin > 0
  with pytest.raises(ValueError, match="noise=30"):
    load_config_file(_CONFIG, "noise=30")
  with pytest.raises(ValueError, match="choose one of infonce"):
    load_config_file(_CONFIG, "infonce,meta_only")
  with pytest.raises(ValueError, match="steps=0"):
    load_config_file(_CONFIG, "steps=0")
