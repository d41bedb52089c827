import os

import jax.numpy as jnp
import numpy as np
import pytest

from avjax.train.checkpoint import CheckpointMismatch
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


def test_shape_mismatch_is_an_error_and_moves_nothing(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "c"))
  for s in (1, 2):
    ckpt.save(s, _tree(s), {"stage": 0, "data_iterator": {}})
  ckpt.close()
  wider = {"w": jnp.zeros((5,), jnp.float32), "step": jnp.int32(0)}
  ckpt = Checkpointer(str(tmp_path / "c"))
  with pytest.raises(CheckpointMismatch) as info:
    ckpt.restore_latest(wider)
  assert "['w']: checkpoint float32[3], model float32[5]" in str(info.value)
  assert str(tmp_path / "c") in str(info.value)
  assert ckpt.all_steps() == [1, 2]
  assert not (tmp_path / "c_damaged").exists()


def test_failed_check_moves_nothing(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "c"))
  ckpt.save(1, _tree(1), {"stage": 0, "data_iterator": {}, "config": {"a": 1}})
  ckpt.close()

  def check(step, meta):
    raise CheckpointMismatch(f"step {step}: config {meta['config']}")

  ckpt = Checkpointer(str(tmp_path / "c"))
  with pytest.raises(CheckpointMismatch, match="step 1: config {'a': 1}"):
    ckpt.restore_latest(_tree(0), check=check)
  assert ckpt.all_steps() == [1]


def _saved_steps_1_and_2(tmp_path):
  """A Checkpointer (no retry delay) holding steps 1 and 2, and its restore."""
  ckpt = Checkpointer(str(tmp_path / "c"), retry_delay_s=0.0)
  for s in (1, 2):
    ckpt.save(s, _tree(s), {"stage": 0, "data_iterator": {}})
  ckpt.wait_until_finished()
  return ckpt, ckpt._manager.restore


def test_transient_read_error_is_retried_not_moved(tmp_path, monkeypatch):
  ckpt, real_restore = _saved_steps_1_and_2(tmp_path)
  failures = []

  def flaky_restore(step, *args, **kwargs):
    if not failures:  # The first read of anything fails once.
      failures.append(step)
      raise OSError("transient: connection reset")
    return real_restore(step, *args, **kwargs)

  monkeypatch.setattr(ckpt._manager, "restore", flaky_restore)
  step, tree, _ = ckpt.restore_latest(_tree(0))
  assert failures == [2] and step == 2
  np.testing.assert_allclose(tree["w"], 2.0)
  assert ckpt.all_steps() == [1, 2]
  assert not (tmp_path / "c_damaged").exists()
  ckpt.close()


def test_persistent_read_error_moves_aside_after_retry(tmp_path, monkeypatch):
  ckpt, real_restore = _saved_steps_1_and_2(tmp_path)
  attempts = []

  def broken_step_2(step, *args, **kwargs):
    if step == 2:
      attempts.append(step)
      raise OSError("unreadable")
    return real_restore(step, *args, **kwargs)

  monkeypatch.setattr(ckpt._manager, "restore", broken_step_2)
  step, _, _ = ckpt.restore_latest(_tree(0))
  assert step == 1 and attempts == [2, 2]  # tried twice before moving
  assert (tmp_path / "c_damaged" / "2").is_dir()
  ckpt.close()
