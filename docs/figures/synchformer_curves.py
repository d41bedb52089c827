"""Validation offset top-1 and synchronisability AUC of the quick sweep's
runs, from their log.jsonl (python plot_curves.py RUNS_ROOT OUT.png)."""

import json, sys
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

root, out = sys.argv[1], sys.argv[2]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for key, ax, chance in (
    ("val/offset_top1", axes[0], 1 / 21),
    ("val/sync_auc", axes[1], 0.5),
):
  for variant, colour in (("quick", "C0"), ("quick+dense", "C1")):
    for seed in (0, 1, 2):
      rows = [
          json.loads(l) for l in open(f"{root}/{variant}/seed{seed}/log.jsonl")
      ]
      x, y = zip(*[(r["step"], r[key]) for r in rows if key in r])
      name = "sparse" if variant == "quick" else "dense"
      ax.plot(
          x,
          y,
          color=colour,
          alpha=0.85,
          marker="o",
          ms=3,
          label=name if seed == 0 else None,
      )
  ax.axhline(chance, color="grey", ls=":", label=f"chance {chance:.3g}")
  ax.axvspan(450, 2250, color="0.92", zorder=0, label="stage 2")
  ax.axvspan(2250, 3000, color="0.97", zorder=0)
  ax.set_xlabel(
      "step (stage 1: 0-450, stage 2: 450-2250, stage 3: 2250-3000)", fontsize=8
  )
  ax.legend(loc="upper left", fontsize=8)
axes[0].set_ylabel("validation offset top-1 (stage 2's model)")
axes[1].set_ylabel("validation synchronisability AUC")
fig.suptitle(
    "Synchformer `quick` on AV-digits, seeds 0-2 (validation every 150 steps)"
)
fig.tight_layout()
fig.savefig(out, dpi=110)
