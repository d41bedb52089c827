"""launch/bench_train.py: the analytic FLOP count and an end-to-end run."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import launch_modules  # pylint: disable=wrong-import-position

bench_train = launch_modules.load("bench_train")


def test_matmul_flops_by_hand():
  x, w = jnp.ones((8, 5)), jnp.ones((5, 3))
  jaxpr = jax.make_jaxpr(lambda x, w: x @ w)(x, w)
  assert bench_train.matmul_conv_flops(jaxpr) == 2 * 8 * 5 * 3
  # Forward plus one transposed product per differentiated input.
  grad = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(x @ w)))(w)
  assert bench_train.matmul_conv_flops(grad) == 2 * (2 * 8 * 5 * 3)
  both = jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(x @ w), argnums=(0, 1)))(
      x, w
  )
  assert bench_train.matmul_conv_flops(both) == 3 * (2 * 8 * 5 * 3)


def test_batched_matmul_inside_jit_and_scan():
  a, b = jnp.ones((4, 6, 7)), jnp.ones((4, 7, 2))
  jaxpr = jax.make_jaxpr(
      jax.jit(lambda a, b: jnp.einsum("bij,bjk->bik", a, b))
  )(a, b)
  assert bench_train.matmul_conv_flops(jaxpr) == 2 * 4 * 6 * 7 * 2

  def body(c, _):
    return c @ jnp.ones((3, 3)), None

  scan = jax.make_jaxpr(lambda c: jax.lax.scan(body, c, None, length=5))(
      jnp.ones((2, 3))
  )
  assert bench_train.matmul_conv_flops(scan) == 5 * 2 * 2 * 3 * 3


def test_conv_flops_by_hand():
  x = jnp.ones((2, 10, 10, 3))  # NHWC
  k = jnp.ones((3, 3, 3, 8))  # HWIO
  conv = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  jaxpr = jax.make_jaxpr(conv)(x, k)
  # Each of the 2*10*10*8 outputs takes 3*3*3 multiply-adds.
  assert bench_train.matmul_conv_flops(jaxpr) == 2 * (2 * 10 * 10 * 8) * 27


def test_strided_conv_input_gradient_counts_only_real_products():
  x = jnp.ones((2, 16, 16, 4))
  k = jnp.ones((3, 3, 4, 8))

  def conv(x):
    return jax.lax.conv_general_dilated(
        x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )

  forward = 2 * (2 * 8 * 8 * 8) * (3 * 3 * 4)  # 8x8 outputs, 36 taps
  assert bench_train.matmul_conv_flops(jax.make_jaxpr(conv)(x)) == forward
  # The input gradient pairs each output gradient with each tap once more
  # (a conv with lhs dilation 2: 3 in 4 of its taps meet inserted zeros).
  grad = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(conv(x))))(x)
  assert bench_train.matmul_conv_flops(grad) == 2 * forward


@pytest.mark.parametrize("flag", ["--batch_size=0", "--profile_steps=0"])
def test_bad_flag_values_name_the_flag(flag):
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "bench_train.py"), flag],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert out.returncode != 0
  assert f"flag {flag}: 0 is not a positive integer" in out.stderr


@pytest.mark.slow
def test_bench_runs_on_a_quick_config(tmp_path, av_digits_pairs_dir):
  out_json = tmp_path / "bench.json"
  out = launch_modules.run(
      "bench_train",
      "--configs=configs/tstl_ca.py:quick",
      "--rounds=2",
      "--steps=1",
      "--pipeline_batches=3",
      "--peak_n=256",
      f"--data_dir={av_digits_pairs_dir}",
      f"--out={out_json}",
      f"--profile_dir={tmp_path / 'traces'}",
      "--profile_steps=1",
      "--batch_size=24",
      timeout=900,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "| configs/tstl_ca.py:quick [semihard] |" in out.stdout
  assert "| configs/tstl_ca.py:quick [curriculum] |" in out.stdout
  assert "Every config's data.batch_size set to 24." in out.stdout
  result = json.loads(out_json.read_text())
  assert result["peak_gflops"] > 0
  for row in result["rows"]:
    assert row["step_ms"] > 0 and row["analytic_gflop"] > 0
    assert 0 < row["mfu_analytic"] < 2 and row["pipeline_batches_per_s"] > 0
    assert row["examples_per_s"] * row["step_ms"] / 1e3 == pytest.approx(24)
    # The traced step: the encoders' convolutions and the embedding
    # distances are there, and its operations add up to no more than two
    # cores' time over (a generous bound on) the step.
    by_category = row["profile_ms_by_category"]
    assert by_category["convolution"] > 0 and by_category["matmul"] > 0
    assert sum(by_category.values()) < 2 * 2 * row["step_ms"] + 50
  assert "### configs/tstl_ca.py:quick [semihard]" in out.stdout
  assert "| category | ms | share |" in out.stdout
  traces = list((tmp_path / "traces").rglob("perfetto_trace.json.gz"))
  assert len(traces) == 2, traces
