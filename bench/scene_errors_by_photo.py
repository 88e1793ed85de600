"""Where a localizer's held-out errors fall, photo by photo. The test split of a `cnntool data scenes` set is
drawn again (same seed, default options: the test split never mixes backgrounds or adds photos) to learn which
held-out photo lies under each scene; the model runs on the written images as `cnntool localize` does, and its
presence and class errors are counted per photo.

    python bench/scene_errors_by_photo.py --data runs/data/scenes-mix-more
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def photos_under(entries: list[dict], seed: int) -> list[str]:
    """The background photo of each test scene, checked against its written annotation."""
    from cnntool.data import scenes

    try:
        return [scene.background for scene in scenes.redraw(entries, "test", seed=seed, config=scenes.SceneConfig())]
    except ValueError as error:
        raise SystemExit(f"{error}; pass the seed the folder was made with") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder written by `cnntool data scenes`")
    parser.add_argument("--seed", type=int, default=0, help="the seed the folder was written with")
    parser.add_argument("--model", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from cnntool.predict import RunOptions, predict

    entries = json.loads((args.data / "test.json").read_text())
    photos = photos_under(entries, args.seed)
    options = RunOptions(model=args.model, weights=args.weights, device="cpu", threads=args.threads, batch_size=100)
    counts: dict[str, Counter] = {}
    records = predict([str(args.data / e["image"]) for e in entries], "localize", options)
    for entry, photo, record in zip(entries, photos, records):
        found, c = record.fields["object"]["label"], counts.setdefault(photo, Counter())
        if entry["label"] is None:
            c["empty"] += 1
            c["false alarms"] += found is not None
        else:
            c["objects"] += 1
            c["missed"] += found is None
            c["misread"] += found is not None and found != entry["label"]
    columns = ("empty", "false alarms", "objects", "missed", "misread")
    print(f"| photo | {' | '.join(columns)} | presence errors | class errors |")
    print("|---|" + "---|" * (len(columns) + 2))
    total = Counter()
    for photo, c in sorted(counts.items(), key=lambda kv: (-(kv[1]["false alarms"] + kv[1]["missed"]), kv[0])):
        total.update(c)
        print(f"| {photo} | {' | '.join(str(c[k]) for k in columns)} | {c['false alarms'] + c['missed']} | {c['misread']} |")
    print(f"| all | {' | '.join(str(total[k]) for k in columns)} | {total['false alarms'] + total['missed']} | "
          f"{total['misread']} |")


if __name__ == "__main__":
    main()
