r"""avjax against the same models in PyTorch, the papers' framework.

Two training steps are rewritten in PyTorch at the same shapes, with the
parameters copied from avjax's initialisation:

* TSTL-CA's stage-1 step: the audio (1-D conv) and visual (2-D conv)
  encoders, L2-normalised embeddings, the cross-modal semi-hard triplet loss
  in both directions (TF-Addons rule), backward, Adam.
* MAMA's bilevel step, written as Meta-Weight-Net's code does it with
  ``torch.func.functional_call``: per-sample angular-margin InfoNCE losses of
  the video and text transformers, weights from the meta-weight MLP, a
  virtual SGD step taken with ``create_graph=True``, the meta loss of the
  virtual model on a meta batch differentiated into the weight net (Adam
  with L2 1e-4), then the real step on the re-weighted loss (Adam with
  gradient clipping at global norm 1).

Before timing, each twin is checked against avjax on the same parameters and
batch: the loss (MAMA: the per-sample losses and the meta loss) and every
gradient (MAMA: the meta-gradient of the weight net and the real step's
gradient of the encoders), as the largest difference relative to the
largest magnitude of that parameter's gradient. The PyTorch twin also runs
in float64; its distance to avjax and to the float32 twin shows which side
a difference comes from.

Steps are timed in interleaved rounds (each round runs every variant for
``--steps`` steps in turn; the median over rounds is reported), so load
from other processes hits all alike: avjax's jitted step (the loop's own,
``loop.checked_train_step``), PyTorch eager and, with ``--torch_compile``,
the PyTorch step's model and loss under ``torch.compile`` (where it fails the
table says why). PyTorch uses as many threads as cores and its OpenMP
threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set before torch loads,
unless the environment sets it): spinning workers otherwise take the cores
from the JAX step timed next. Data loading is excluded.

  pip install -e '.[bench]'   # torch (CPU wheel: torch==2.13.0)
  python launch/bench_peer.py
  python launch/bench_peer.py --configs configs/tstl_ca.py:quick --rounds 3

Prints the agreement checks and a Markdown table (and with --out writes
JSON).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any, Callable, Iterator, Sequence

# Before torch loads its OpenMP runtime (see the module docstring).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from absl import app
from absl import flags

try:
  import torch
  import torch.nn.functional as F
except ImportError:  # The [bench] extra is not installed.
  torch = None
  F = None
# pylint: enable=g-import-not-at-top,wrong-import-position

# Where the twins keep the weight net in a flat parameter dict (avjax
# keeps it in the train state's aux).
WEIGHT_NET = "weight_net"

_DEFAULT_CONFIGS = ("configs/tstl_ca.py", "configs/mama.py")
_Module = torch.nn.Module if torch is not None else object

Link = tuple[str, Any, str]  # (flax path "a/b/kernel", torch param, kind)


# ---------------------------------------------------------------------------
# Pure helpers (no torch).


def num_cores() -> int:
  """CPU cores available to this process."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """XLA's / Flax's "SAME" padding (low, high) of one spatial axis.

  The output has ceil(size / stride) positions; the total padding
  max((out − 1)·stride + kernel − size, 0) is split with the smaller half
  first, so an even total is symmetric and an odd one puts the extra row
  at the end. PyTorch's ``padding=k // 2`` pads k // 2 on both sides: for
  stride 2 and an even input it shifts every window by one position.
  """
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
  """Nested dicts of arrays → {"a/b/c": np.ndarray}."""
  out = {}
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, dict) or hasattr(value, "items"):
      out.update(flatten(value, path))
    else:
      out[path] = np.asarray(value)
  return out


def to_torch_layout(x: np.ndarray, kind: str) -> np.ndarray:
  """A Flax parameter in the layout of the PyTorch parameter it becomes.

  kinds: "copy"; "dense" ([in, out] → [out, in]); "conv" ([*k, in, out] →
  [out, in, *k]); "heads_in" (attention q/k/v [D, H, d] → [H·d, D], bias
  [H, d] → [H·d]); "heads_out" ([H, d, D] → [D, H·d]).
  """
  if kind == "copy":
    return x
  if kind == "dense":
    return x.T
  if kind == "conv":
    return np.moveaxis(x, (-1, -2), (0, 1))
  if kind == "heads_in":
    return x.reshape(x.shape[0], -1).T if x.ndim == 3 else x.reshape(-1)
  if kind == "heads_out":
    return x.reshape(-1, x.shape[-1]).T
  raise ValueError(f"unknown parameter kind {kind!r}")


def relative_error(reference: np.ndarray, value: np.ndarray) -> float:
  """max |value − reference| / max |reference| over the elements in order
  (shapes may differ, sizes may not); the plain difference if both are 0."""
  reference = np.asarray(reference, np.float64).ravel()
  value = np.asarray(value, np.float64).ravel()
  if reference.size != value.size:
    raise ValueError(f"sizes differ: {reference.size} vs {value.size}")
  scale = float(np.max(np.abs(reference))) if reference.size else 0.0
  diff = float(np.max(np.abs(value - reference))) if reference.size else 0.0
  return diff / scale if scale > 0 else diff


def grad_errors(
    reference: dict[str, np.ndarray],
    value: dict[str, np.ndarray],
    floor: float = 1e-4,
) -> dict[str, float]:
  """Per parameter path: max |value − reference| / max(max |reference|,
  floor · the largest |reference| of all paths).

  The floor keeps gradients that are zero up to rounding (a convolution's
  bias before a GroupNorm with one channel per group) from reading as
  huge relative errors.
  """
  missing = sorted(set(reference) ^ set(value))
  if missing:
    raise ValueError(f"gradient trees differ in paths {missing}")
  top = max(float(np.max(np.abs(r))) for r in reference.values())
  out = {}
  for k, ref in reference.items():
    ref = np.asarray(ref, np.float64).ravel()
    val = np.asarray(value[k], np.float64).ravel()
    if ref.size != val.size:
      raise ValueError(f"{k}: sizes differ, {ref.size} vs {val.size}")
    scale = max(float(np.max(np.abs(ref))), floor * top)
    out[k] = float(np.max(np.abs(val - ref))) / scale if scale > 0 else 0.0
  return out


def interleaved_ms(
    steps: dict[str, Callable[[], None]], rounds: int, steps_per_round: int
) -> dict[str, float]:
  """Median over rounds of each step's mean time (ms); each round runs
  every variant ``steps_per_round`` times in turn."""
  times = {name: [] for name in steps}
  for _ in range(rounds):
    for name, step in steps.items():
      start = time.perf_counter()
      for _ in range(steps_per_round):
        step()
      times[name].append((time.perf_counter() - start) / steps_per_round)
  return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """The peer table: one row per method and PyTorch variant."""
  lines = [
      "| step | batch | avjax (ms) | PyTorch (ms) | PyTorch ÷ avjax "
      "| loss rel. diff. | max grad rel. diff. (param) |",
      "|---|---:|---:|---:|---:|---:|---|",
  ]
  for r in rows:
    torch_ms = r.get("torch_ms")
    ms = "—" if torch_ms is None else f"{torch_ms:.1f}"
    ratio = "—" if torch_ms is None else f"{torch_ms / r['avjax_ms']:.2f}×"
    lines.append(
        f"| {r['step']} ({r['variant']}) | {r['batch']} | "
        f"{r['avjax_ms']:.1f} | {ms}{r.get('note', '')} | {ratio} | "
        f"{r['loss_error']:.1e} | {r['grad_error']:.1e} "
        f"({r['grad_error_param']}) |"
    )
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# PyTorch twins. Each has ``links()`` → [(flax path, parameter, kind)].


def _gelu(x):
  return F.gelu(x, approximate="tanh")  # Flax's nn.gelu default.


def _dense_links(prefix: str, layer) -> list[Link]:
  return [
      (f"{prefix}/kernel", layer.weight, "dense"),
      (f"{prefix}/bias", layer.bias, "copy"),
  ]


def _norm_links(prefix: str, layer) -> list[Link]:
  return [
      (f"{prefix}/scale", layer.weight, "copy"),
      (f"{prefix}/bias", layer.bias, "copy"),
  ]


class TimeConvTwin(_Module):
  """``encoders.TimeConvEncoder`` without a mask: [B, T, M] → [B, E]."""

  def __init__(self, params: dict[str, np.ndarray], prefix: str):
    super().__init__()
    nn = torch.nn
    self.prefix = prefix
    self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
    i = 0
    while f"{prefix}/Conv_{i}/kernel" in params:
      k, c_in, c_out = params[f"{prefix}/Conv_{i}/kernel"].shape
      self.convs.append(nn.Conv1d(c_in, c_out, k, stride=2))
      self.norms.append(nn.GroupNorm(min(8, c_out), c_out, eps=1e-6))
      i += 1
    self.hidden = nn.Linear(*params[f"{prefix}/Dense_0/kernel"].shape)
    self.out = nn.Linear(*params[f"{prefix}/Dense_1/kernel"].shape)

  def forward(self, x):
    x = x.transpose(1, 2)  # [B, M, T]
    for conv, norm in zip(self.convs, self.norms):
      lo, hi = same_padding(x.shape[-1], conv.kernel_size[0], 2)
      x = _gelu(norm(conv(F.pad(x, (lo, hi)))))
    x = _gelu(self.hidden(x.mean(-1)))
    return self.out(x)

  def links(self) -> list[Link]:
    out = []
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      out += [
          (f"{self.prefix}/Conv_{i}/kernel", conv.weight, "conv"),
          (f"{self.prefix}/Conv_{i}/bias", conv.bias, "copy"),
      ]
      out += _norm_links(f"{self.prefix}/GroupNorm_{i}", norm)
    out += _dense_links(f"{self.prefix}/Dense_0", self.hidden)
    return out + _dense_links(f"{self.prefix}/Dense_1", self.out)


class ConvTwin(TimeConvTwin):
  """``encoders.ConvEncoder``: [B, H, W(, 1)] → [B, E]."""

  def __init__(self, params: dict[str, np.ndarray], prefix: str):
    _Module.__init__(self)  # pylint: disable=non-parent-init-called
    nn = torch.nn
    self.prefix = prefix
    self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
    i = 0
    while f"{prefix}/Conv_{i}/kernel" in params:
      kh, kw, c_in, c_out = params[f"{prefix}/Conv_{i}/kernel"].shape
      self.convs.append(nn.Conv2d(c_in, c_out, (kh, kw)))
      self.norms.append(nn.GroupNorm(min(8, c_out), c_out, eps=1e-6))
      i += 1
    self.hidden = nn.Linear(*params[f"{prefix}/Dense_0/kernel"].shape)
    self.out = nn.Linear(*params[f"{prefix}/Dense_1/kernel"].shape)

  def forward(self, x):
    if x.ndim == 3:
      x = x[..., None]
    x = x.permute(0, 3, 1, 2)  # NCHW
    for conv, norm in zip(self.convs, self.norms):
      strides = tuple(2 if n > 1 else 1 for n in x.shape[2:])
      (t, b), (l, r) = (
          same_padding(x.shape[2], conv.kernel_size[0], strides[0]),
          same_padding(x.shape[3], conv.kernel_size[1], strides[1]),
      )
      x = F.conv2d(F.pad(x, (l, r, t, b)), conv.weight, conv.bias, strides)
      x = _gelu(norm(x))
    x = _gelu(self.hidden(x.mean((2, 3))))
    return self.out(x)


def l2_normalize(x, eps: float = 1e-12):
  """``avjax.losses.distances.safe_l2_normalize``'s value."""
  return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), eps * eps))


def semihard_cross_modal(q, q_labels, k, k_labels, margin: float):
  """``losses.cross_modal_triplet(..., mining="semihard")``, Euclidean.

  For every (query, same-label key) pair: the closest other-label key
  farther than the positive, else the farthest; mean hinge over the pairs
  whose query has a negative. Negatives tied at the chosen distance share
  its gradient equally, as in avjax (``_mining.py``).
  """
  sq = (q * q).sum(1)[:, None] + (k * k).sum(1)[None, :] - 2.0 * q @ k.T
  d = torch.sqrt(torch.clamp(sq, min=0.0))  # [Nq, Nk]
  pos = q_labels[:, None] == k_labels[None, :]
  neg = ~pos
  dd = d.detach()
  d_ap = dd[:, :, None]  # [Nq, P(=Nk), 1] over candidate keys n
  cand = neg[:, None, :] & (dd[:, None, :] > d_ap)
  inf = torch.tensor(float("inf"), dtype=d.dtype)
  closest = torch.where(cand, dd[:, None, :], inf).amin(-1)  # [Nq, Nk]
  farthest = torch.where(neg, dd, -inf).amax(-1, keepdim=True)
  chosen_d = torch.where(cand.any(-1), closest, farthest)
  chosen = neg[:, None, :] & (dd[:, None, :] == chosen_d[..., None])
  share = chosen.to(d.dtype) / chosen.sum(-1, keepdim=True).clamp(min=1)
  d_an = (share * d[:, None, :]).sum(-1)  # [Nq, Nk]
  valid = pos & neg.any(1, keepdim=True)
  terms = torch.where(valid, F.relu(d - d_an + margin), 0.0)
  return terms.sum() / valid.sum().clamp(min=1).to(d.dtype)


class TSTLCATwin(_Module):
  """TSTL-CA's two encoders and stage-1 loss."""

  def __init__(self, params: dict[str, np.ndarray], margin: float):
    super().__init__()
    self.audio = TimeConvTwin(params, "params/audio_encoder")
    self.visual = ConvTwin(params, "params/visual_encoder")
    self.margin = margin

  def forward(self, audio, visual, labels):
    a = l2_normalize(self.audio(audio))
    v = l2_normalize(self.visual(visual))
    m = self.margin
    return 0.5 * (
        semihard_cross_modal(a, labels, v, labels, m)
        + semihard_cross_modal(v, labels, a, labels, m)
    )

  def links(self) -> list[Link]:
    return self.audio.links() + self.visual.links()


class _Attention(_Module):
  """``transformer.MultiHeadAttention`` (self-attention, key mask)."""

  def __init__(self, width: int, heads: int):
    super().__init__()
    nn = torch.nn
    self.heads = heads
    self.query, self.key, self.value = (nn.Linear(width, width) for _ in "qkv")
    self.out = nn.Linear(width, width)

  def forward(self, x, mask):
    b, t, w = x.shape
    split = lambda y: y.view(b, t, self.heads, w // self.heads)
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(w // self.heads)
    valid = mask[:, None, None, :]
    logits = torch.where(valid, logits, -1e30)
    weights = torch.softmax(logits, -1) * valid.to(logits.dtype)
    return self.out(
        torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, w)
    )

  def links(self, prefix: str) -> list[Link]:
    out = []
    for name in ("query", "key", "value"):
      layer = getattr(self, name)
      out += [
          (f"{prefix}/{name}/kernel", layer.weight, "heads_in"),
          (f"{prefix}/{name}/bias", layer.bias, "heads_in"),
      ]
    return out + [
        (f"{prefix}/out/kernel", self.out.weight, "heads_out"),
        (f"{prefix}/out/bias", self.out.bias, "copy"),
    ]


class _Block(_Module):
  """``transformer.EncoderBlock`` (pre-LN; Flax LayerNorm ε = 1e-6)."""

  def __init__(self, width: int, heads: int, hidden: int):
    super().__init__()
    nn = torch.nn
    self.norm0 = nn.LayerNorm(width, eps=1e-6)
    self.attention = _Attention(width, heads)
    self.norm1 = nn.LayerNorm(width, eps=1e-6)
    self.mlp0, self.mlp1 = nn.Linear(width, hidden), nn.Linear(hidden, width)

  def forward(self, x, mask):
    x = x + self.attention(self.norm0(x), mask)
    x = x + self.mlp1(_gelu(self.mlp0(self.norm1(x))))
    return torch.where(mask[..., None], x, 0.0)

  def links(self, prefix: str) -> list[Link]:
    return (
        _norm_links(f"{prefix}/LayerNorm_0", self.norm0)
        + self.attention.links(f"{prefix}/MultiHeadAttention_0")
        + _norm_links(f"{prefix}/LayerNorm_1", self.norm1)
        + _dense_links(f"{prefix}/MLP_0/Dense_0", self.mlp0)
        + _dense_links(f"{prefix}/MLP_0/Dense_1", self.mlp1)
    )


class _Transformer(_Module):
  """``transformer.TransformerEncoder``."""

  def __init__(self, params: dict[str, np.ndarray], prefix: str, heads: int):
    super().__init__()
    self.prefix = prefix
    blocks = []
    while f"{prefix}/block_{len(blocks)}/MLP_0/Dense_0/kernel" in params:
      width, hidden = params[
          f"{prefix}/block_{len(blocks)}/MLP_0/Dense_0/kernel"
      ].shape
      blocks.append(_Block(width, heads, hidden))
    self.blocks = torch.nn.ModuleList(blocks)
    self.final = torch.nn.LayerNorm(width, eps=1e-6)

  def forward(self, x, mask):
    x = torch.where(mask[..., None], x, 0.0)
    for block in self.blocks:
      x = block(x, mask)
    return torch.where(mask[..., None], self.final(x), 0.0)

  def links(self) -> list[Link]:
    out = []
    for i, block in enumerate(self.blocks):
      out += block.links(f"{self.prefix}/block_{i}")
    return out + _norm_links(f"{self.prefix}/final_norm", self.final)


def masked_mean(x, mask):
  w = mask.to(x.dtype)[..., None]
  return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


class VideoTextTwin(_Module):
  """MAMA's ``VideoEncoder`` (no convs) and ``TextEncoder``, the learned
  log logit scale, and the per-sample angular-margin InfoNCE."""

  def __init__(self, params, config, text_positions: np.ndarray):
    super().__init__()
    nn = torch.nn
    p = "encoders/params"
    v, t = config.model.video, config.model.text
    if tuple(v.conv_features):
      raise ValueError("bench_peer's MAMA twin has no per-frame convolutions")
    self.patch = int(v.patch_size)
    self.patch_embed = nn.Linear(*params[f"{p}/video/patch_embed/kernel"].shape)
    self.frame_proj = nn.Linear(*params[f"{p}/video/frame_proj/kernel"].shape)
    self.frame_position = nn.Parameter(
        torch.zeros(params[f"{p}/video/frame_position"].shape)
    )
    self.temporal = _Transformer(params, f"{p}/video/temporal", v.num_heads)
    self.video_out = nn.Linear(*params[f"{p}/video/projection/kernel"].shape)
    self.embed = nn.Embedding(*params[f"{p}/text/token_embed/embedding"].shape)
    self.register_buffer("positions", torch.from_numpy(text_positions))
    self.text = _Transformer(params, f"{p}/text/transformer", t.num_heads)
    self.text_out = nn.Linear(*params[f"{p}/text/projection/kernel"].shape)
    self.log_scale = nn.Parameter(torch.zeros(()))
    self.margin = float(config.loss.margin)
    # log s is capped at log(1 / min τ) (config.loss.temperature).
    self.max_log_scale = -math.log(float(config.loss.temperature.min))

  def video(self, frames, mask):
    if frames.ndim == 4:
      frames = frames[..., None]
    b, t, h, w, c = frames.shape
    p = self.patch
    x = frames.to(self.log_scale.dtype) / 255.0
    x = x.reshape(b * t, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
    x = _gelu(self.patch_embed(x.reshape(b * t, h // p, w // p, p * p * c)))
    x = self.frame_proj(x.reshape(b, t, -1)) + self.frame_position[:t]
    return self.video_out(masked_mean(self.temporal(x, mask), mask))

  def caption(self, tokens, mask):
    x = self.embed(tokens) + self.positions[: tokens.shape[1]]
    return self.text_out(masked_mean(self.text(x, mask), mask))

  def forward(self, batch):
    """Per-sample losses [B] of a batch of (video, caption) pairs."""
    v = self.video(batch["frames"], batch["frame_mask"])
    t = self.caption(batch["tokens"], batch["token_mask"])
    scale = torch.exp(torch.clamp(self.log_scale, max=self.max_log_scale))
    return angular_margin_info_nce(v, t, self.margin, 1.0 / scale)

  def links(self) -> list[Link]:
    p = "encoders/params"
    return (
        _dense_links(f"{p}/video/patch_embed", self.patch_embed)
        + _dense_links(f"{p}/video/frame_proj", self.frame_proj)
        + [(f"{p}/video/frame_position", self.frame_position, "copy")]
        + self.temporal.links()
        + _dense_links(f"{p}/video/projection", self.video_out)
        + [(f"{p}/text/token_embed/embedding", self.embed.weight, "copy")]
        + self.text.links()
        + _dense_links(f"{p}/text/projection", self.text_out)
        + [("log_scale", self.log_scale, "copy")]
    )


def angular_margin_info_nce(a, b, margin: float, temperature):
  """``losses.angular_margin_info_nce``: per-sample [B]."""
  a, b = l2_normalize(a), l2_normalize(b)
  rows, cols = a @ b.T, b @ a.T
  cos = torch.clamp((a * b).sum(-1), -1.0, 1.0)
  cos_mu, sin_mu = math.cos(margin), math.sin(margin)
  clipped = torch.clamp(cos, -1.0 + 1e-6, 1.0 - 1e-6)
  shifted = cos * cos_mu + torch.sqrt(1.0 - clipped * clipped) * sin_mu
  pos = torch.where(cos >= cos_mu, torch.ones_like(cos), shifted)
  diag = torch.eye(a.shape[0], dtype=torch.bool)
  rows = torch.where(diag, pos[:, None], rows) / temperature
  cols = torch.where(diag, pos[:, None], cols) / temperature
  pos = pos / temperature
  return 0.5 * (
      torch.logsumexp(rows, -1) - pos + torch.logsumexp(cols, -1) - pos
  )


class WeightNetTwin(_Module):
  """``meta_weight.MetaWeightNet`` (loss / input_scale, hidden ReLU layers,
  sigmoid output)."""

  def __init__(
      self, params: dict[str, np.ndarray], prefix: str, input_scale: float
  ):
    super().__init__()
    self.prefix = prefix
    self.input_scale = float(input_scale)
    layers, i = [], 0
    while f"{prefix}/hidden_{i}/kernel" in params:
      layers.append(
          torch.nn.Linear(*params[f"{prefix}/hidden_{i}/kernel"].shape)
      )
      i += 1
    self.hidden = torch.nn.ModuleList(layers)
    self.out = torch.nn.Linear(*params[f"{prefix}/out/kernel"].shape)

  def forward(self, losses):
    x = losses[:, None] / self.input_scale
    for layer in self.hidden:
      x = F.relu(layer(x))
    return torch.sigmoid(self.out(x)[:, 0])

  def links(self) -> list[Link]:
    out = []
    for i, layer in enumerate(self.hidden):
      out += _dense_links(f"{self.prefix}/hidden_{i}", layer)
    return out + _dense_links(f"{self.prefix}/out", self.out)


def load(model, flat: dict[str, np.ndarray], dtype=None) -> None:
  """Copies Flax parameters (flattened) into the twin's parameters."""
  dtype = dtype or torch.float32
  with torch.no_grad():
    for path, param, kind in model.links():
      value = to_torch_layout(flat[path], kind)
      if tuple(value.shape) != tuple(param.shape):
        raise ValueError(
            f"{path}: Flax {flat[path].shape} → {value.shape}, but the "
            f"PyTorch parameter is {tuple(param.shape)}"
        )
      param.data = torch.from_numpy(np.array(value)).to(dtype)
      param.requires_grad_(True)


def flax_grads(model, grads=None) -> dict[str, np.ndarray]:
  """The twin's gradients (``.grad`` or a {param: grad} map), back in the
  Flax layout and named by Flax path."""
  out = {}
  for path, param, kind in model.links():
    g = param.grad if grads is None else grads[param]
    g = g.detach().double().numpy()
    if kind == "conv":
      g = np.moveaxis(g, (0, 1), (-1, -2))
    elif kind in ("dense", "heads_in", "heads_out") and g.ndim == 2:
      g = g.T  # Flax's element order; heads' [D, H·d] = [D, H, d] raveled.
    out[path] = g
  return out


def torch_batch(batch: dict[str, Any], dtype=None) -> dict[str, Any]:
  """numpy batch → tensors (floats in ``dtype``, others as they are)."""
  dtype = dtype or torch.float32
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    t = torch.from_numpy(np.ascontiguousarray(v))
    if v.dtype.kind == "f":
      t = t.to(dtype)
    elif v.dtype.kind in "iu" and k in ("label", "tokens"):
      t = t.long()
    out[k] = t
  return out


# ---------------------------------------------------------------------------
# TSTL-CA: agreement and steps.


def tstl_ca_agreement(method, params, batch) -> dict[str, Any]:
  """Loss and gradients of TSTL-CA's stage-1 loss: avjax vs the twin
  (float32 and float64) on the same parameters and batch."""
  import jax  # pylint: disable=import-outside-toplevel

  from avjax.train.stages import StageScheduler  # pylint: disable=import-outside-toplevel

  stage = StageScheduler(method.config.stages)[0]
  if stage.options.get("loss", "semihard") != "semihard":
    raise ValueError("bench_peer times TSTL-CA's semi-hard (first) stage")
  loss, grads = jax.value_and_grad(
      lambda p: method.loss_fn(p, batch, jax.random.PRNGKey(0), stage, 0)[0]
  )(params)
  ref = flatten(jax.device_get(grads))
  flat = flatten(jax.device_get(params))
  out = {"avjax_loss": float(loss)}
  for name, dtype in (("torch", torch.float64), ("torch32", torch.float32)):
    twin = TSTLCATwin(flat, float(method.config.loss.margin))
    load(twin, flat, dtype)
    tb = torch_batch(batch, dtype)
    value = twin(tb["audio"], tb["visual"], tb["label"])
    value.backward()
    out[f"{name}_loss"] = float(value.detach())
    out[f"{name}_grads"] = flax_grads(twin)
  out["avjax_grads"] = ref
  return _summarise(out)


def _summarise(out: dict[str, Any]) -> dict[str, Any]:
  """Relative differences: avjax and the float32 twin against the float64
  twin, and avjax against the float32 twin (the reported one)."""
  summary = {}
  pairs = (
      ("avjax_vs_torch32", "torch32", "avjax"),
      ("avjax_vs_float64", "torch", "avjax"),
      ("torch32_vs_float64", "torch", "torch32"),
  )
  for name, ref, val in pairs:
    errors = grad_errors(out[f"{ref}_grads"], out[f"{val}_grads"])
    worst = max(errors, key=errors.get)
    summary[name] = {
        "loss": relative_error(
            np.array(out[f"{ref}_loss"]), np.array(out[f"{val}_loss"])
        ),
        "grad": errors[worst],
        "grad_param": worst,
        "grads": errors,
    }
  summary["values"] = {
      k: float(np.mean(v)) for k, v in out.items() if k.endswith("loss")
  }
  return summary


def tstl_ca_torch_step(twin, batch, learning_rate: float):
  """PyTorch eager (or compiled ``loss``) step: forward, backward, Adam."""
  opt = torch.optim.Adam(twin.parameters(), lr=learning_rate)
  tb = torch_batch(batch)

  def step(loss_fn=twin):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(tb["audio"], tb["visual"], tb["label"])
    loss.backward()
    opt.step()
    return loss

  return step


# ---------------------------------------------------------------------------
# MAMA: agreement and steps.


def mama_twins(method, params, dtype=None):
  """(encoders + loss twin, weight-net twin) loaded from avjax params."""
  from avjax.models import transformer  # pylint: disable=import-outside-toplevel
  from avjax.methods import mama  # pylint: disable=import-outside-toplevel

  flat = flatten(params)
  width = flat["encoders/params/text/token_embed/embedding"].shape[1]
  max_tokens = int(method.config.data.max_tokens)
  positions = np.asarray(transformer.sinusoidal_positions(max_tokens, width))
  model = VideoTextTwin(flat, method.config, positions)
  load(model, flat, dtype)
  weights = WeightNetTwin(
      flat, f"{WEIGHT_NET}/params", method.weight_net.input_scale
  )
  load(weights, flat, dtype)
  return model, weights


def mama_meta_gradient(model, weights, batch, meta_batch, lr: float):
  """Meta-Weight-Net's virtual step with ``torch.func.functional_call``:
  (train per-sample losses, meta loss, {weight-net param: meta-gradient})."""
  params = dict(model.named_parameters())
  losses = torch.func.functional_call(model, params, (batch,))
  w = weights(losses.detach())
  inner = (w * losses).sum() / losses.shape[0]
  grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
  virtual = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
  meta_loss = torch.func.functional_call(model, virtual, (meta_batch,)).mean()
  phi = list(weights.parameters())
  meta_grads = torch.autograd.grad(meta_loss, phi)
  return losses, meta_loss, dict(zip(phi, meta_grads))


def mama_real_loss(model, weights, batch):
  """The real step's loss: weights recomputed without gradient."""
  losses = model(batch)
  with torch.no_grad():
    w = weights(losses)
  return (w * losses).sum() / losses.shape[0]


def mama_agreement(method, state, batch, lr: float) -> dict[str, Any]:
  """Per-sample losses, meta loss, meta-gradient (weight net) and the real
  step's encoder gradients: avjax vs the twin, same params and batches.

  Both sides take Meta-Weight-Net's bilevel step: a virtual SGD step with
  learning rate ``lr`` and the plain weighted mean Σ wᵢℓᵢ / B. MAMA's
  default (the virtual step through Adam, normalised weights) uses the same
  machinery; its derivatives are checked against float64 finite
  differences in ``tests/test_bilevel.py``."""
  import dataclasses  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  from avjax.methods import mama  # pylint: disable=import-outside-toplevel
  from avjax.train import bilevel  # pylint: disable=import-outside-toplevel

  params = dict(state.params)
  phi = state.aux[bilevel.META_KEY]["params"]
  params[WEIGHT_NET] = phi
  train, meta_batch = batch["train"], batch["meta"]
  rngs = (jax.random.PRNGKey(1), jax.random.PRNGKey(2))
  options = dataclasses.replace(
      method.options, virtual_step="sgd", virtual_lr=lr, normalize=False
  )
  per_sample, _ = method.per_sample_loss(state.params, train, None)
  meta_loss, meta_grads = jax.value_and_grad(
      lambda f: bilevel.meta_objective(
          f,
          method.weight_net.apply,
          method.per_sample_loss,
          state.params,
          state.opt_state,
          state.tx,
          train,
          meta_batch,
          rngs,
          options,
          state.step,
      )
  )(phi)

  def real(p):
    losses, _ = method.per_sample_loss(p, train, None)
    w = jax.lax.stop_gradient(method.weight_net.apply(phi, losses))
    return bilevel.weighted_loss(losses, w, False)

  real_grads = jax.grad(real)(state.params)
  ref = {
      k: v
      for k, v in flatten(
          jax.device_get({"meta": meta_grads, "real": real_grads})
      ).items()
      if not k.startswith(f"real/{WEIGHT_NET}/")  # Not an input.
  }
  out = {
      "avjax_loss": np.asarray(per_sample),
      "avjax_meta_loss": float(meta_loss),
      "avjax_grads": ref,
  }
  flat_params = jax.device_get(params)
  for name, dtype in (("torch", torch.float64), ("torch32", torch.float32)):
    model, weights = mama_twins(method, flat_params, dtype)
    tb, tm = torch_batch(train, dtype), torch_batch(meta_batch, dtype)
    losses, meta, mg = mama_meta_gradient(model, weights, tb, tm, lr)
    grads = {f"meta/{k}": v for k, v in flax_grads(weights, mg).items()}
    mama_real_loss(model, weights, tb).backward()
    grads.update({f"real/{k}": v for k, v in flax_grads(model).items()})
    out[f"{name}_loss"] = losses.detach().double().numpy()
    out[f"{name}_meta_loss"] = float(meta.detach())
    out[f"{name}_grads"] = {
        k.replace(f"meta/{WEIGHT_NET}/", "meta/"): v for k, v in grads.items()
    }
  summary = _summarise(out)
  for name, ref_name, val in (
      ("avjax_vs_torch32", "torch32", "avjax"),
      ("avjax_vs_float64", "torch", "avjax"),
      ("torch32_vs_float64", "torch", "torch32"),
  ):
    summary[name]["meta_loss"] = relative_error(
        np.array(out[f"{ref_name}_meta_loss"]),
        np.array(out[f"{val}_meta_loss"]),
    )
  return summary


def mama_torch_step(model, weights, batch, meta_batch, lr: float, config):
  """The PyTorch bilevel step (Meta-Weight-Net's loop, one iteration)."""
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  m = config.meta.optimizer
  wopt = torch.optim.Adam(
      weights.parameters(),
      lr=float(m.learning_rate),
      weight_decay=float(m.get("weight_decay", 0.0) or 0.0),
  )
  clip = config.optimizer.get("grad_clip_norm")
  tb, tm = torch_batch(batch), torch_batch(meta_batch)

  def step():
    _, _, meta_grads = mama_meta_gradient(model, weights, tb, tm, lr)
    for p, g in meta_grads.items():
      p.grad = g
    wopt.step()
    opt.zero_grad(set_to_none=True)
    loss = mama_real_loss(model, weights, tb)
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
    opt.step()
    with torch.no_grad():
      model.log_scale.clamp_(max=model.max_log_scale)
    return loss

  return step


# ---------------------------------------------------------------------------
# The benchmark.

_CONFIGS = flags.DEFINE_list(
    "configs", list(_DEFAULT_CONFIGS), "Config specs (TSTL-CA and/or MAMA)."
)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.")
_TORCH_COMPILE = flags.DEFINE_bool(
    "torch_compile", True, "Also time the PyTorch step under torch.compile."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data dir (default: the configs')."
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON output path.")


def _avjax_runner(step, state, batch) -> Callable[[], None]:
  import jax  # pylint: disable=import-outside-toplevel

  box = {"state": state}

  def run():
    box["state"], metrics = step(box["state"], batch)
    jax.block_until_ready(metrics)

  run()  # Compiles.
  return run


def _compiled(fn, note: list[str]):
  """``torch.compile(fn)`` or None (the reason appended to ``note``)."""
  try:
    return torch.compile(fn)
  except Exception as e:  # pylint: disable=broad-except
    note.append(f"torch.compile failed: {type(e).__name__}: {e}"[:200])
    return None


def _warm(fn, note: list[str], what: str) -> bool:
  try:
    fn()
    return True
  except Exception as e:  # pylint: disable=broad-except
    note.append(f"{what}: {type(e).__name__}: {str(e).splitlines()[0]}"[:300])
    return False


def _tstl_ca_twin(method, state, batch, config, lr, notes):
  """(agreement, {variant: torch step}, step name, batch description)."""
  import jax  # pylint: disable=import-outside-toplevel

  agreement = tstl_ca_agreement(method, state.params, batch)
  twin = TSTLCATwin(
      flatten(jax.device_get(state.params)), float(config.loss.margin)
  )
  load(twin, flatten(jax.device_get(state.params)))
  eager = tstl_ca_torch_step(twin, batch, lr)
  torch_steps = {"eager": eager}
  if _TORCH_COMPILE.value:
    compiled = _compiled(twin, notes)
    if compiled is not None:
      torch_steps["torch.compile"] = lambda: eager(compiled)
  return (
      agreement,
      torch_steps,
      "TSTL-CA stage 1 (semi-hard)",
      config.data.batch_size,
  )


def _mama_config(config) -> None:
  """The twin is Meta-Weight-Net's loop: a virtual SGD step at the model's
  learning rate and the plain weighted mean; avjax is timed on the same."""
  config.meta.virtual_step = "sgd"
  config.meta.virtual_lr = float(config.optimizer.learning_rate)
  config.meta.normalize = False


def _mama_twin(method, state, batch, config, lr, notes):
  """(agreement, {variant: torch step}, step name, batch description)."""
  del notes
  import jax  # pylint: disable=import-outside-toplevel

  from avjax.train import bilevel  # pylint: disable=import-outside-toplevel

  agreement = mama_agreement(method, state, batch, lr)
  params = dict(jax.device_get(state.params))
  params[WEIGHT_NET] = jax.device_get(state.aux[bilevel.META_KEY]["params"])

  def step(compiled: bool):
    model, weights = mama_twins(method, params)
    if compiled:
      model = torch.compile(model)
    return mama_torch_step(
        model, weights, batch["train"], batch["meta"], lr, config
    )

  torch_steps = {"eager": step(False)}
  if _TORCH_COMPILE.value:
    torch_steps["torch.compile"] = step(True)
  meta_batch = config.meta.batch_size or config.data.batch_size
  return (
      agreement,
      torch_steps,
      "MAMA bilevel",
      f"{config.data.batch_size} + meta {meta_batch}",
  )


def _twins() -> dict[type, tuple[Any, Any]]:
  """Method class → (config adjustment or None, twin builder)."""
  from avjax.methods.mama import MAMA  # pylint: disable=import-outside-toplevel
  from avjax.methods.tstl_ca import TSTLCA  # pylint: disable=import-outside-toplevel

  return {TSTLCA: (None, _tstl_ca_twin), MAMA: (_mama_config, _mama_twin)}


def bench_one(spec: str) -> dict[str, Any]:
  """Agreement and interleaved timings of one config."""
  from avjax import config_utils  # pylint: disable=import-outside-toplevel
  from avjax import methods  # pylint: disable=import-outside-toplevel
  from avjax.train import loop  # pylint: disable=import-outside-toplevel

  path, _, arg = spec.partition(":")
  config = config_utils.load_config_file(path, arg or None)
  if _DATA_DIR.value:
    config.data.data_dir = _DATA_DIR.value
  twins = _twins()
  cls = methods.method_class(config.method)
  if cls not in twins:
    raise ValueError(
        f"--configs {spec!r}: only {sorted(c.__name__ for c in twins)} "
        "have PyTorch twins"
    )
  adjust, build = twins[cls]
  if adjust is not None:
    adjust(config)
  method = methods.get_method(config)
  iterator = method.train_iterator(config.data.batch_size, config.seed, 0, 1)
  batch = next(iterator)
  step, state = loop.first_stage_step(method, config, batch)
  lr = float(config.optimizer.learning_rate)
  notes: list[str] = []
  agreement, torch_steps, name, b = build(
      method, state, batch, config, lr, notes
  )
  runners = {"avjax": _avjax_runner(step, state, batch)}
  for variant, fn in torch_steps.items():
    warm_notes: list[str] = []
    start = time.perf_counter()
    if _warm(fn, warm_notes, variant):
      runners[variant] = fn
    notes += warm_notes
    if variant != "eager":
      notes.append(f"{variant} warm-up {time.perf_counter() - start:.0f} s")
  ms = interleaved_ms(runners, _ROUNDS.value, _STEPS.value)
  load_avg = os.getloadavg()
  ref = agreement["avjax_vs_torch32"]
  rows = []
  for variant in torch_steps:
    rows.append(
        {
            "step": name,
            "variant": variant,
            "batch": b,
            "avjax_ms": ms["avjax"],
            "torch_ms": ms.get(variant),
            "loss_error": ref["loss"],
            "grad_error": ref["grad"],
            "grad_error_param": ref["grad_param"],
        }
    )
  return {
      "config": spec,
      "rows": rows,
      "agreement": {
          k: {kk: vv for kk, vv in v.items() if kk != "grads"}
          for k, v in agreement.items()
          if k != "values"
      },
      "values": agreement["values"],
      "notes": notes,
      "load_average_after": load_avg,
  }


def main(argv):
  del argv
  import json  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  from avjax.train import host_memory  # pylint: disable=import-outside-toplevel

  if torch is None:
    raise SystemExit(
        "launch/bench_peer.py needs PyTorch: pip install -e '.[bench]'"
    )
  host_memory.retain_freed_memory()
  torch.set_num_threads(num_cores())
  header = {
      "cores": num_cores(),
      "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
      "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
      "jax": jax.__version__,
      "device": str(jax.devices()[0]),
      "load_average_before": os.getloadavg(),
      "rounds": _ROUNDS.value,
      "steps_per_round": _STEPS.value,
  }
  results = [bench_one(spec) for spec in _CONFIGS.value]
  rows = [r for res in results for r in res["rows"]]
  print(json.dumps({"header": header, "results": results}, indent=2))
  print()
  print(markdown_table(rows))
  print()
  print(
      f"{header['cores']} cores, torch {header['torch']} with "
      f"{header['torch_threads']} threads, OMP_WAIT_POLICY="
      f"{header['OMP_WAIT_POLICY']}, jax {header['jax']}; load average "
      f"before {header['load_average_before'][0]:.1f}, after "
      f"{results[-1]['load_average_after'][0]:.1f}; median of "
      f"{header['rounds']} interleaved rounds of {header['steps_per_round']} "
      "steps."
  )
  for res in results:
    for note in res["notes"]:
      print(f"note ({res['config']}): {note}")
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(
          {"header": header, "results": results, "table": markdown_table(rows)},
          f,
          indent=2,
      )


if __name__ == "__main__":
  app.run(main)
