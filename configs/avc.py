r"""AVC: positive / negative sampling for audio-visual correspondence.

Commands (arguments after ':' are comma-separated):
  python launch/main.py --config configs/avc.py --workdir runs/avc
  python launch/main.py --config configs/avc.py:quick --workdir runs/avc_q
  python launch/main.py --config configs/avc.py:strategy=soft,per_class=20 \
      --workdir runs/avc_soft20
  python launch/main.py --config configs/avc.py:binary,strategy=hard \
      --workdir runs/avc_bin_hard --config.sampling.mining_space=cross
  python launch/main.py --config configs/avc.py:strategy=soft \
      --workdir runs/avc_pseudo --config.sampling.labels_file=preds.csv

The README table (5 strategies × 2 sizes × balanced/imbalanced × 3 seeds):
  JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache python launch/sweep.py \
      --config configs/avc.py --seeds 0,1,2 --workdir runs/avc_table \
      --metrics probe_acc_audio,probe_acc_visual,fewshot_acc_audio,fewshot_acc_visual \
      --variants "$(python configs/avc.py)"
(`python configs/avc.py` prints the 20 ';'-separated rows; the compilation
cache lets the 12 runs of each strategy share one compilation.) Results and
run times: README.md.

Arguments:
  (none)        AV-digits `pairs`, contrastive objective with K = 8 sampled
                negatives per anchor, random negatives, 300 steps of batch 64
                (about a minute on 2 CPU cores).
  quick         60 steps, smaller probe budget; tests and notebooks.
  heldout       AV-digits `pairs_heldout`: test clips spoken only by three
                voices train never hears, 5-20 dB SNR noise.
  binary        the classic AVC head (binary correspondence classifier on the
                fused embeddings) instead of the contrastive softmax.
  info_nce      in-batch symmetric info_nce on (audio, chosen positive);
                negatives are the rest of the batch (random/soft only).
  strategy=S    random | easy | hard | soft | supervised (see below).
  per_class=N   train on N examples per class (0 = all, ~126 per class).
  imbalance=r   class sizes decay geometrically to r × the largest (1.0 =
                balanced); see avjax/data/pipeline/subsets.py.
  seed=N        random seed (model init, subset choice, data order, sampling).

Strategies (config.sampling.positives / negatives hold the mix, any ratios):
  random      own positive, random negatives (standard self-supervised AVC)
  easy        own positive, farthest different-class negatives
  hard        own positive, closest different-class negatives (in-batch)
  soft        soft positive (another clip of the class), random negatives
  supervised  no correspondence task: encoders + linear heads trained with
              cross-entropy on the labels (the paper's supervised baseline)
Labels used by sampling come from the annotation, or from a classifier's
predictions given as config.sampling.labels_file (CSV clip_id,label or JSON).

metrics.json: probe_acc_{audio,visual} (test accuracy of a linear probe on
the frozen encoders, fitted on the full train split, L2 chosen on
validation), probe_val_acc_*, fewshot_acc_{audio,visual} (the same probe
fitted on 5 labelled clips per class, mean of 3 draws from outside a small
training subset), and avc_acc
(binary objective: head accuracy on test pairs vs random partners) or
classifier_acc_* (supervised: the trained heads' test accuracy).
"""

import ml_collections

from avjax import config_utils

common = config_utils.import_sibling(__file__, "common")

_OBJECTIVES = ("binary", "contrastive", "info_nce")
_VARIANTS = {"quick", "heldout", *_OBJECTIVES}
_KEYS = {"seed", "strategy", "per_class", "imbalance"}
DEFAULT_OBJECTIVE = "contrastive"
STRATEGIES = ("random", "easy", "hard", "soft", "supervised")
_MIXES = {
    "random": ({"own": 1.0}, {"random": 1.0}),
    "easy": ({"own": 1.0}, {"easy": 1.0}),
    "hard": ({"own": 1.0}, {"hard": 1.0}),
    "soft": ({"soft": 1.0}, {"random": 1.0}),
    "supervised": ({"own": 1.0}, {"random": 1.0}),  # Unused by the objective.
}
# The README table: strategies × training-set sizes × balance.
TABLE_SIZES = (20, 0)
TABLE_IMBALANCE = (1.0, 0.1)


def table_variants() -> str:
  """The ';'-separated config arguments of the README table's rows."""
  return ";".join(
      f"strategy={s},per_class={n},imbalance={r}"
      for n in TABLE_SIZES
      for r in TABLE_IMBALANCE
      for s in STRATEGIES
  )


def _dict(d: dict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(d)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants, settings = config_utils.parse_config_arg(
      arg, _VARIANTS, _KEYS, "configs/avc.py"
  )
  strategy = settings.get("strategy", "random")
  if strategy not in STRATEGIES:
    raise ValueError(
        f"configs/avc.py: strategy={strategy!r} is not one of "
        f"{list(STRATEGIES)}"
    )
  config = common.base_config("avc", settings.get("seed", 0))

  config.data.name = (
      "av_digits/pairs_heldout" if "heldout" in variants else "av_digits/pairs"
  )
  config.data.batch_size = 64
  config.data.num_classes = 10
  config.data.per_class = int(settings.get("per_class", 0))
  config.data.imbalance_ratio = float(settings.get("imbalance", 1.0))
  config.data.min_per_class = 2
  config.data.log_mel = _dict({"n_mels": 24, "hop_length": 320})

  config.model = ml_collections.ConfigDict()
  config.model.audio_encoder = "conv"
  config.model.visual_encoder = "conv"
  config.model.embed_dim = 64
  config.model.normalize = False
  config.model.audio_kwargs = _dict({"features": (8, 16, 32), "hidden_dim": 64})
  config.model.visual_kwargs = _dict(
      {"features": (8, 16, 32), "hidden_dim": 64}
  )
  config.model.head_hidden_dims = (64,)
  config.model.fusion = "concat"

  config.avc = ml_collections.ConfigDict()
  chosen = [o for o in _OBJECTIVES if o in variants]
  if len(chosen) > 1:
    raise ValueError(f"configs/avc.py: choose one objective of {chosen}")
  config.avc.objective = (
      "supervised"
      if strategy == "supervised"
      else (chosen[0] if chosen else DEFAULT_OBJECTIVE)
  )
  config.avc.strategy = strategy

  config.loss = ml_collections.ConfigDict()
  # A fixed softmax temperature for the contrastive objectives.
  config.loss.temperature = common.temperature(0.1, learn=False)

  positives, negatives = _MIXES[strategy]
  config.sampling = ml_collections.ConfigDict()
  config.sampling.positives = _dict(positives)
  config.sampling.negatives = _dict(negatives)
  config.sampling.num_negatives = 8  # K distinct negatives per anchor.
  config.sampling.mining_space = "visual"
  config.sampling.metric = "cosine"
  config.sampling.easy_distance = "embedding"
  config.sampling.labels_file = ml_collections.config_dict.placeholder(str)

  # Linear probes on the frozen encoders, fitted on the full train split
  # ("subset": only the clips trained on), and few-label probes of 5 clips
  # per class, mean of 3 draws.
  config.evals.probe = common.linear_probe_eval(
      ("audio", "visual"),
      label="label",
      num_classes=config.data.num_classes,
      l2_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
      steps=300,
      fit_on="full",
      fewshot_per_class=5,
      fewshot_draws=3,
  )

  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 30

  steps = 300
  config.log_every = 25
  config.checkpoint_every = 150
  config.eval_batch_size = 512
  config.max_checkpoints_to_keep = 2

  if "quick" in variants:
    steps = 60
    config.optimizer.warmup_steps = 10
    config.log_every = 10
    config.checkpoint_every = 30
    config.evals.probe.steps = 150
  if config.avc.objective == "info_nce" and strategy in ("easy", "hard"):
    raise ValueError(
        f"configs/avc.py: strategy={strategy!r} with 'info_nce': the "
        "in-batch info_nce already uses every other clip as a negative; "
        "negative strategies apply to 'binary' and 'contrastive'"
    )

  config.stages = (common.stage(strategy, steps),)
  return config


if __name__ == "__main__":
  print(table_variants())
