import os

import jax.numpy as jnp
import numpy as np

from avjax.train.checkpoint import Checkpointer


def _tree(v):
  return {"w": jnp.full((3,), v, jnp.float32), "step": jnp.int32(v)}


def test_save_restore_latest_and_max_to_keep(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "c"), max_to_keep=2)
  for s in (1, 2, 3):
    ckpt.save(s, _tree(s), {"stage": s, "data_iterator": {"next_index": s}})
  ckpt.wait_until_finished()
  assert ckpt.all_steps() == [2, 3]
  step, tree, meta = ckpt.restore_latest(_tree(0))
  assert step == 3 and meta["data_iterator"] == {"next_index": 3}
  np.testing.assert_allclose(tree["w"], 3.0)
  ckpt.close()


def test_empty_directory_restores_nothing(tmp_path):
  assert Checkpointer(str(tmp_path / "c")).restore_latest(_tree(0)) is None


def test_damaged_checkpoint_is_moved_aside(tmp_path, caplog):
  ckpt = Checkpointer(str(tmp_path / "c"), max_to_keep=3)
  for s in (1, 2):
    ckpt.save(s, _tree(s), {"stage": 0, "data_iterator": {}})
  ckpt.close()
  meta_dir = tmp_path / "c" / "2" / "meta"
  for name in os.listdir(meta_dir):
    if name.endswith(".json") or name == "metadata":
      (meta_dir / name).write_text("{not json")
  ckpt = Checkpointer(str(tmp_path / "c"))
  with caplog.at_level("WARNING"):
    step, tree, _ = ckpt.restore_latest(_tree(0))
  assert step == 1
  np.testing.assert_allclose(tree["w"], 1.0)
  assert "step 2" in caplog.text and "damaged" in caplog.text
  assert (tmp_path / "c_damaged" / "2").is_dir()
  assert ckpt.all_steps() == [1]
