"""Optimisers and learning-rate schedules built from ``config.optimizer``."""

from __future__ import annotations

import ml_collections
import optax

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULES = ("constant", "cosine", "warmup_cosine")


def learning_rate_schedule(
    cfg: ml_collections.ConfigDict, total_steps: int
) -> optax.Schedule:
  """Returns step -> learning rate.

  ``cfg.schedule`` is one of ``constant``, ``cosine`` (decay to
  ``cfg.end_lr_fraction`` of the peak) or ``warmup_cosine`` (linear warm-up for
  ``cfg.warmup_steps`` steps, then cosine decay).
  """
  lr = float(cfg.learning_rate)
  name = cfg.schedule
  end = lr * float(cfg.end_lr_fraction)
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(
        lr, max(total_steps, 1), alpha=end / lr if lr else 0.0
    )
  if name == "warmup_cosine":
    warmup = int(cfg.warmup_steps)
    return optax.warmup_cosine_decay_schedule(
        0.0,
        lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=end,
    )
  raise ValueError(
      f"config.optimizer.schedule={name!r} is not one of {_SCHEDULES}"
  )


def make_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
  """Builds the optax optimiser named by ``cfg.name`` with its schedule.

  Gradient clipping by global norm is applied first when
  ``cfg.grad_clip_norm`` is set (> 0). Adam / AdamW take ``cfg.eps_root``
  (default 0) inside the square root of the second moment: a bilevel step
  that differentiates through the optimiser (``config.meta.virtual_step``
  "optimizer") needs it > 0, or a parameter whose gradient has been exactly
  zero so far gives ∞ · 0 = NaN (the derivative of √v at v = 0).
  """
  schedule = learning_rate_schedule(cfg, total_steps)
  name = cfg.name
  if name == "adam":
    opt = optax.adam(
        schedule, b1=cfg.b1, b2=cfg.b2, eps_root=float(cfg.eps_root)
    )
  elif name == "adamw":
    opt = optax.adamw(
        schedule,
        b1=cfg.b1,
        b2=cfg.b2,
        eps_root=float(cfg.eps_root),
        weight_decay=cfg.weight_decay,
    )
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=cfg.momentum or None)
  else:
    raise ValueError(
        f"config.optimizer.name={name!r} is not one of {_OPTIMIZERS}"
    )
  clip = float(cfg.grad_clip_norm or 0.0)
  if clip > 0:
    opt = optax.chain(optax.clip_by_global_norm(clip), opt)
  return opt
