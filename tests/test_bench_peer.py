"""launch/bench_peer.py: the pure helpers (always) and, where PyTorch is
installed (the [bench] extra; CI has none), the twins' agreement with avjax
on tiny shapes."""

from __future__ import annotations

import os
import types

import jax
import numpy as np
import pytest

from avjax import config_utils
from avjax import methods
from avjax.train.state import TrainState

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from launch_modules import load  # pylint: disable=wrong-import-position

bench_peer = load("bench_peer")


@pytest.mark.parametrize("size", [5, 6, 7, 8, 101])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (4, 2)])
def test_same_padding_reproduces_xla_same(size, kernel, stride):
  x = np.random.default_rng(size).normal(size=(1, size, 1)).astype(np.float32)
  w = (
      np.random.default_rng(kernel)
      .normal(size=(kernel, 1, 1))
      .astype(np.float32)
  )
  conv = lambda padding: jax.lax.conv_general_dilated(
      x, w, (stride,), padding, dimension_numbers=("NWC", "WIO", "NWC")
  )
  lo, hi = bench_peer.same_padding(size, kernel, stride)
  np.testing.assert_array_equal(conv([(lo, hi)]), conv("SAME"))


def test_layouts_and_errors():
  dense = np.arange(6.0).reshape(2, 3)  # [in, out]
  np.testing.assert_array_equal(
      bench_peer.to_torch_layout(dense, "dense"), dense.T
  )
  conv = np.zeros((3, 5, 2, 4))  # [kh, kw, in, out]
  assert bench_peer.to_torch_layout(conv, "conv").shape == (4, 2, 3, 5)
  heads = np.arange(24.0).reshape(4, 2, 3)  # [D, H, d]
  q = bench_peer.to_torch_layout(heads, "heads_in")
  assert q.shape == (6, 4) and q[5, 1] == heads[1, 1, 2]
  out = np.arange(24.0).reshape(2, 3, 4)  # [H, d, D]
  o = bench_peer.to_torch_layout(out, "heads_out")
  assert o.shape == (4, 6) and o[3, 4] == out[1, 1, 3]
  with pytest.raises(ValueError, match="unknown parameter kind"):
    bench_peer.to_torch_layout(dense, "conv3d")
  assert bench_peer.relative_error(np.array([2.0, -4.0]), [2.0, -3.0]) == 0.25
  errors = bench_peer.grad_errors(
      {"a": np.array([1.0, 2.0]), "b": np.array([0.0, 1e-9])},
      {"a": np.array([1.0, 2.2]), "b": np.array([0.0, 2e-9])},
  )
  # b is zero up to rounding: measured against 1e-4 of the largest (2.0).
  assert errors["a"] == pytest.approx(0.1) and errors["b"] < 1e-5
  with pytest.raises(ValueError, match=r"\['c'\]"):
    bench_peer.grad_errors({"a": np.ones(1)}, {"a": np.ones(1), "c": 1})


def test_markdown_table_has_the_ratio():
  row = {
      "step": "TSTL-CA",
      "variant": "eager",
      "batch": 128,
      "avjax_ms": 20.0,
      "torch_ms": 50.0,
      "loss_error": 1e-7,
      "grad_error": 2e-6,
      "grad_error_param": "x/kernel",
  }
  table = bench_peer.markdown_table([row, dict(row, torch_ms=None)])
  assert "| 20.0 | 50.0 | 2.50× |" in table and "| — | — |" in table


def _tiny_tstl_ca():
  from avjax.methods.tstl_ca import TSTLCA  # pylint: disable=g-import-not-at-top

  config = config_utils.load_config_file(
      os.path.join(ROOT, "configs", "tstl_ca.py"), "quick"
  )
  config.model.embed_dim = 8
  config.model.audio_kwargs.update({"features": (8, 16), "hidden_dim": 16})
  config.model.visual_kwargs.update({"features": (4, 8, 8), "hidden_dim": 16})
  rng = np.random.default_rng(0)
  n = 12
  visual = rng.uniform(size=(n, 16, 16, 1)).astype(np.float32)
  visual[5] = visual[1]  # Same label, tied distances: shared gradients.
  batch = {
      # Even lengths: "SAME" pads asymmetrically at stride 2.
      "audio": (3 * rng.normal(size=(n, 20, 10)) - 8).astype(np.float32),
      "visual": visual,
      "label": (np.arange(n) % 4).astype(np.int32),
  }
  method = TSTLCA(config)
  return method, method.init_params(jax.random.PRNGKey(0), batch), batch


def test_tstl_ca_twin_agrees_with_avjax():
  pytest.importorskip("torch")
  method, params, batch = _tiny_tstl_ca()
  result = bench_peer.tstl_ca_agreement(method, params, batch)
  close = result["avjax_vs_torch32"]
  assert close["loss"] < 1e-6, close
  # Against the float64 twin, avjax's gradients are as close as PyTorch's
  # float32 ones. Conv biases before a GroupNorm have near-zero gradients
  # (cancellations), so their relative error is float32 rounding and both
  # sides miss by up to ~1e-2; everything else agrees to 1e-3.
  avjax = result["avjax_vs_float64"]["grads"]
  torch32 = result["torch32_vs_float64"]["grads"]
  worse = {
      k: (e, torch32[k])
      for k, e in avjax.items()
      if e > max(1e-3, 3 * torch32[k])
  }
  assert not worse, worse
  assert result["values"]["avjax_loss"] > 0


def test_tstl_ca_twin_step_runs_and_updates():
  torch = pytest.importorskip("torch")
  method, params, batch = _tiny_tstl_ca()
  flat = bench_peer.flatten(jax.device_get(params))
  twin = bench_peer.TSTLCATwin(flat, 0.2)
  bench_peer.load(twin, flat)
  before = [p.detach().clone() for p in twin.parameters()]
  step = bench_peer.tstl_ca_torch_step(twin, batch, 1e-3)
  loss = step()
  assert torch.isfinite(loss)
  assert any(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))


def _tiny_mama():
  from avjax.methods import mama  # pylint: disable=g-import-not-at-top

  config = config_utils.load_config_file(
      os.path.join(ROOT, "configs", "mama.py"), "quick"
  )
  config.model.embed_dim = 16
  config.model.video.update(
      {
          "patch_features": 8,
          "frame_dim": 16,
          "num_layers": 1,
          "num_heads": 2,
          "max_frames": 4,
      }
  )
  config.model.text.update({"width": 16, "num_layers": 1, "num_heads": 2})
  config.meta.net.hidden_dims = (8,)
  config.data.max_tokens = 10
  method = mama.MAMA(config)
  # The dataset's tokenizer only sizes the token table here.
  method.__dict__["tokenizer"] = types.SimpleNamespace(vocab_size=20)

  def pairs(seed, n=6):
    rng = np.random.default_rng(seed)
    frame_mask = np.ones((n, 4), bool)
    frame_mask[1, 3:] = False
    lengths = rng.integers(3, 11, n)
    return {
        "frames": rng.integers(0, 256, (n, 4, 8, 8), dtype=np.uint8),
        "frame_mask": frame_mask,
        "tokens": rng.integers(0, 20, (n, 10)).astype(np.int32),
        "token_mask": np.arange(10)[None] < lengths[:, None],
        "noisy": np.zeros(n, np.int32),
    }

  batch = {"train": pairs(1), "meta": pairs(2)}
  run = methods.RunInfo.from_config(config)
  params = method.init_params(jax.random.PRNGKey(0), batch)
  state = TrainState.create(
      params,
      method.make_optimizer(run.stages[0], run),
      jax.random.PRNGKey(1),
      aux=method.init_aux(jax.random.PRNGKey(0), params),
  )
  return method, state, batch


def test_mama_twin_agrees_with_avjax_bilevel():
  pytest.importorskip("torch")
  method, state, batch = _tiny_mama()
  # The initial net's output layer is zero (hidden layers then get no
  # meta-gradient); a random one makes every gradient count.
  from avjax.train import bilevel  # pylint: disable=g-import-not-at-top

  meta = state.aux[bilevel.META_KEY]
  out = meta["params"]["params"]["out"]
  rng = np.random.default_rng(3)
  out = jax.tree_util.tree_map(
      lambda x: rng.normal(size=x.shape).astype(np.float32), out
  )
  net = {"params": {**meta["params"]["params"], "out": out}}
  state = state.replace(
      aux={**state.aux, bilevel.META_KEY: {**meta, "params": net}}
  )
  result = bench_peer.mama_agreement(method, state, batch, lr=1e-2)
  close = result["avjax_vs_torch32"]
  assert close["loss"] < 1e-5 and close["meta_loss"] < 1e-5, close
  meta = {k: e for k, e in close["grads"].items() if k.startswith("meta/")}
  assert len(meta) == 4 and max(meta.values()) < 1e-4, meta
  # Attention key biases have zero gradient up to rounding (a constant
  # added to every logit of a row); everything else agrees closely.
  others = {
      k: e for k, e in close["grads"].items() if not k.endswith("key/bias")
  }
  assert max(others.values()) < 1e-4, others


def test_mama_torch_step_runs():
  torch = pytest.importorskip("torch")
  method, state, batch = _tiny_mama()
  from avjax.methods import mama  # pylint: disable=g-import-not-at-top
  from avjax.train import bilevel  # pylint: disable=g-import-not-at-top

  params = dict(jax.device_get(state.params))
  params[bench_peer.WEIGHT_NET] = jax.device_get(
      state.aux[bilevel.META_KEY]["params"]
  )
  model, weights = bench_peer.mama_twins(method, params)
  phi = [p.detach().clone() for p in weights.parameters()]
  step = bench_peer.mama_torch_step(
      model, weights, batch["train"], batch["meta"], 1e-2, method.config
  )
  assert torch.isfinite(step())
  assert any(not torch.equal(a, b) for a, b in zip(phi, weights.parameters()))
