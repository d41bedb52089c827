"""Validation offset top-1 of the default sparse and dense runs against the
stage-2 training examples seen, from their log.jsonl files.

python synchformer_default_curves.py OUT.png sparse=RUN,RUN,RUN dense=RUN,...
Each RUN is a workdir (its config.json gives the stages and batch sizes).
"""

import json, sys
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

out, groups = sys.argv[1], sys.argv[2:]
fig, ax = plt.subplots(figsize=(7, 3.6))
for colour, group in zip(("C0", "C1", "C2"), groups):
  name, runs = group.split("=")
  for i, run in enumerate(runs.split(",")):
    config = json.load(open(f"{run}/config.json"))
    s1, s2 = config["stages"][0], config["stages"][1]
    per_step = s2.get("batch_size") or config["data"]["batch_size"]
    rows = [json.loads(l) for l in open(f"{run}/log.jsonl")]
    points = [
        ((r["step"] - s1["steps"]) * per_step / 1000, r["val/offset_top1"])
        for r in rows
        if "val/offset_top1" in r and s1["steps"] < r["step"] <= s1["steps"] + s2["steps"]
    ]
    ax.plot(*zip(*points), color=colour, marker="o", ms=3, alpha=0.85,
            label=name if i == 0 else None)
ax.axhline(1 / 21, color="grey", ls=":", label="chance 1/21")
ax.set_xlabel("stage-2 training examples (thousands)")
ax.set_ylabel("validation offset top-1")
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=120)
