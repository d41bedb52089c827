r"""MAMA: angular-margin video–text contrastive learning + meta-weights.

Commands (arguments after ':' are comma-separated, e.g. ':quick,noise=40'):
  python launch/main.py --config configs/mama.py --workdir runs/mama
  python launch/main.py --config configs/mama.py:quick --workdir runs/mama_q
  python launch/main.py --config configs/mama.py:noise=40,infonce \
      --workdir runs/mama_infonce40
  python launch/main.py --config configs/mama.py:msrvtt \
      --workdir runs/mama_msrvtt --config.data.manual_dir=/path/to/MSRVTT

The README table (4 variants × {0, 20, 40 % noise, long tail}, 3 seeds;
one sweep per data setting, D in noise=0, noise=20, noise=40, longtail):
  python launch/sweep.py --config configs/mama.py --seeds 0,1,2 \
      --variants \
      'noise=0,infonce;noise=0,margin_only;noise=0,meta_only;noise=0' \
      --workdir runs/tables/mama_noise0 \
      --metrics r1_text2video,r1_video2text,mc_accuracy,weight_clean
  python launch/sweep.py --config configs/mama.py --seeds 0,1,2 \
      --variants \
      'noise=20,infonce;noise=20,margin_only;noise=20,meta_only;noise=20' \
      --workdir runs/tables/mama_noise20 \
      --metrics r1_text2video,r1_video2text,mc_accuracy,weight_clean,weight_noisy,weight_auc
  python launch/sweep.py --config configs/mama.py --seeds 0,1,2 \
      --variants \
      'noise=40,infonce;noise=40,margin_only;noise=40,meta_only;noise=40' \
      --workdir runs/tables/mama_noise40 \
      --metrics r1_text2video,r1_video2text,mc_accuracy,weight_clean,weight_noisy,weight_auc
  python launch/sweep.py --config configs/mama.py --seeds 0,1,2 \
      --variants \
      'longtail,infonce;longtail,margin_only;longtail,meta_only;longtail' \
      --workdir runs/tables/mama_longtail \
      --metrics r1_text2video,r1_video2text,mc_accuracy,weight_clean
What a perfect weighting could reach (a reference reading the noise flags):
  python launch/sweep.py --config configs/mama.py --seeds 0,1,2 \
      --variants 'noise=20,clean_oracle;noise=40,clean_oracle' \
      --workdir runs/tables/mama_oracle --metrics r1_text2video,r1_video2text,mc_accuracy
One point of the search that chose ``config.meta`` (validation every 100
steps; the other points change the --set values, docs/results/mama.md):
  python launch/sweep.py --config configs/mama.py --seeds 0 \
      --variants 'noise=40' --set eval_every=100 --set meta.normalize=False \
      --workdir runs/search/unnormalized --metrics r1_text2video,weight_auc
Step-time overhead of the bilevel step (side by side with the plain step):
  python launch/bench_bilevel.py --config configs/mama.py

Arguments:
  (none)        AV-digits `video_text` (8 frames of 32×32, 1–3 moving digits
                ↔ generated captions), margin 0.1 rad + meta-weight net
                (MAMA), 600 steps of batch 64.
  quick         150 steps of batch 32; a minute or two on 2 CPU cores.
  noise=F       F % noisy train pairs, F in {0, 20, 40} (the
                `video_text_noise{F}` config).
  longtail      Long-tailed train classes and motions (`video_text_longtail`).
  infonce       Plain InfoNCE: margin 0, no meta-weights.
  margin_only   Angular margin, no meta-weights.
  meta_only     Meta-weights, margin 0.
  clean_oracle  Reference, not a method: InfoNCE on the clean pairs of each
                batch only (reads the noise flags; margin 0, no weights).
  paraphrases   Paraphrases as extra training pairs.
  msrvtt        MSR-VTT (manual download; 9k train, 1k-A test; meta set
                carved from train), larger encoders.
  seed=N        Random seed (init, data order).
  steps=N       N training steps instead of the variant's default.

metrics.json: r{1,5,10}_{text2video,video2text}, r{k}_mean, medr_{text2video,video2text}, map_*,
mc_accuracy (5-way), logit_scale, and on the first train pairs
loss_clean, weight_clean and, where some pairs are noisy, loss_noisy,
weight_noisy, weight_gap, weight_auc (P(w_clean > w_noisy)) and loss_auc
(P(loss_noisy > loss_clean)) (weights are all 1 without the weight net);
plots/weight_vs_loss.png with the weight net. Every validation evaluation
(eval_every > 0) logs the same weight keys as val/*; the train log has the
in-batch weight_clean / weight_noisy / weight_auc / loss_auc and
meta_grad_norm (mean over the steps since the last log line).
"""

import ml_collections

from avjax import config_utils

common = config_utils.import_sibling(__file__, "common")

_VARIANTS = {
    "quick",
    "longtail",
    "infonce",
    "margin_only",
    "meta_only",
    "clean_oracle",
    "paraphrases",
    "msrvtt",
}
_KEYS = {"seed", "steps", "noise"}
_NOISE = (0, 20, 40)
_NAME = "configs/mama.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants, settings = config_utils.parse_config_arg(
      arg, _VARIANTS, _KEYS, _NAME
  )
  noise = settings.get("noise", 0)
  if noise not in _NOISE:
    raise ValueError(
        f"{_NAME}: noise={noise!r} is not one of {_NOISE} "
        "(percent of noisy train pairs)"
    )
  if (
      len(variants & {"infonce", "margin_only", "meta_only", "clean_oracle"})
      > 1
  ):
    raise ValueError(
        f"{_NAME}: choose one of infonce, margin_only, "
        "meta_only, clean_oracle (the default is both parts)"
    )
  if "msrvtt" in variants and (noise or "longtail" in variants):
    raise ValueError(
        f"{_NAME}: noise=F and longtail are AV-digits settings, "
        "not msrvtt ones"
    )
  if noise and "longtail" in variants:
    raise ValueError(
        f"{_NAME}: noise=F and longtail are separate "
        "AV-digits configs; choose one"
    )
  config = common.base_config("mama", settings.get("seed", 0))

  config.data.name = "av_digits/video_text"
  if noise:
    config.data.name = f"av_digits/video_text_noise{noise}"
  if "longtail" in variants:
    config.data.name = "av_digits/video_text_longtail"
  config.data.batch_size = 64
  config.data.max_tokens = 32  # Canonical AV-digits captions: <= 32.
  # Tokenise and stack the training and meta splits once, in memory (AV-digits
  # `video_text`: 25 MB of frames), instead of decoding records per batch.
  config.data.cache_features = True
  config.data.use_paraphrases = "paraphrases" in variants
  if config.data.use_paraphrases:
    config.data.max_tokens = 48  # The longest paraphrases: ~45 tokens.

  config.model = ml_collections.ConfigDict()
  config.model.embed_dim = 64
  config.model.video = ml_collections.ConfigDict(
      {
          "patch_size": 4,
          "patch_features": 32,
          "conv_features": (),
          "frame_dim": 64,
          "num_layers": 2,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
          "max_frames": 8,
      }
  )
  config.model.text = ml_collections.ConfigDict(
      {
          "width": 64,
          "num_layers": 2,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
      }
  )

  config.loss = ml_collections.ConfigDict()
  config.loss.margin = 0.1  # radians; 0 gives InfoNCE.
  # Learned logit scale 1/τ from 1/0.07, capped at 100 (τ >= 0.01; the
  # upper bound of τ, 1, is never reached).
  config.loss.temperature = common.temperature(
      0.07, 0.01, 1.0, parametrization="log_logit_scale"
  )
  config.loss.clean_oracle = False

  # Meta-weighting (avjax/train/bilevel.py): Meta-Weight-Net's net and weight
  # optimiser except where the search in docs/results/mama.md chose otherwise.
  config.meta = ml_collections.ConfigDict()
  config.meta.enabled = True
  config.meta.split = "meta"
  # Meta batch size; None: data.batch_size (Meta-Weight-Net: both 100).
  config.meta.batch_size = ml_collections.config_dict.placeholder(int)
  # Through the model's own optax transformation (Adam), not an SGD step at
  # Adam's lr: chosen by the search in docs/results/mama.md.
  config.meta.virtual_step = "optimizer"  # or "sgd"
  config.meta.virtual_lr = ml_collections.config_dict.placeholder(float)
  config.meta.meta_every = 1
  config.meta.meta_start = 0
  config.meta.normalize = True  # Σ wᵢℓᵢ / Σ wᵢ (search: docs/results/mama.md)
  config.meta.net = ml_collections.ConfigDict(
      {
          "hidden_dims": (100,),
          "activation": "relu",
          "output_activation": "sigmoid",
          # Loss divisor at the net's input; None: ln(data.batch_size).
          "input_scale": ml_collections.config_dict.placeholder(float),
      }
  )
  # Meta-Weight-Net's Adam 1e-3, without its weight decay (1e-4): the
  # search's best on validation (docs/results/mama.md).
  config.meta.optimizer = ml_collections.ConfigDict(
      {"name": "adam", "learning_rate": 1e-3, "weight_decay": 0.0}
  )

  steps = 600
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 1.0

  config.checkpoint_every = 500
  config.eval_batch_size = 250
  config.weight_eval_pairs = 2048  # Train pairs in the weight-vs-loss plot.
  config.max_checkpoints_to_keep = 2
  # Text ↔ video retrieval (caption i describes video i) and 5-way multiple
  # choice with fixed distractors.
  config.evals.retrieval = common.retrieval_eval(
      "text", "video", relevance="video_id", median_rank=True
  )
  config.evals.multiple_choice = common.multiple_choice_eval()

  if "msrvtt" in variants:
    config.data.name = "msrvtt/frames8_res64"
    config.data.cache_features = False  # 9k videos: 0.9 GB of frames.
    config.data.batch_size = 128
    config.data.max_tokens = 32
    config.model.embed_dim = 256
    config.model.video.update(
        {
            "patch_size": 8,
            "patch_features": 64,
            "conv_features": (128,),
            "frame_dim": 256,
            "num_layers": 4,
            "dropout": 0.1,
        }
    )
    config.model.text.update({"width": 256, "num_layers": 4, "dropout": 0.1})
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.warmup_steps = 1000
    steps = 20000
    config.log_every = 100
    config.checkpoint_every = 1000
    config.eval_every = 0  # MSR-VTT 9k / 1k-A has no validation split.
  if "quick" in variants:
    steps = 150
    config.data.batch_size = 32
    config.optimizer.warmup_steps = 20
    config.log_every = 25
    config.checkpoint_every = 75
    config.weight_eval_pairs = 512
  if variants & {"infonce", "meta_only", "clean_oracle"}:
    config.loss.margin = 0.0
  if variants & {"infonce", "margin_only", "clean_oracle"}:
    config.meta.enabled = False
  if config.meta.enabled:
    # Differentiating through Adam needs a floor under sqrt(v) (see
    # avjax/train/optim.py); 1e-16 inside the root is Adam's own eps (1e-8)
    # outside it. The arms without meta-weights keep eps_root = 0.
    config.optimizer.eps_root = 1e-16
  config.loss.clean_oracle = "clean_oracle" in variants

  steps = config_utils.positive_int_setting(settings, "steps", steps, _NAME)
  config.stages = (common.stage("train", steps),)
  return config
