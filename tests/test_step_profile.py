"""avjax.train.step_profile: HLO categories, self times, a traced run."""

import jax
import jax.numpy as jnp
import pytest

from avjax.train import step_profile

_HLO = """\
HloModule jit_f, is_scheduled=true

%fused_conv (p0: f32[2,8,8,3], p1: f32[3,3,3,4]) -> f32[2,8,8,4] {
  %p0 = f32[2,8,8,3]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,3,4]{3,2,1,0} parameter(1)
  ROOT %convolution.1 = f32[2,8,8,4]{3,2,1,0} convolution(%p0, %p1), \
window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, \
metadata={op_name="jit(f)/conv_general_dilated"}
}

%fused_reduce (p0.1: f32[2,8,8,4]) -> f32[2] {
  %p0.1 = f32[2,8,8,4]{3,2,1,0} parameter(0)
  %c = f32[] constant(0)
  %exp.1 = f32[2,8,8,4]{3,2,1,0} exponential(%p0.1), \
metadata={op_name="jit(f)/exp"}
  ROOT %reduce.1 = f32[2]{0} reduce(%exp.1, %c), dimensions={1,2,3}, \
to_apply=%add
}

%fused_tanh (p0.2: f32[2,8]) -> f32[2,8] {
  %p0.2 = f32[2,8]{1,0} parameter(0)
  ROOT %tanh.1 = f32[2,8]{1,0} tanh(%p0.2), metadata={op_name="jit(f)/tanh"}
}

%fused_copy (p0.3: f32[8,2]) -> f32[2,8] {
  %p0.3 = f32[8,2]{1,0} parameter(0)
  ROOT %transpose.1 = f32[2,8]{1,0} transpose(%p0.3), dimensions={1,0}
}

%body (t: (s32[], f32[2,8])) -> (s32[], f32[2,8]) {
  %t = (s32[], f32[2,8]{1,0}) parameter(0)
  %x = f32[2,8]{1,0} get-tuple-element(%t), index=1
  %w = f32[8,8]{1,0} constant({...})
  %dot.3 = f32[2,8]{1,0} dot(%x, %w), lhs_contracting_dims={1}, \
rhs_contracting_dims={0}, metadata={op_name="jit(f)/while/body/dot_general"}
  %i = s32[] get-tuple-element(%t), index=0
  ROOT %tuple.2 = (s32[], f32[2,8]{1,0}) tuple(%i, %dot.3)
}

ENTRY %main (a: f32[2,8,8,3], k: f32[3,3,3,4], v: f32[100]) -> f32[2] {
  %a = f32[2,8,8,3]{3,2,1,0} parameter(0)
  %k = f32[3,3,3,4]{3,2,1,0} parameter(1)
  %v = f32[100]{0} parameter(2)
  %conv_fusion = f32[2,8,8,4]{3,2,1,0} fusion(%a, %k), kind=kCustom, \
calls=%fused_conv
  %sort.7 = f32[100]{0} sort(%v), dimensions={0}, to_apply=%lt, \
metadata={op_name="jit(f)/sort"}
  %loop = (s32[], f32[2,8]{1,0}) while(%init), condition=%cond, body=%body
  %tanh_fusion = f32[2,8]{1,0} fusion(%g), kind=kLoop, calls=%fused_tanh
  %copy_fusion = f32[2,8]{1,0} fusion(%h), kind=kLoop, calls=%fused_copy
  ROOT %reduce_fusion = f32[2]{0} fusion(%conv_fusion), kind=kInput, \
calls=%fused_reduce
}
"""


def test_hlo_ops_names_what_each_instruction_does():
  ops = step_profile.hlo_ops(_HLO)
  expected = {
      "conv_fusion": "convolution",
      "sort.7": "sort",
      "loop": "loop",
      "dot.3": "matmul",
      "tanh_fusion": "elementwise fusion",
      "copy_fusion": "data movement",
      "reduce_fusion": "reduction fusion",
  }
  assert {name: ops[name].category for name in expected} == expected
  assert ops["sort.7"].source == "jit(f)/sort"
  # A fusion without its own op_name takes its contents'.
  assert ops["conv_fusion"].source == "jit(f)/conv_general_dilated"
  assert ops["loop"].opcode == "while"


def test_hlo_ops_rejects_text_without_instructions():
  with pytest.raises(ValueError, match="no HLO instruction"):
    step_profile.hlo_ops("not an HLO module")


def _event(name, ts, dur, tid=1):
  return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": tid}


def test_self_times_subtract_nested_events_on_the_same_thread():
  events = [
      _event("loop", 0, 100),  # holds a (10-30) and b (40-90, holding c)
      _event("a", 10, 20),
      _event("b", 40, 50),
      _event("c", 50, 15),
      _event("a", 200, 5),  # a second call of a
      _event("d", 20, 30, tid=2),  # another thread: not nested in loop
      _event("unnamed", 0, 1000),  # not an HLO instruction: ignored
      {"ph": "M", "name": "thread_name", "pid": 0, "tid": 1},
  ]
  times = step_profile.self_times_us(events, ["loop", "a", "b", "c", "d"])
  assert times == {"loop": 30, "a": 25, "b": 35, "c": 15, "d": 30}


def test_profile_of_a_matmul_heavy_function(tmp_path):
  def f(x, w):
    return jnp.tanh(x @ w).sum() + jnp.sin(x[:8]).sum()

  args = (jnp.ones((768, 768)), jnp.ones((768, 768)) / 768)
  compiled = jax.jit(f).lower(*args).compile()
  profile = step_profile.profile_compiled(
      compiled, args, steps=2, trace_dir=str(tmp_path)
  )
  assert profile.steps == 2
  categories = dict(profile.by_category())
  # A 768^3 product against elementwise work on 768^2 + 8x768 values.
  assert max(categories, key=categories.get) == "matmul"
  assert 0 < sum(categories.values()) < 3 * profile.wall_ms
  top, ms = profile.top_ops(1)[0]
  assert top.category == "matmul" and ms == categories["matmul"]
  text = step_profile.format_profile(profile, top=3)
  assert "| matmul |" in text and "dot_general" in text


def test_profile_carries_outputs_into_the_next_call(tmp_path):
  seen = []
  compiled = jax.jit(lambda x: x + 1.0).lower(jnp.zeros(3)).compile()

  def carry(out, args):
    seen.append(float(out[0]))
    return (out,)

  step_profile.profile_compiled(
      compiled, (jnp.zeros(3),), steps=3, trace_dir=str(tmp_path), carry=carry
  )
  assert seen == [1.0, 2.0, 3.0, 4.0]  # one untraced call, then three


def test_missing_trace_names_the_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    step_profile.read_trace_events(str(tmp_path))


def test_steps_must_be_positive(tmp_path):
  compiled = jax.jit(lambda x: x).lower(jnp.zeros(1)).compile()
  with pytest.raises(ValueError, match="steps"):
    step_profile.profile_compiled(compiled, (jnp.zeros(1),), 0, str(tmp_path))
