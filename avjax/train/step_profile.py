"""Where a compiled step spends its time, per XLA operation, from a trace.

``profile_compiled`` runs a compiled function under ``jax.profiler.trace``
(with its Perfetto JSON export), reads back each XLA operation's time from
the trace and names what each one is from the compiled HLO: a matrix
multiply, a convolution, a sort, an elementwise or reduction fusion, and so
on. On CPU each executed HLO instruction (a fusion, a dot, a loop) is one
event on an XLA thread, named as the instruction is in ``compiled.as_text()``.

Times are self times (an enclosing loop's event minus the events inside it,
on the same thread), summed over the threads that ran them; independent
operations may run on both cores at once, so the sum can exceed the wall
time of the step.

  compiled = jax.jit(step).lower(state, batch).compile()
  profile = step_profile.profile_compiled(
      compiled, (state, batch), steps=3, trace_dir="/tmp/trace")
  print(step_profile.format_profile(profile, top=10))
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

# An instruction line: `[ROOT] %name = <type> opcode(...)`; the type is a
# shape like f32[8,3]{1,0} or a parenthesised tuple of shapes.
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+) = (?:\(.*?\)|\S+) "
    r"(?P<opcode>[a-z][\w\-]*)\((?P<rest>.*)$"
)
# A computation header: `[ENTRY] %name (params) -> type {`.
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%(?P<name>[\w.\-]+) .*\{\s*$")
_CALLS = re.compile(r"calls=%(?P<callee>[\w.\-]+)")
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]*)"')

# Categories named by an opcode found in the instruction or its fusion, in
# priority order (a fusion holding a convolution is a convolution).
_BY_OPCODE = (
    ("convolution", "convolution"),
    ("dot", "matmul"),
    ("sort", "sort"),
    ("scatter", "scatter"),
    ("select-and-scatter", "select-and-scatter"),
    ("reduce-window", "reduce-window"),
    ("gather", "gather"),
    ("custom-call", "custom-call"),
    ("all-reduce", "collective"),
    ("all-gather", "collective"),
    ("reduce-scatter", "collective"),
    ("collective-permute", "collective"),
    ("all-to-all", "collective"),
)
_KEY_OPCODE = {category: opcode for opcode, category in _BY_OPCODE}
_CONTROL = {"while": "loop", "conditional": "conditional", "call": "call"}
_DATA_MOVEMENT = {"copy", "transpose", "dynamic-update-slice", "concatenate"}


@dataclasses.dataclass(frozen=True)
class HloOp:
  """One instruction of a compiled module.

  Attributes:
    name: the instruction's name (``%name`` without the ``%``).
    opcode: its HLO opcode (``fusion``, ``dot``, ``while``, ...).
    category: what it does, e.g. ``matmul``, ``convolution``,
      ``elementwise fusion``, ``reduction fusion``, ``sort``, ``loop``.
    source: the JAX operation it came from (``op_name`` metadata), or "".
  """

  name: str
  opcode: str
  category: str
  source: str


def _parse_computations(
    hlo_text: str,
) -> dict[str, list[tuple[str, str, str]]]:
  """Computation name -> [(instruction name, opcode, rest of line)]."""
  computations: dict[str, list[tuple[str, str, str]]] = {}
  current = None
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header and " = " not in line.split("{")[0]:
      current = header.group("name")
      computations[current] = []
      continue
    if current is None:
      continue
    instruction = _INSTRUCTION.match(line)
    if instruction:
      name, opcode = instruction.group("name"), instruction.group("opcode")
      computations[current].append((name, opcode, instruction.group("rest")))
    elif line.strip() == "}":
      current = None
  return computations


def _opcodes_within(
    computation: str,
    computations: Mapping[str, list[tuple[str, str, str]]],
    seen: set[str] | None = None,
) -> set[str]:
  """Every opcode in ``computation`` and the computations it calls."""
  seen = set() if seen is None else seen
  if computation in seen or computation not in computations:
    return set()
  seen.add(computation)
  opcodes = set()
  for _, opcode, rest in computations[computation]:
    opcodes.add(opcode)
    if opcode == "fusion":
      for callee in _CALLS.findall(rest):
        opcodes |= _opcodes_within(callee, computations, seen)
  return opcodes


def _category(opcode: str, rest: str, computations: Mapping[str, Any]) -> str:
  if opcode in _CONTROL:
    return _CONTROL[opcode]
  opcodes = {opcode}
  if opcode == "fusion":
    for callee in _CALLS.findall(rest):
      opcodes |= _opcodes_within(callee, computations)
  for wanted, category in _BY_OPCODE:
    if wanted in opcodes:
      return category
  if opcode != "fusion":
    return "data movement" if opcode in _DATA_MOVEMENT else opcode
  if "reduce" in opcodes:
    return "reduction fusion"
  inner = opcodes - {"fusion", "parameter", "bitcast", "constant", "tuple"}
  inner -= {"get-tuple-element", "broadcast", "slice", "reshape"}
  if inner and inner <= _DATA_MOVEMENT:
    return "data movement"
  return "elementwise fusion"


def _source(
    opcode: str, rest: str, computations: Mapping[str, Any], key_opcode: str
) -> str:
  """Where the instruction came from (its ``op_name``).

  For a fusion, that of the fused instruction that sets its category (the
  dot or convolution of a matmul or convolution fusion), else its own, else
  the first one inside it.
  """
  own = _OP_NAME.search(rest)
  inner = []
  if opcode == "fusion":
    for callee in _CALLS.findall(rest):
      inner += computations.get(callee, [])
  for _, inner_opcode, inner_rest in inner:
    found = _OP_NAME.search(inner_rest)
    if inner_opcode == key_opcode and found:
      return found.group("op_name")
  if own:
    return own.group("op_name")
  for _, _, inner_rest in inner:
    found = _OP_NAME.search(inner_rest)
    if found:
      return found.group("op_name")
  return ""


def hlo_ops(hlo_text: str) -> dict[str, HloOp]:
  """Every instruction of ``compiled.as_text()``, by name, with its category.

  Raises:
    ValueError: if the text holds no HLO instruction.
  """
  computations = _parse_computations(hlo_text)
  ops = {}
  for instructions in computations.values():
    for name, opcode, rest in instructions:
      category = _category(opcode, rest, computations)
      ops[name] = HloOp(
          name=name,
          opcode=opcode,
          category=category,
          source=_source(
              opcode, rest, computations, _KEY_OPCODE.get(category, "")
          ),
      )
  if not ops:
    raise ValueError(
        "no HLO instruction found in the text (expected the output of "
        "compiled.as_text())"
    )
  return ops


def self_times_us(
    events: Iterable[Mapping[str, Any]], names: Iterable[str]
) -> dict[str, float]:
  """Summed self time (µs) per event name, for complete events named in names.

  Events are Chrome-trace complete events (``ph == "X"``, ``ts`` and
  ``dur`` in µs). On each (pid, tid) an event's self time is its duration
  minus that of the named events nested inside it.
  """
  wanted = set(names)
  by_thread: dict[tuple[Any, Any], list[tuple[float, float, str]]] = (
      collections.defaultdict(list)
  )
  for event in events:
    if event.get("ph") == "X" and event.get("name") in wanted:
      start, duration = float(event["ts"]), float(event.get("dur", 0.0))
      by_thread[(event.get("pid"), event.get("tid"))].append(
          (start, duration, event["name"])
      )
  totals: dict[str, float] = collections.defaultdict(float)
  for thread_events in by_thread.values():
    # Outer events first when two start together.
    thread_events.sort(key=lambda e: (e[0], -e[1]))
    stack: list[list[Any]] = []  # [end, name, self time so far]
    for start, duration, name in thread_events:
      while stack and start >= stack[-1][0]:
        _, done, own = stack.pop()
        totals[done] += own
      if stack:
        stack[-1][2] -= min(duration, stack[-1][0] - start)
      stack.append([start + duration, name, duration])
    for _, done, own in stack:
      totals[done] += own
  return dict(totals)


@dataclasses.dataclass(frozen=True)
class Profile:
  """Per-operation self times of ``steps`` calls.

  Attributes:
    steps: how many calls the times cover.
    wall_ms: wall time per call (ms) inside the trace.
    op_ms: instruction name -> self time per call (ms), summed over threads.
    ops: instruction name -> ``HloOp``.
  """

  steps: int
  wall_ms: float
  op_ms: dict[str, float]
  ops: dict[str, HloOp]

  def by_category(self) -> list[tuple[str, float]]:
    """(category, ms per call), largest first."""
    totals: dict[str, float] = collections.defaultdict(float)
    for name, ms in self.op_ms.items():
      totals[self.ops[name].category] += ms
    return sorted(totals.items(), key=lambda kv: -kv[1])

  def top_ops(self, count: int) -> list[tuple[HloOp, float]]:
    """The ``count`` most expensive instructions, (op, ms per call)."""
    ranked = sorted(self.op_ms.items(), key=lambda kv: -kv[1])[:count]
    return [(self.ops[name], ms) for name, ms in ranked]


def read_trace_events(trace_dir: str) -> list[dict[str, Any]]:
  """The events of the newest Perfetto JSON trace written under trace_dir."""
  paths = glob.glob(
      os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True
  )
  if not paths:
    raise FileNotFoundError(
        f"no perfetto_trace.json.gz under {trace_dir!r}: was the trace "
        "taken with jax.profiler.trace(..., create_perfetto_trace=True)?"
    )
  with gzip.open(max(paths, key=os.path.getmtime), "rt") as f:
    data = json.load(f)
  return data["traceEvents"] if isinstance(data, dict) else data


def profile_compiled(
    compiled: Any,
    args: Sequence[Any],
    steps: int,
    trace_dir: str,
    carry: Callable[[Any, Sequence[Any]], Sequence[Any]] | None = None,
) -> Profile:
  """Runs ``compiled(*args)`` ``steps`` times in a trace; per-op self times.

  Args:
    compiled: a ``jax.stages.Compiled`` (``jax.jit(f).lower(...).compile()``).
    args: its arguments.
    steps: calls to trace (>= 1); one untraced call runs first.
    trace_dir: where ``jax.profiler`` writes the trace (TensorBoard's
      profile plugin and Perfetto read it too).
    carry: ``carry(output, args) -> args`` for the next call (e.g. a train
      step's new state); default: the same args every call.

  Returns:
    A ``Profile``.
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  ops = hlo_ops(compiled.as_text())
  args = list(args)

  def call():
    out = compiled(*args)
    jax.block_until_ready(out)
    return list(carry(out, args)) if carry else args

  args = call()
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    start = time.perf_counter()
    for _ in range(steps):
      args = call()
    wall = time.perf_counter() - start
  self_us = self_times_us(read_trace_events(trace_dir), ops)
  return Profile(
      steps=steps,
      wall_ms=1e3 * wall / steps,
      op_ms={name: us / 1e3 / steps for name, us in self_us.items()},
      ops=ops,
  )


def _short_source(source: str, width: int = 70) -> str:
  source = re.sub(r"^jit\([^)]*\)/", "", source)
  return source if len(source) <= width else "…" + source[-(width - 1) :]


def format_profile(profile: Profile, top: int = 10) -> str:
  """Markdown: time per category, then the ``top`` instructions."""
  total = sum(profile.op_ms.values()) or float("nan")
  lines = [
      f"wall {profile.wall_ms:.1f} ms per step; XLA operations "
      f"{total:.1f} ms (summed over threads)",
      "",
      "| category | ms | share |",
      "|---|---:|---:|",
  ]
  for category, ms in profile.by_category():
    lines.append(f"| {category} | {ms:.2f} | {100 * ms / total:.0f} % |")
  lines += ["", "| instruction | category | ms | from |", "|---|---|---:|---|"]
  for op, ms in profile.top_ops(top):
    lines.append(
        f"| {op.name} | {op.category} | {ms:.2f} | "
        f"{_short_source(op.source)} |"
    )
  return "\n".join(lines)
