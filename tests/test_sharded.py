"""Sharded evaluation: each process embeds its block, all get every row."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.eval import sharded


@pytest.mark.parametrize("n", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_process_blocks_cover_every_row_once(n, count):
  rows = []
  for index in range(count):
    lo, hi = sharded.process_block(n, index, count)
    assert 0 <= lo <= hi <= n
    rows += list(range(lo, hi))
  assert rows == list(range(n))


def test_row_slice():
  view = sharded.RowSlice(list(range(10)), 3, 7)
  assert len(view) == 4 and [view[i] for i in range(4)] == [3, 4, 5, 6]
  with pytest.raises(IndexError):
    view[4]  # pylint: disable=pointless-statement
  with pytest.raises(ValueError, match="outside a source of 10 rows"):
    sharded.RowSlice(list(range(10)), 3, 11)


def _toy_embed(params, inputs):
  w = params["w"]
  return {
      "audio": jnp.tanh(inputs["audio"] @ w),
      "visual": jnp.tanh(inputs["visual"] @ w) * 2.0,
  }


def _records(n):
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(n, 4)).astype(np.float32)
  visual = rng.normal(size=(n, 4)).astype(np.float32)
  return [
      {
          "audio": audio[i],
          "visual": visual[i],
          "label": np.int32(i % 3),
          "caption": f"row {i} " + "é" * i,
      }
      for i in range(n)
  ]


def _prepare(batch):
  return {"audio": batch["audio"], "visual": batch["visual"]}, {
      "label": batch["label"],
      "caption": batch["caption"],
  }


def test_single_process_map_split_equals_plain_loop():
  rows = _records(23)
  params = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)))}
  calls = []

  def embed(p, inputs):
    calls.append({k: v.shape for k, v in inputs.items()})
    return _toy_embed(p, inputs)

  out = sharded.map_split(embed, params, rows, _prepare, 5)
  audio = np.stack([r["audio"] for r in rows])
  visual = np.stack([r["visual"] for r in rows])
  want = _toy_embed(params, {"audio": audio, "visual": visual})
  np.testing.assert_allclose(out["audio"], want["audio"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      out["visual"], want["visual"], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_array_equal(out["label"], np.arange(23) % 3)
  assert out["caption"] == [r["caption"] for r in rows]
  # Every call sees one shape: the last batch is padded to 5 rows.
  assert len(calls) == 5 and all(c["audio"] == (5, 4) for c in calls)


def test_a_split_shorter_than_the_batch_is_padded_to_the_batch():
  # One call shape for every split length and process count (the padded
  # shape is what keeps P processes' evaluation equal to one's).
  rows = _records(7)
  calls = []

  def embed(p, inputs):
    calls.append(inputs["audio"].shape)
    return _toy_embed(p, inputs)

  params = {"w": jnp.ones((4, 3))}
  out = sharded.map_split(embed, params, rows, _prepare, 16)
  assert calls == [(16, 4)] and out["audio"].shape == (7, 3)
  np.testing.assert_allclose(  # float rounding of another batch shape
      out["audio"],
      _toy_embed(params, _prepare(sharded.stack_records(rows))[0])["audio"],
      rtol=1e-6,
  )


def test_stack_records_decodes_text_and_stacks_arrays():
  batch = sharded.stack_records(
      [{"x": np.ones(2), "t": b"caf\xc3\xa9"}, {"x": np.zeros(2), "t": "b"}]
  )
  assert batch["t"] == ["café", "b"]
  np.testing.assert_array_equal(batch["x"], [[1, 1], [0, 0]])


def test_map_split_rejects_an_empty_split():
  with pytest.raises(ValueError, match="empty split"):
    sharded.map_split(_toy_embed, {}, [], _prepare, 4)


_TWO_PROCESS_SCRIPT = """
import json, sys
import jax
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from avjax.eval import sharded

rng = np.random.default_rng(0)
audio = rng.normal(size=(23, 4)).astype(np.float32)
visual = rng.normal(size=(23, 4)).astype(np.float32)
rows = [{"audio": audio[i], "visual": visual[i], "caption": "row %d " % i + "é" * i}
        for i in range(23)]
w = rng.normal(size=(4, 3)).astype(np.float32)
mesh = Mesh(np.asarray(jax.devices()), ("data",))
params = {"w": jax.device_put(w, NamedSharding(mesh, P()))}  # global
seen = []

def embed(p, x):
  seen.append(x["audio"].shape[0])
  return {"audio": np.tanh(x["audio"] @ np.asarray(p["w"])),
          "visual": np.tanh(x["visual"] @ np.asarray(p["w"])) * 2}

def prepare(batch):
  seen_rows.append(len(batch["audio"]))
  return {"audio": batch["audio"], "visual": batch["visual"]}, {
      "caption": batch["caption"]}

seen_rows = []
out = sharded.map_split(embed, params, rows, prepare, 5)
print(json.dumps({"rows": sum(seen_rows), "audio": out["audio"].tolist(),
                  "visual": out["visual"].tolist(), "text": out["caption"]}))
"""


def test_two_processes_embed_half_each_and_gather_all(tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="--xla_force_host_platform_device_count=2",
  )
  procs = [
      subprocess.Popen(
          [
              sys.executable,
              "-c",
              _TWO_PROCESS_SCRIPT,
              f"127.0.0.1:{port}",
              str(i),
          ],
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for i in range(2)
  ]
  results = []
  for p in procs:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  assert [r["rows"] for r in results] == [12, 11]  # each its own block
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(23, 4)).astype(np.float32)
  visual = rng.normal(size=(23, 4)).astype(np.float32)
  w = rng.normal(size=(4, 3)).astype(np.float32)
  for r in results:  # every process holds every row, in split order
    np.testing.assert_allclose(r["audio"], np.tanh(audio @ w), rtol=1e-6)
    np.testing.assert_allclose(r["visual"], np.tanh(visual @ w) * 2, rtol=1e-6)
    assert r["text"] == ["row %d " % i + "é" * i for i in range(23)]
