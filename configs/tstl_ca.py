r"""TSTL-CA: two-stage triplet learning with curriculum augmentation.

Commands (arguments after ':' are comma-separated, e.g. ':quick,one_stage'):
  python launch/main.py --config configs/tstl_ca.py --workdir runs/tstl_ca
  python launch/main.py --config configs/tstl_ca.py:quick --workdir runs/q
  python launch/main.py --config configs/tstl_ca.py:ave --workdir runs/ave \
      --config.data.manual_dir=/path/to/AVE_features

Variants:
  (none)     AV-digits `pairs`, 1,600 steps (800 semi-hard + 800 curriculum).
  quick      AV-digits `pairs`, 120 steps; a minute or two on 2 CPU cores.
  one_stage  Same total steps, all semi-hard (the README's baseline).
  heldout    AV-digits `pairs_heldout`: test clips spoken only by three voices
             train never hears, 5-20 dB SNR noise (the harder setting).
  steps=N    N total steps (N/2 per stage; all semi-hard with one_stage).
  ave/vegas  Pre-extracted AVE / VEGAS features (manual download), MLPs:
             builder configs `ave/avcmr15` (the AV-CMR group's 15-class AVE
             file) and `vegas/default`; for all 28 AVE classes add
             --config.data.name=ave/full.
  seed=N     Random seed.
See README.md for runtimes and results of these commands.
"""

import ml_collections

from avjax.config_utils import parse_config_arg
from avjax.config_utils import positive_int_setting

_VARIANTS = {"quick", "one_stage", "heldout", "ave", "vegas"}


def _stage(**kwargs) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(kwargs)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants, settings = parse_config_arg(
      arg, _VARIANTS, {"seed", "steps"}, "configs/tstl_ca.py"
  )
  config = ml_collections.ConfigDict()
  config.method = "tstl_ca"
  config.seed = int(settings.get("seed", 0))
  # "bfloat16": encoders and heads compute in bfloat16 with float32
  # parameters; losses, normalisation statistics and softmaxes stay float32.
  config.compute_dtype = "float32"

  config.data = ml_collections.ConfigDict()
  config.data.name = "av_digits/pairs"
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.manual_dir = ml_collections.config_dict.placeholder(str)
  # Manual downloads: skip and count missing / unreadable item files
  # (logged per split) instead of stopping at the first one.
  config.data.skip_bad_files = False
  config.data.batch_size = 128
  # Compute log-mels of the training split once, not once per batch.
  config.data.cache_features = True

  config.model = ml_collections.ConfigDict()
  config.model.audio_encoder = "time_conv"
  config.model.visual_encoder = "conv"
  config.model.embed_dim = 64
  config.model.normalize = True
  config.model.audio_kwargs = ml_collections.ConfigDict(
      {"features": (64, 128), "kernel_size": 5, "hidden_dim": 128}
  )
  config.model.visual_kwargs = ml_collections.ConfigDict(
      {"features": (16, 32, 64), "hidden_dim": 128}
  )

  config.loss = ml_collections.ConfigDict()
  config.loss.margin = 0.2
  config.loss.metric = "euclidean"

  stage1_steps, stage2_steps = 800, 800
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 50
  config.optimizer.end_lr_fraction = 0.05

  config.log_every = 20
  config.checkpoint_every = 200
  config.eval_every = 400
  config.eval_batch_size = 512
  config.max_checkpoints_to_keep = 3

  if "heldout" in variants:
    config.data.name = "av_digits/pairs_heldout"
  if "ave" in variants or "vegas" in variants:
    if {"ave", "vegas"} <= variants:
      raise ValueError("configs/tstl_ca.py: choose one of 'ave' or 'vegas'")
    config.data.name = "ave/avcmr15" if "ave" in variants else "vegas/default"
    config.model.audio_encoder = config.model.visual_encoder = "mlp"
    config.model.embed_dim = 128
    config.model.audio_kwargs = ml_collections.ConfigDict(
        {"hidden_dims": (512,), "dropout": 0.1}
    )
    config.model.visual_kwargs = ml_collections.ConfigDict(
        {"hidden_dims": (512,), "dropout": 0.1}
    )
    config.data.batch_size = 256
    stage1_steps, stage2_steps = 3000, 2000
    config.eval_every = 1000
    config.checkpoint_every = 500
  if "quick" in variants:
    stage1_steps, stage2_steps = 60, 60
    config.data.batch_size = 64
    config.optimizer.warmup_steps = 10
    config.log_every = 10
    config.checkpoint_every = 30
    config.eval_every = 0

  if "steps" in settings:
    steps = positive_int_setting(settings, "steps", 0, "configs/tstl_ca.py")
    stage1_steps = steps // 2
    stage2_steps = steps - stage1_steps
  semihard = _stage(name="semihard", steps=stage1_steps, loss="semihard")
  curriculum = _stage(
      name="curriculum",
      steps=stage2_steps,
      loss="interpolated_hard",
      alpha_start=0.0,
      alpha_end=0.5,
      semihard_weight=0.0,
  )
  if "one_stage" in variants:
    config.stages = (
        _stage(
            name="semihard", steps=stage1_steps + stage2_steps, loss="semihard"
        ),
    )
  else:
    config.stages = (semihard, curriculum)
  return config
