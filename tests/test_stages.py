import jax
import jax.numpy as jnp
import ml_collections
import pytest

from avjax.train.stages import StageScheduler, batches_per_step


def _scheduler():
  return StageScheduler(
      [
          ml_collections.ConfigDict({"name": "a", "steps": 3, "k": 1}),
          {"name": "b", "steps": 5, "k": 2},
      ]
  )


def test_boundaries_and_total():
  s = _scheduler()
  assert s.total_steps == 8 and len(s) == 2
  assert [s.stage_at(i).name for i in range(9)] == ["a"] * 3 + ["b"] * 6
  assert s[1].start == 3 and s[1].end == 8
  assert s[1].options.k == 2  # plain dicts become ConfigDicts


def test_progress_python_and_traced():
  stage = _scheduler()[1]
  assert stage.progress(3) == 0.0 and stage.progress(100) == 1.0
  assert stage.progress(5) == pytest.approx(0.4)
  traced = jax.jit(stage.progress)(jnp.int32(5))
  assert float(traced) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "stages, match",
    [
        ([], "empty"),
        ([{"name": "a"}], "no `steps`"),
        ([{"steps": 3}], "no `name`"),
        ([{"name": "a", "steps": 0}], r"stages\[0\].steps=0"),
    ],
)
def test_bad_stages(stages, match):
  with pytest.raises(ValueError, match=match):
    StageScheduler(stages)


def test_batches_per_step_from_each_stages_batch_size():
  s = StageScheduler(
      [{"name": "a", "steps": 2}, {"name": "b", "steps": 2, "batch_size": 96}]
  )
  assert batches_per_step(s, 32) == (1, 3)
  assert batches_per_step(s, 96) == (1, 1)


@pytest.mark.parametrize("size", [48, 16, 0])
def test_stage_batch_size_not_a_multiple_names_the_key(size):
  s = StageScheduler(
      [{"name": "a", "steps": 2}, {"name": "b", "steps": 2, "batch_size": size}]
  )
  with pytest.raises(ValueError) as err:
    batches_per_step(s, 32)
  msg = str(err.value)
  assert f"config.stages[1].batch_size={size}" in msg
  assert "config.data.batch_size=32" in msg and "'b'" in msg
