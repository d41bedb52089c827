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


def _toy_embed(params, a, b):
  return jnp.tanh(a @ params["w"]), jnp.tanh(b @ params["w"]) * 2.0


def test_single_process_embed_equals_plain_loop():
  rng = np.random.default_rng(0)
  data = {
      "audio": rng.normal(size=(23, 4)).astype(np.float32),
      "visual": rng.normal(size=(23, 4)).astype(np.float32),
  }
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
  out = sharded.sharded_embed(jax.jit(_toy_embed), params, data, 5)
  want_a, want_b = _toy_embed(params, data["audio"], data["visual"])
  np.testing.assert_allclose(out["audio"], want_a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["visual"], want_b, rtol=1e-5, atol=1e-6)


def test_sharded_map_keeps_real_rows_of_padded_batches():
  data = np.arange(23, dtype=np.float32)[:, None]

  def make_batch(i, j):  # padded to 5 rows, as methods with fixed shapes do
    rows = data[i:j]
    return np.concatenate([rows, np.repeat(rows[-1:], 5 - len(rows), 0)]), j - i

  out = sharded.sharded_map(
      lambda p, b: {"double": b * p, "sum": b.sum(1)}, 2.0, 23, make_batch, 5
  )
  np.testing.assert_array_equal(out["double"], 2 * data)
  np.testing.assert_array_equal(out["sum"], data[:, 0])
  assert sharded.gather_strings(["a", "b"], 2) == ["a", "b"]


_TWO_PROCESS_SCRIPT = """
import json, sys
import jax
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from avjax.eval import sharded

rng = np.random.default_rng(0)
data = {"audio": rng.normal(size=(23, 4)).astype(np.float32),
        "visual": rng.normal(size=(23, 4)).astype(np.float32)}
w = rng.normal(size=(4, 3)).astype(np.float32)
mesh = Mesh(np.asarray(jax.devices()), ("data",))
params = {"w": jax.device_put(w, NamedSharding(mesh, P()))}  # global
seen = []

def embed(p, a, b):
  seen.append(len(a))
  return np.tanh(a @ np.asarray(p["w"])), np.tanh(b @ np.asarray(p["w"])) * 2
out = sharded.sharded_embed(embed, params, data, 5)
lo, hi = sharded.process_block(23)
text = sharded.gather_strings(["row %d " % i + "é" * i for i in range(lo, hi)], 23)
print(json.dumps({"rows": sum(seen), "audio": out["audio"].tolist(),
                  "visual": out["visual"].tolist(), "text": text}))
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
