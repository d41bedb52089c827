r"""Synchformer: audio-visual offset and synchronisability from sparse cues.

Commands (arguments after ':' are comma-separated, e.g. ':quick,dense'):
  python launch/main.py --config configs/synchformer.py --workdir runs/sync
  python launch/main.py --config configs/synchformer.py:quick \
      --workdir runs/sync_q
  python launch/main.py --config configs/synchformer.py:dense \
      --workdir runs/sync_dense
  python launch/main.py --config configs/synchformer.py:random_extractors \
      --workdir runs/sync_random
  python launch/main.py --config configs/synchformer.py:vggsound_sparse \
      --workdir runs/sync_vgg --config.data.manual_dir=/path/to/vggsound
  python launch/main.py --config configs/synchformer.py:lrs3 \
      --workdir runs/sync_lrs3 --config.data.manual_dir=/path/to/lrs3

The results tables (docs/results/synchformer.md; 3 seeds each, sparse and
dense, with the ablations):
  python launch/sweep.py --config configs/synchformer.py \
      --variants 'quick;quick,dense' --seeds 0,1,2 --set eval_every=150 \
      --workdir runs/tables/synchformer_quick \
      --metrics offset_top1,offset_top1_tol1,sync_acc,sync_auc,\
offset_top1_after_stage3,reference_offset_top1,reference_sync_auc,\
evidence_hit_rate,evidence_random_rate
  python launch/sweep.py --config configs/synchformer.py --seeds 0 \
      --variants 'quick,random_extractors;quick,time_tokens' \
      --workdir runs/tables/synchformer_ablations --metrics ...
  python launch/sweep.py --config configs/synchformer.py --seeds 0 \
      --variants 'quick,head_only_stage3' \
      --workdir runs/tables/synchformer_ablations --metrics ...
  python launch/sweep.py --config configs/synchformer.py \
      --variants ';dense' --seeds 0,1,2 \
      --workdir runs/tables/synchformer_default --metrics ...
  python launch/sweep.py --config configs/synchformer.py --seeds 0,1,2 \
      --variants 'quick,steps=6000;quick,steps=6000,stage1_steps=2700' \
      --workdir runs/tables/synchformer_stage1 --metrics ...

Arguments:
  (none)             AV-digits `sync` (sparse flashes + spoken digits),
                     4.8 s crops at 25 fps (14 half-overlapping segments,
                     one token each), 21 offsets over ±2 s; stage 1
                     segment contrastive, stage 2 offset classifier on the
                     frozen extractors, stage 3 synchronisability
                     fine-tuning of a copy of the sync transformer;
                     2,160 / 6,000 / 1,200 steps at batch 32, stage 2
                     at 64 (`dense`: 720 / 6,000 / 600 at batch 64).
  quick              Fewer steps, batch 16 (issue 30: about 8 minutes on 2
                     idle CPU cores).
  dense              AV-digits `sync_dense` (a moving digit + a tone whose
                     pitch follows it).
  random_extractors  Ablation: no stage 1; stages 2 and 3 (same steps) on
                     randomly initialised, frozen extractors.
  time_tokens        4 time tokens per segment and modality into the sync
                     transformer (as the official stage 2) instead of one
                     aggregated token.
  head_only_stage3   Ablation: stage 3 trains the 2-way head alone.
  vggsound_sparse    VGGSound-Sparse clips (manual download), paper timing:
                     4.8 s crops, 14 overlapping segments, 128 mel bins.
  lrs3               LRS3 clips (manual download), same timing.
  seed=N             Random seed (init, data order, offsets).
  steps=N            Total training steps, split over the stages in the
                     variant's proportions.
  stage1_steps=N     Stage 1's steps instead of its share of `steps` (the
                     other stages keep theirs): a longer segment
                     contrastive stage (docs/results/synchformer.md).

metrics.json: offset_top1, offset_top1_tol1 (stage 2's transformer; chance
1/21 = 0.048 and 61/441 = 0.138), sync_acc, sync_auc (stage 3's),
offset_top1_after_stage3 / _tol1 (stage 3's transformer with stage 2's
offset head), reference_offset_top1 / _tol1 and reference_sync_auc (the
non-learned reference, avjax.eval.sync_reference, on the same draws), and
for sparse data evidence_hit_rate against evidence_random_rate (+
per-modality rates and evidence_clips). Plots: offset_confusion.png,
evidence_*.png, val_offset_accuracy.png, training_curves.png.
"""

import ml_collections

from avjax import config_utils
from avjax.config_utils import parse_config_arg
from avjax.config_utils import positive_int_setting

common = config_utils.import_sibling(__file__, "common")

_VARIANTS = {
    "quick",
    "dense",
    "random_extractors",
    "time_tokens",
    "head_only_stage3",
    "vggsound_sparse",
    "lrs3",
}
_KEYS = {"seed", "steps", "stage1_steps"}
_NAME = "configs/synchformer.py"


def _stage(
    name: str,
    kind: str,
    steps: int,
    train: tuple[str, ...],
    exclude: tuple[str, ...] = (),
    **optimizer,
) -> ml_collections.ConfigDict:
  return common.stage(
      name,
      steps,
      kind=kind,
      train=train,
      exclude=exclude,
      optimizer=optimizer,
  )


def _split_steps(total: int, fractions: tuple[float, ...]) -> list[int]:
  """Integer steps per stage, >= 1 each, summing to ``total``."""
  if total < len(fractions):
    raise ValueError(
        f"{_NAME}: steps={total} is fewer than the " f"{len(fractions)} stages"
    )
  steps = [max(1, int(round(total * f))) for f in fractions[:-1]]
  steps.append(total - sum(steps))
  while steps[-1] < 1:  # Rounding up left the last stage none: take one.
    steps[steps.index(max(steps[:-1]))] -= 1
    steps[-1] += 1
  return steps


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants, settings = parse_config_arg(arg, _VARIANTS, _KEYS, _NAME)
  datasets = variants & {"dense", "vggsound_sparse", "lrs3"}
  if len(datasets) > 1:
    raise ValueError(f"{_NAME}: choose at most one of {sorted(datasets)}")
  config = common.base_config("synchformer", settings.get("seed", 0))
  config.data.name = "av_digits/sync"
  config.data.batch_size = 32
  config.data.fps = 25.0
  config.data.sample_rate = 16000
  # 4.8 s: 7 stage-1 segments, 14 half-overlapping stage-2 segments; with
  # ±2 s offsets audio and video overlap by >= 2.8 s (the paper's geometry).
  config.data.crop_frames = 120
  config.data.num_offsets = 21
  config.data.max_offset = 2.0
  config.data.jitter = 0.05
  config.data.audio_noise = 0.01  # max noise std, fraction of full scale
  config.data.log_mel = ml_collections.ConfigDict(
      {
          "n_fft": 512,
          "win_length": 400,
          "hop_length": 160,
          "n_mels": 40,
          "fmin": 20.0,
          "fmax": 8000.0,
      }
  )

  config.model = ml_collections.ConfigDict()
  config.model.segment_frames = 16  # 0.64 s
  config.model.segment_stride = 8  # stages 2/3: 50 % overlap
  # Stages 2/3: time tokens per segment and modality entering the sync
  # transformer (the official stage 2 keeps 8 visual / 6 audio; variant
  # `time_tokens`: 4, 0.16 s each) or 0: one aggregated token per segment.
  # AV-digits default 0: with 4 (or 2, or ideal event tokens) stage 2 stayed
  # on its plateau for the whole budget where one token per segment left it
  # (docs/results/synchformer.md).
  config.model.time_tokens = 0
  config.model.visual = ml_collections.ConfigDict(
      {
          "width": 64,
          "patch": 8,
          "patch_features": 32,
          "num_layers": 1,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
      }
  )
  config.model.audio = ml_collections.ConfigDict(
      {
          "width": 64,
          "patch": 4,
          "num_layers": 1,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
      }
  )
  # Dropout 0 (the paper: 0.1): on frozen stage-1 features of AV-digits,
  # with 0.1 validation offset accuracy stayed at chance for the first ~400
  # of 1,000 steps; without it the plateau was ~100 steps and the accuracy
  # after 1,000 steps the same or better (0.15 vs 0.15) — measured on cached
  # features, B=32, lr 1e-3. Real-data variants use 0.1.
  # positions: "sequence" (the official code's, one per place) or
  # "shared_time" (a visual token and its audio twin share one time
  # embedding): on ideal tokens it left the plateau sooner, on learned ones
  # it did not raise the offset accuracy (docs/results/synchformer.md).
  config.model.sync = ml_collections.ConfigDict(
      {
          "width": 64,
          "num_layers": 2,
          "num_heads": 4,
          "mlp_ratio": 2.0,
          "dropout": 0.0,
          "positions": "sequence",
      }
  )

  # Stage 1's segment InfoNCE.
  config.loss = ml_collections.ConfigDict()
  config.loss.temperature = common.temperature(0.07, 0.001, 0.5)

  config.optimizer.name = "adamw"
  config.optimizer.grad_clip_norm = 1.0

  config.eval_batch_size = 100
  # offset_top1(_tol1), sync_acc, sync_auc from stage 2's transformer, and
  # the same offsets read through stage 3's fine-tuned copy.
  config.evals.sync = common.sync_offset_eval(
      offset_outputs=("offset", "offset_after_stage3")
  )
  # Evaluation settings of the method's own diagnostics (free to change
  # between resumed runs).
  config.diagnostics = ml_collections.ConfigDict()
  config.diagnostics.val_max_clips = 100  # x 3 stored draws
  config.diagnostics.evidence_plots = 3
  # The non-learned reference's cue (avjax.eval.sync_reference).
  config.diagnostics.reference_cue = "onset"

  # Steps of stages 1, 2, 3 (`steps=N` rescales them in proportion). Sparse
  # stage 1 is three times dense's: at 720 steps its segment retrieval was
  # still climbing steeply, and the longer stage 1 raised sparse offsets and
  # synchronisability; dense stage 1 is solved by 720 steps. Sparse stage 2
  # takes 64 examples per step (two data batches) for 6,000 steps: with
  # 92k examples (2,880 x 32) its offsets stopped at 0.33, with 384k they
  # reach the 0.5 target (docs/results/synchformer.md).
  stage_steps = (2160, 6000, 1200)
  stage2_batch_size = 64
  config.eval_every = 200
  config.max_checkpoints_to_keep = 2

  if "dense" in variants:
    config.data.name = "av_digits/sync_dense"
    config.diagnostics.reference_cue = "pitch"
    # On dense cues stage 2 leaves its plateau after a number of examples,
    # not of steps (about 110-160k on ideal tokens at batch 32, 64 or 128,
    # about 180k on the learned features), and climbs faster after it at a
    # larger batch: batch 64 and a 6,000-step stage 2 (384k examples); stage
    # 3 keeps its examples (docs/results/synchformer.md).
    config.data.batch_size = 64
    stage_steps = (720, 6000, 600)
    stage2_batch_size = None  # the data batch
  if "vggsound_sparse" in variants or "lrs3" in variants:
    config.data.name = (
        "vggsound_sparse" if "vggsound_sparse" in variants else "lrs3"
    )
    config.data.crop_frames = 120  # 4.8 s
    config.data.audio_noise = 0.0
    config.data.log_mel.update({"n_fft": 1024, "n_mels": 128})
    config.data.batch_size = 16
    for part in (config.model.visual, config.model.audio, config.model.sync):
      part.update({"width": 256, "num_heads": 8})
    config.model.visual.patch = 16
    config.model.time_tokens = 8  # the official visual count
    config.model.sync.update({"num_layers": 3, "dropout": 0.1})
    stage_steps = (30000, 24000, 6000)
    stage2_batch_size = None
    config.optimizer.learning_rate = 1e-4
    config.optimizer.warmup_steps = 1000
    config.eval_every = 2000
    config.checkpoint_every = 1000
  if "quick" in variants:
    # On sparse cues stage 2 leaves its plateau after a number of steps
    # rather than of examples: batch 16 buys twice the steps of batch 32
    # (dense cues need examples, which a few minutes cannot buy).
    stage_steps = (450, 1800, 750)
    stage2_batch_size = None
    config.data.batch_size = 16
    config.optimizer.warmup_steps = 20
    config.log_every = 25
    config.checkpoint_every = 100
    config.eval_every = 0
    config.diagnostics.val_max_clips = 50

  total = sum(stage_steps)
  steps = positive_int_setting(settings, "steps", total, _NAME)
  s1, s2, s3 = _split_steps(steps, tuple(s / total for s in stage_steps))
  s1 = positive_int_setting(settings, "stage1_steps", s1, _NAME)
  if "stage1_steps" in settings and "random_extractors" in variants:
    raise ValueError(f"{_NAME}: random_extractors has no stage 1 to set")
  stage1 = _stage(
      "segment_contrastive",
      "contrastive",
      s1,
      ("visual", "audio", "temperature"),
  )
  stage2 = _stage("offset", "offset", s2, ("sync",), ("sync/sync_head",))
  if stage2_batch_size:
    stage2.batch_size = stage2_batch_size
  # Stage 3 fine-tunes a copy of stage 2's sync transformer with the 2-way
  # head (the official synchronisability fine-tuning); its offset head stays
  # frozen, so offset_top1_after_stage3 shows what the transformer keeps.
  stage3 = _stage(
      "synchronisability",
      "sync",
      s3,
      ("synchronisability",),
      ("synchronisability/offset_head",),
  )
  if "head_only_stage3" in variants:  # Ablation: the 2-way head alone.
    stage3.train = ("synchronisability/sync_head",)
    stage3.exclude = ()
  if "time_tokens" in variants:  # The official layout: time tokens.
    config.model.time_tokens = 4
  if "random_extractors" in variants:
    config.stages = (stage2, stage3)
  else:
    config.stages = (stage1, stage2, stage3)
  return config
