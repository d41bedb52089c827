r"""CMD: cross-modal denoising for spoken-caption ↔ image retrieval.

Commands (arguments after ':' are comma-separated, e.g. ':quick,no_cmd'):
  python launch/main.py --config configs/cmd.py --workdir runs/cmd
  python launch/main.py --config configs/cmd.py:quick --workdir runs/cmd_q
  python launch/main.py --config configs/cmd.py:no_cmd --workdir runs/cmd_base
  python launch/main.py --config configs/cmd.py:flickr8k_audio \
      --workdir runs/cmd_f8k --config.data.manual_dir=/path/to/flickr8k
  python launch/main.py --config configs/cmd.py:spokencoco \
      --workdir runs/cmd_coco --config.data.manual_dir=/path/to/SpokenCOCO

The README table (contrastive-only vs contrastive + CMD, 3 seeds, the
default 1,500 steps):
  python launch/sweep.py --config configs/cmd.py \
      --variants 'no_cmd;' --seeds 0,1,2 --workdir runs/tables/cmd1500 \
      --metrics \
      r1_speech2image,r5_speech2image,r10_speech2image,r1_image2speech,r5_image2speech,r10_image2speech,r1_mean,exact_r1_mean,head_params
The ablations of the head (README; the same workdir, so the first two
variants are the table's runs; the second command re-reads the runs for the
head's distances, which no_cmd has not):
  python launch/sweep.py --config configs/cmd.py \
      --variants 'no_cmd;;shuffled_context;stop_gradient_input;no_stop_target' \
      --seeds 0,1,2 --workdir runs/tables/cmd1500 \
      --metrics \
      r1_speech2image,r5_speech2image,r10_speech2image,r1_image2speech,r5_image2speech,r10_image2speech,r1_mean,exact_r1_mean,head_params
  python launch/sweep.py --config configs/cmd.py \
      --variants ';shuffled_context;stop_gradient_input;no_stop_target' \
      --seeds 0,1,2 --workdir runs/tables/cmd1500 \
      --metrics \
      cmd_recon_dist,cmd_recon_dist_shuffled,cmd_corrupt_dist,cmd_recon_ratio
Training-time overhead of the head (step-time ratio, measured side by side):
  python launch/bench_cmd.py --config configs/cmd.py

Arguments:
  (none)          AV-digits `captions` (64×64 canvases of 2–4 digits ↔ their
                  spoken sequence), small encoders, CMD on speech frames,
                  1,500 steps.
  quick           Fewer steps (300) and a smaller batch (32); a minute or
                  two on 2 CPU cores (tests, notebooks); it already uses
                  digit identity (README).
  no_cmd          The contrastive-only baseline: same encoders and steps,
                  no head (cmd.weight = 0).
  symmetric       Also denoise image patches from speech frames.
  shuffled_context
                  Ablation: the head cross-attends to another example's
                  image (a roll over the batch), so it cannot use the pair.
  stop_gradient_input
                  Ablation: gradient stopped on the speech frames before
                  they are corrupted (the head's noisy input), so the
                  speech encoder gets no CMD gradient through it.
  no_stop_target  Ablation: no stop-gradient on the clean target frames
                  (cmd.stop_gradient_target=False).
  noise=mix|gaussian|mask|swap
                  Speech corruption preset (default mix: noise + mask +
                  swap).
  flickr8k_audio  Flickr8k Audio Captions, 224×224 images (manual download).
  spokencoco      SpokenCOCO, 224×224 images (manual download), on the
                  Karpathy splits of the published retrieval results
                  (`spokencoco/karpathy_img224`: 5k-image val and test; needs
                  Karpathy's dataset_coco.json in the manual directory).
  seed=N          Random seed (init, data order, corruption).
  steps=N         N training steps instead of the variant's default.

metrics.json: r{1,5,10}_speech2image (speech→image),
r{1,5,10}_image2speech (image→speech), r{k}_mean, r_mean, map_*, where a canvas is relevant to a caption when it
has the caption's digit sequence (AV-digits: a caption says only the
sequence; Flickr8k Audio / SpokenCOCO: relevant = the caption's image);
the same with relevance by exact image id as exact_r{k}_*, exact_map_*;
temperature, head_params (0 without the head), encoder_params and, with
the head, its mean per-frame distances to the clean test frames under the
training corruption: cmd_recon_dist (the head's reconstruction from the
pair's image), cmd_recon_dist_shuffled (from another example's image),
cmd_corrupt_dist (the corrupted input itself) and cmd_recon_ratio =
cmd_recon_dist / cmd_corrupt_dist.
"""

import ml_collections

from avjax import config_utils

common = config_utils.import_sibling(__file__, "common")

_VARIANTS = {
    "quick",
    "no_cmd",
    "symmetric",
    "shuffled_context",
    "stop_gradient_input",
    "no_stop_target",
    "flickr8k_audio",
    "spokencoco",
}
_KEYS = {"seed", "noise", "steps"}
# Speech-frame corruption presets (papers.md: ratios not given by the paper).
NOISE_PRESETS = {
    "mix": {"noise_std": 0.2, "mask_fraction": 0.3, "swap_fraction": 0.2},
    "gaussian": {"noise_std": 0.5, "mask_fraction": 0.0, "swap_fraction": 0.0},
    "mask": {"noise_std": 0.0, "mask_fraction": 0.5, "swap_fraction": 0.0},
    "swap": {"noise_std": 0.0, "mask_fraction": 0.0, "swap_fraction": 0.4},
}


def _corruption(**kwargs) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(kwargs)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants, settings = config_utils.parse_config_arg(
      arg, _VARIANTS, _KEYS, "configs/cmd.py"
  )
  noise = settings.get("noise", "mix")
  if noise not in NOISE_PRESETS:
    raise ValueError(
        f"configs/cmd.py: noise={noise!r} is not one of "
        f"{sorted(NOISE_PRESETS)}"
    )
  if {"flickr8k_audio", "spokencoco"} <= variants:
    raise ValueError(
        "configs/cmd.py: choose one of 'flickr8k_audio' or " "'spokencoco'"
    )
  config = common.base_config("cmd", settings.get("seed", 0))

  config.data.name = "av_digits/captions"
  # SpokenCOCO: the directory holding COCO's train2014/ and val2014/
  # (None: <manual_dir>/mscoco_img if it exists, else <manual_dir>).
  config.data.image_root = ml_collections.config_dict.placeholder(str)
  config.data.batch_size = 64
  # Crop / pad waveforms to this length (None: the dataset's fixed length).
  config.data.max_audio_seconds = ml_collections.config_dict.placeholder(float)
  # 20 ms hop: 176 frames for AV-digits' 3.5 s clips, 44 after the convs.
  config.data.log_mel = ml_collections.ConfigDict(
      {"n_mels": 40, "hop_length": 320, "win_length": 400, "n_fft": 512}
  )

  config.model = ml_collections.ConfigDict()
  config.model.embed_dim = 64
  config.model.speech = ml_collections.ConfigDict(
      {
          "conv_features": (64, 64),
          "conv_strides": (2, 2),
          "conv_kernel": 3,
          "input_norm": True,
          "width": 64,
          "num_layers": 2,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
          "pooling": "mean",
      }
  )
  # A small CNN: three 3×3 convs (16, 32, 64 channels, GELU), each followed
  # by 2×2 max pooling, turn the 64×64 canvas into an 8×8 grid of 64-wide
  # tokens (each seeing ~22 px, about one digit); the global embedding
  # max-pools the grid (a "which digits are present" detector) and the CMD
  # head attends to the tokens. The hybrid ViT used before (stride-2 convs
  # with LayerNorm, 2 transformer layers) learned digit identity ~10× more
  # slowly, even with digit labels (README, "Why learning started late").
  config.model.image = ml_collections.ConfigDict(
      {
          "patch_size": 1,
          "stem_features": (16, 32, 64),
          "stem_downsample": "max_pool",
          "stem_norm": False,
          "width": 64,
          "num_layers": 0,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
          "pooling": "max",
      }
  )

  # Training-time augmentation (SpecAugment masks; image translations); off
  # by default: at this step budget it slowed learning more than it curbed
  # over-fitting.
  config.augment = ml_collections.ConfigDict(
      {
          "time_masks": 0,
          "max_time_width": 8,
          "freq_masks": 0,
          "max_freq_width": 6,
          "image_shift": 0,
      }
  )

  # Symmetric InfoNCE with a learned temperature, 0.07 in [0.01, 0.5].
  config.loss = ml_collections.ConfigDict()
  config.loss.temperature = common.temperature(0.07, 0.01, 0.5)

  config.cmd = ml_collections.ConfigDict()
  config.cmd.weight = 1.0  # 0 removes the head (the contrastive baseline).
  config.cmd.symmetric = False
  config.cmd.image_weight = 1.0
  config.cmd.speech_corruption = _corruption(**NOISE_PRESETS[noise])
  config.cmd.image_corruption = _corruption(
      noise_std=0.2, mask_fraction=0.3, swap_fraction=0.2
  )
  config.cmd.distance = "mse"
  config.cmd.normalize = True
  config.cmd.stop_gradient_target = True
  # Ablations: "shuffled" = another example's image as context; stopping
  # the gradient on the head's (corrupted) input.
  config.cmd.context = "matched"
  config.cmd.stop_gradient_input = False
  config.cmd.loss_on = "all"
  config.cmd.head = ml_collections.ConfigDict(
      {
          "width": 64,
          "num_layers": 2,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "self_attention": False,
          "query_positions": True,
          "residual_output": True,
          "dropout": 0.0,
      }
  )

  # With the CNN image encoder digit identity is used from the first few
  # hundred steps (test R@1 still rising at 1,500; docs/results/cmd.md).
  steps = 1500
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 1.0

  config.checkpoint_every = 500
  config.eval_batch_size = 250
  config.max_checkpoints_to_keep = 2
  # A canvas is relevant to a caption when it has the caption's digit
  # sequence (`group`; on Flickr8k Audio / SpokenCOCO the group is the
  # image); "exact_*" keys: relevance by exact image id. The gallery holds
  # each image once (several captions may share it).
  config.evals.retrieval = common.retrieval_eval(
      "speech", "image", "image_id", groups="group", gallery_unique="image_id"
  )
  config.evals.retrieval_exact = common.retrieval_eval(
      "speech", "image", "image_id", gallery_unique="image_id", prefix="exact_"
  )

  if "flickr8k_audio" in variants or "spokencoco" in variants:
    config.data.name = (
        "flickr8k_audio/img224"
        if "flickr8k_audio" in variants
        else "spokencoco/karpathy_img224"
    )
    config.data.max_audio_seconds = 8.0
    config.data.batch_size = 128
    config.data.log_mel.n_mels = 80
    config.model.embed_dim = 256
    config.model.speech.update(
        {
            "conv_features": (256, 256, 256),
            "conv_strides": (2, 2, 2),
            "width": 256,
            "num_layers": 4,
            "num_heads": 4,
            "mlp_ratio": 4.0,
            "dropout": 0.1,
        }
    )
    config.model.image.update(
        {
            "patch_size": 16,
            "stem_features": (),
            "width": 256,
            "num_layers": 6,
            "num_heads": 4,
            "mlp_ratio": 4.0,
            "dropout": 0.1,
            "pooling": "mean",
        }
    )
    config.cmd.head.update({"width": 256, "num_layers": 2, "mlp_ratio": 4.0})
    steps = 20000 if "flickr8k_audio" in variants else 60000
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.warmup_steps = 1000
    config.log_every = 100
    config.checkpoint_every = 1000
    config.eval_every = 5000
    config.eval_batch_size = 128
  if "quick" in variants:
    steps = 300
    config.data.batch_size = 32
    config.optimizer.warmup_steps = 20
    config.log_every = 25
    config.checkpoint_every = 75
    config.eval_every = 0
  if "no_cmd" in variants:
    config.cmd.weight = 0.0
  if "symmetric" in variants:
    config.cmd.symmetric = True
  if "shuffled_context" in variants:
    config.cmd.context = "shuffled"
  if "stop_gradient_input" in variants:
    config.cmd.stop_gradient_input = True
  if "no_stop_target" in variants:
    config.cmd.stop_gradient_target = False

  steps = config_utils.positive_int_setting(
      settings, "steps", steps, "configs/cmd.py"
  )
  config.stages = (common.stage("train", steps),)
  return config
