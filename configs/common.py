"""The base every config builds on: shared fields and evaluator entries.

``base_config(method, seed)`` holds every field the shared code reads —
optimiser, logging, checkpointing, evaluation batch size, compute dtype,
the data block's paths — with the defaults a method overrides only where it
differs. The ``*_eval`` helpers build complete ``config.evals`` entries
(``avjax.eval.evaluators``). Config files import this module with
``avjax.config_utils.import_sibling(__file__, "common")``.
"""

from collections.abc import Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict


def base_config(method: str, seed: int = 0) -> ConfigDict:
  """A config with the shared fields; the method file fills in the rest.

  Args:
    method: the registered method name (``config.method``).
    seed: random seed (initialisation, data order).
  """
  config = ConfigDict()
  config.method = method
  config.seed = int(seed)
  # "float32" or "bfloat16": the dtype encoders and heads compute in
  # (parameters stay float32; losses, normalisation statistics and
  # softmaxes run in float32).
  config.compute_dtype = "float32"

  config.data = ConfigDict()
  config.data.name = ""
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.manual_dir = ml_collections.config_dict.placeholder(str)
  config.data.skip_bad_files = False
  config.data.cache_features = False
  config.data.batch_size = 64

  config.optimizer = ConfigDict()
  config.optimizer.name = "adam"  # adam | adamw | sgd
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "warmup_cosine"  # constant | cosine | ...
  config.optimizer.warmup_steps = 50
  config.optimizer.end_lr_fraction = 0.05
  config.optimizer.grad_clip_norm = 0.0  # 0: no clipping
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  # > 0 (e.g. 1e-16) lets a bilevel step differentiate through Adam.
  config.optimizer.eps_root = 0.0
  config.optimizer.weight_decay = 1e-4  # adamw only
  config.optimizer.momentum = 0.9  # sgd only

  config.log_every = 50
  config.checkpoint_every = 200
  config.eval_every = 0  # 0: evaluate on validation only at the end
  config.max_checkpoints_to_keep = 3
  config.eval_batch_size = 256
  config.evals = ConfigDict()
  return config


def stage(name: str, steps: int, **options) -> ConfigDict:
  """One ``config.stages`` entry: its name, steps and method options."""
  return ConfigDict(dict(name=name, steps=int(steps), **options))


def retrieval_eval(
    query: str,
    gallery: str,
    relevance: str,
    groups: str = "",
    gallery_unique: str = "",
    ks: Sequence[int] = (1, 5, 10),
    median_rank: bool = False,
    prefix: str = "",
    plot: bool = False,
) -> ConfigDict:
  """A ``retrieval`` evaluator entry (``avjax/eval/evaluators/retrieval.py``
  documents the fields)."""
  return ConfigDict(
      dict(
          type="retrieval",
          query=query,
          gallery=gallery,
          relevance=relevance,
          groups=groups,
          gallery_unique=gallery_unique,
          ks=tuple(ks),
          median_rank=median_rank,
          prefix=prefix,
          plot=plot,
      )
  )


def linear_probe_eval(
    modalities: Sequence[str],
    label: str,
    num_classes: int,
    l2_grid: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1),
    steps: int = 500,
    fit_on: str = "full",
    fewshot_per_class: int = 0,
    fewshot_draws: int = 1,
) -> ConfigDict:
  """A ``linear_probe`` evaluator entry (fields documented in
  ``avjax/eval/evaluators/linear_probe.py``)."""
  return ConfigDict(
      dict(
          type="linear_probe",
          modalities=tuple(modalities),
          label=label,
          num_classes=int(num_classes),
          l2_grid=tuple(l2_grid),
          steps=int(steps),
          fit_on=fit_on,
          fewshot_per_class=int(fewshot_per_class),
          fewshot_draws=int(fewshot_draws),
      )
  )


def multiple_choice_eval(
    video: str = "video",
    text: str = "text",
    captions: str = "caption",
    num_choices: int = 5,
    seed: int = 0,
    prefix: str = "",
) -> ConfigDict:
  """A ``multiple_choice`` evaluator entry (fields documented in
  ``avjax/eval/evaluators/multiple_choice.py``)."""
  return ConfigDict(
      dict(
          type="multiple_choice",
          video=video,
          text=text,
          captions=captions,
          num_choices=int(num_choices),
          seed=int(seed),
          prefix=prefix,
      )
  )


def temperature(
    init: float,
    minimum: float | None = None,
    maximum: float | None = None,
    learn: bool = True,
    parametrization: str = "log_temperature",
) -> ConfigDict:
  """A ``config.loss.temperature`` block (``avjax.models.temperature``):
  learned in [minimum, maximum] as log τ (or ``"log_logit_scale"``,
  log(1 / τ)), or fixed at ``init`` with ``learn=False`` (the bounds then
  default to ``init`` and are not used)."""
  return ConfigDict(
      dict(
          init=float(init),
          min=float(init if minimum is None else minimum),
          max=float(init if maximum is None else maximum),
          learn=learn,
          parametrization=parametrization,
      )
  )


def sync_offset_eval(
    predict: str = "sync_offsets",
    offset_outputs: Sequence[str] = ("offset",),
    offset_label: str = "offset_label",
    tolerance: int = 1,
    sync_output: str = "sync",
    sync_label: str = "sync_label",
    prefix: str = "",
) -> ConfigDict:
  """A ``sync_offset`` evaluator entry (fields documented in
  ``avjax/eval/evaluators/sync_offset.py``)."""
  return ConfigDict(
      dict(
          type="sync_offset",
          predict=predict,
          offset_outputs=tuple(offset_outputs),
          offset_label=offset_label,
          tolerance=int(tolerance),
          sync_output=sync_output,
          sync_label=sync_label,
          prefix=prefix,
      )
  )
