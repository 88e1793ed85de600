"""The three verification objectives side by side (same backbone, data and budget), from the weights files
`cnntool train verify-face` wrote; optionally ships one of them as an embedded model with the comparison
table in its metadata notes.

    python bench/verify_objectives.py runs/triplet.safetensors runs/contrastive.safetensors runs/similarity.safetensors
    python bench/verify_objectives.py … --ship triplet --to weights/oneshot-fashion.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnntool import weights


def row(meta: dict) -> dict:
    metrics, verification = meta["metrics"], meta["verification"]
    own = verification["metric"]
    heldout, cross = metrics["heldout"], metrics.get("cross_source", {})
    return {
        "objective": meta["objective"]["name"] + (f" ({meta['objective']['mining']})" if meta["objective"]["mining"] else ""),
        "metric": own,
        "seen_val_auc": round(verification["thresholds"][own]["auc"], 4),
        "unseen_auc": round(heldout["auc"], 4), "unseen_eer": round(heldout["eer"], 4),
        "unseen_tar_at_far_0.01": round(heldout["tar_at_far"]["0.01"]["tar"], 4),
        "digits_auc": round(cross["auc"], 4) if cross else None, "digits_eer": round(cross["eer"], 4) if cross else None,
        "command": meta["command"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--ship", help="objective name whose weights become the embedded model")
    parser.add_argument("--to", type=Path, help="where to write the shipped weights")
    args = parser.parse_args()
    metas = {}
    for path in args.files:
        meta = weights.read_metadata(path)
        metas[meta["objective"]["name"]] = (path, meta)
    table = {name: row(meta) for name, (_, meta) in metas.items()}
    print(json.dumps(table, indent=2))
    for r in table.values():
        print(f"| {r['objective']} | {r['metric']} | {r['seen_val_auc']} | {r['unseen_auc']} | {r['unseen_eer']} | "
              f"{r['unseen_tar_at_far_0.01']} | {r['digits_auc']} | {r['digits_eer']} |")
    if args.ship:
        path, meta = metas[args.ship]
        state, _ = weights.load(path)
        meta.pop("format_version", None)
        meta["notes"] = {"objective_comparison": table,
                         "objective_comparison_about": "same backbone (lenet5-relu, 28x28, 64-d), data, epochs, batch "
                                                       "and optimizer; seen_val_auc: other images of the training "
                                                       "identities; unseen: identities never trained on"}
        weights.save(args.to, state, meta)
        print(f"shipped {args.ship} → {args.to}")


if __name__ == "__main__":
    main()
