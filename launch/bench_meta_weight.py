r"""Meta-Weight-Net's own setting: a classifier trained on noisy labels.

A reproducible benchmark of the reusable bilevel step
(``avjax.train.bilevel``, the one MAMA uses) in the regime of Shu et al.
(NeurIPS 2019): scikit-learn's handwritten digits (1,797 images of 8×8, 10
classes), a fraction of the training labels flipped to another class chosen
uniformly ("symmetric" noise), and a small clean, class-balanced meta set.
An MLP classifier is trained with SGD (lr 0.1, momentum 0.9, weight decay
5e-4, as Meta-Weight-Net's classifier) twice from the same init and batches:

* ``plain``: the mean cross-entropy of the (noisy) training batch;
* ``bilevel``: ``bilevel.bilevel_step`` with a ``MetaWeightNet`` mapping each
  sample's cross-entropy to its weight, meta-trained on the meta set. The
  defaults are Meta-Weight-Net's: 1 → 100 → 1 net (input loss / ln 10),
  Adam 1e-3 with weight decay 1e-4, plain weighted mean Σ wᵢℓᵢ / B, SGD
  virtual step at the classifier's learning rate, meta batch = the whole
  meta set (100 samples).

Per seed the split, the flipped labels, the init and the batch order change.
The whole run is one jitted ``lax.scan`` over the steps. Printed (and with
--out written as JSON): final test accuracy, and the mean weight of the
clean and of the noisy training samples with the AUC of the weights for
clean vs noisy (the final model's losses through the final weight net).

  python launch/bench_meta_weight.py
  python launch/bench_meta_weight.py --noise 40 --seeds 0 --steps 600
  # An Adam classifier (MAMA's regime) with an SGD virtual step at the same
  # lr (MAMA's earlier default), then through the Adam update itself:
  python launch/bench_meta_weight.py --model_optimizer adam --lr 1e-3 \
      --virtual_lr 1e-3
  python launch/bench_meta_weight.py --model_optimizer adam --lr 1e-3 \
      --virtual_step optimizer
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
from absl import app
from absl import flags

_NOISE = flags.DEFINE_list("noise", ["20", "40"], "Percent of flipped labels.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Training batch size.")
_META_SIZE = flags.DEFINE_integer(
    "meta_per_class", 10, "Clean meta samples per class."
)
_LR = flags.DEFINE_float("lr", 0.1, "Classifier learning rate.")
_MODEL_OPT = flags.DEFINE_enum(
    "model_optimizer", "sgd", ["sgd", "adam"], "Classifier optimiser."
)
_VIRTUAL = flags.DEFINE_enum(
    "virtual_step", "sgd", ["sgd", "optimizer"], "Bilevel virtual step."
)
_VIRTUAL_LR = flags.DEFINE_float(
    "virtual_lr", None, "SGD virtual step size (default: the model's lr)."
)
_NORMALIZE = flags.DEFINE_boolean(
    "normalize", False, "Weights divided by their batch sum."
)
_META_START = flags.DEFINE_integer("meta_start", 0, "First meta update step.")
_WEIGHT_LR = flags.DEFINE_float("weight_lr", 1e-3, "Weight net's Adam lr.")
_WEIGHT_DECAY = flags.DEFINE_float(
    "weight_decay", 1e-4, "Weight net's L2 decay."
)
_OUT = flags.DEFINE_string("out", None, "Optional JSON output path.")


@dataclasses.dataclass(frozen=True)
class Setting:
  """One benchmark run's knobs (the flags; defaults: Meta-Weight-Net's)."""

  noise: float = 0.4
  steps: int = 3000
  batch_size: int = 100
  meta_per_class: int = 10
  test_fraction: float = 0.3
  hidden: int = 128
  lr: float = 0.1
  model_optimizer: str = "sgd"
  virtual_step: str = "sgd"
  virtual_lr: float | None = None
  normalize: bool = False
  meta_start: int = 0
  weight_lr: float = 1e-3
  weight_decay: float = 1e-4


def make_data(
    seed: int, noise: float, meta_per_class: int, test_fraction: float
) -> dict[str, np.ndarray]:
  """Digits split into noisy train / clean meta / clean test.

  Per class: ``meta_per_class`` samples to meta, ``test_fraction`` of the
  rest to test, the others to train; then exactly round(noise · N_train)
  training labels are replaced by a uniformly drawn *other* class.

  Returns:
    float32 features "{train,meta,test}_x" [N, 64] in [0, 1], int32 labels
    "{train,meta,test}_y" [N] (train: the noisy ones), the train set's
    "train_true" labels and bool "noisy" flags.

  Raises:
    ValueError: ``noise`` outside [0, 1), or a class too small for
      ``meta_per_class``.
  """
  from sklearn import datasets  # pylint: disable=import-outside-toplevel

  if not 0.0 <= noise < 1.0:
    raise ValueError(f"noise={noise} must be a fraction in [0, 1)")
  digits = datasets.load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  rng = np.random.default_rng(seed)
  parts = {"train": [], "meta": [], "test": []}
  for c in range(10):
    members = rng.permutation(np.flatnonzero(y == c))
    if len(members) <= meta_per_class:
      raise ValueError(
          f"meta_per_class={meta_per_class}: class {c} has only "
          f"{len(members)} samples"
      )
    rest = members[meta_per_class:]
    n_test = int(round(test_fraction * len(rest)))
    parts["meta"].append(members[:meta_per_class])
    parts["test"].append(rest[:n_test])
    parts["train"].append(rest[n_test:])
  idx = {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}
  true = y[idx["train"]]
  noisy = np.zeros(len(true), bool)
  noisy[rng.permutation(len(true))[: int(round(noise * len(true)))]] = True
  shift = rng.integers(1, 10, size=len(true))  # Another class, uniformly.
  labels = np.where(noisy, (true + shift) % 10, true).astype(np.int32)
  return {
      "train_x": x[idx["train"]],
      "train_y": labels,
      "train_true": true,
      "noisy": noisy,
      "meta_x": x[idx["meta"]],
      "meta_y": y[idx["meta"]],
      "test_x": x[idx["test"]],
      "test_y": y[idx["test"]],
  }


def run(setting: Setting, seed: int) -> dict[str, float]:
  """Trains plain and bilevel from one init; returns both runs' results.

  Keys: ``plain_acc``, ``bilevel_acc`` (test accuracy at the end),
  ``weight_clean``, ``weight_noisy``, ``weight_auc`` (all training samples,
  final model and weight net), ``meta_grad_norm`` (mean over meta steps),
  ``seconds``.
  """
  # pylint: disable=import-outside-toplevel
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax

  from avjax.eval import auc as auc_lib
  from avjax.models import meta_weight
  from avjax.train import bilevel
  from avjax.train.state import TrainState

  t0 = time.time()
  data = make_data(
      seed, setting.noise, setting.meta_per_class, setting.test_fraction
  )
  model = nn.Sequential(
      [nn.Dense(setting.hidden), nn.relu, nn.Dense(10)]  # 64 → hidden → 10
  )
  net = meta_weight.MetaWeightNet(input_scale=math.log(10.0))
  key = jax.random.PRNGKey(seed)
  params = model.init(key, data["train_x"][:1])
  if setting.model_optimizer == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(5e-4),
        optax.sgd(setting.lr, momentum=0.9),
    )
  else:
    tx = optax.adam(setting.lr, eps_root=1e-16)
  weight_tx = bilevel.make_weight_optimizer(
      {
          "name": "adam",
          "learning_rate": setting.weight_lr,
          "weight_decay": setting.weight_decay,
      }
  )
  options = bilevel.BilevelOptions(
      virtual_step=setting.virtual_step,
      virtual_lr=(
          None
          if setting.virtual_step == "optimizer"
          else (setting.virtual_lr or setting.lr)
      ),
      normalize=setting.normalize,
      meta_start=setting.meta_start,
  )
  phi = net.init(jax.random.fold_in(key, 1), jnp.zeros((1,)))
  state = TrainState.create(
      params,
      tx,
      jax.random.fold_in(key, 2),
      aux={bilevel.META_KEY: bilevel.init_meta_state(phi, weight_tx)},
  )
  n = len(data["train_y"])
  order = np.random.default_rng(seed + 1000)
  per_epoch = n // setting.batch_size
  epochs = -(-setting.steps // per_epoch)
  batches = np.concatenate(
      [
          order.permutation(n)[: per_epoch * setting.batch_size].reshape(
              per_epoch, setting.batch_size
          )
          for _ in range(epochs)
      ]
  )[: setting.steps]
  train_x, train_y = jnp.asarray(data["train_x"]), jnp.asarray(data["train_y"])
  meta = {"x": jnp.asarray(data["meta_x"]), "y": jnp.asarray(data["meta_y"])}

  def loss_fn(p, batch, rng):
    del rng
    logits = model.apply(p, batch["x"])
    return (
        optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]),
        {},
    )

  def plain_body(s, idx):
    batch = {"x": train_x[idx], "y": train_y[idx]}
    grads = jax.grad(lambda p: jnp.mean(loss_fn(p, batch, None)[0]))(s.params)
    return s.apply_gradients(grads), 0.0

  def bilevel_body(s, idx):
    batch = {"x": train_x[idx], "y": train_y[idx]}
    s, metrics, _ = bilevel.bilevel_step(
        s,
        batch,
        meta,
        loss_fn=loss_fn,
        weight_fn=net.apply,
        weight_tx=weight_tx,
        options=options,
    )
    return s, metrics["meta_grad_norm"]

  scan = lambda body: jax.jit(lambda s, b: jax.lax.scan(body, s, b))
  plain, _ = scan(plain_body)(state, batches)
  trained, grad_norms = scan(bilevel_body)(state, batches)

  def accuracy(p):
    logits = model.apply(p, jnp.asarray(data["test_x"]))
    return float(jnp.mean(jnp.argmax(logits, -1) == data["test_y"]))

  losses, _ = loss_fn(trained.params, {"x": train_x, "y": train_y}, None)
  weights = np.asarray(
      net.apply(trained.aux[bilevel.META_KEY]["params"], losses)
  )
  noisy = data["noisy"]
  steps_with_meta = np.asarray(grad_norms)[setting.meta_start :]
  return {
      "plain_acc": accuracy(plain.params),
      "bilevel_acc": accuracy(trained.params),
      "weight_clean": float(weights[~noisy].mean()),
      "weight_noisy": float(weights[noisy].mean()),
      "weight_auc": auc_lib.auc(weights, ~noisy),
      "meta_grad_norm": float(steps_with_meta.mean()),
      "seconds": time.time() - t0,
  }


def format_table(results: dict[float, list[dict]]) -> str:
  """Markdown: per noise level, plain and bilevel rows, mean ± std."""

  def cell(runs, key):
    vals = np.array([r[key] for r in runs])
    return f"{vals.mean():.3f} ± {vals.std():.3f}"

  lines = [
      "| noise | training | test accuracy | mean weight clean "
      "| mean weight noisy | weight AUC clean vs noisy | seeds |",
      "|---|---|---|---|---|---|---|",
  ]
  for noise, runs in results.items():
    k = len(runs)
    lines.append(
        f"| {noise:.0%} | plain | {cell(runs, 'plain_acc')} | 1 | 1 | — "
        f"| {k} |"
    )
    lines.append(
        f"| {noise:.0%} | bilevel (Meta-Weight-Net) | "
        f"{cell(runs, 'bilevel_acc')} | {cell(runs, 'weight_clean')} | "
        f"{cell(runs, 'weight_noisy')} | {cell(runs, 'weight_auc')} | {k} |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  base = Setting(
      steps=_STEPS.value,
      batch_size=_BATCH.value,
      meta_per_class=_META_SIZE.value,
      lr=_LR.value,
      model_optimizer=_MODEL_OPT.value,
      virtual_step=_VIRTUAL.value,
      virtual_lr=_VIRTUAL_LR.value,
      normalize=_NORMALIZE.value,
      meta_start=_META_START.value,
      weight_lr=_WEIGHT_LR.value,
      weight_decay=_WEIGHT_DECAY.value,
  )
  results, record = {}, []
  for noise in _NOISE.value:
    setting = dataclasses.replace(base, noise=float(noise) / 100.0)
    results[setting.noise] = []
    for seed in _SEEDS.value:
      out = run(setting, int(seed))
      results[setting.noise].append(out)
      record.append({"noise": setting.noise, "seed": int(seed), **out})
      print(f"noise {noise}% seed {seed}: {json.dumps(out)}", flush=True)
  table = format_table(results)
  print(table)
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(
          {"setting": dataclasses.asdict(base), "runs": record}, f, indent=2
      )


if __name__ == "__main__":
  app.run(main)
