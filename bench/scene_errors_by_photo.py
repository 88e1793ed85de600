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


def scene_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the scene-error scripts: the data folder and its seed, the localizer, threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True, help="a folder written by `cnntool data scenes`")
    parser.add_argument("--seed", type=int, default=0, help="the seed the folder was written with")
    parser.add_argument("--model", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def test_split_read(args: argparse.Namespace) -> tuple[list[dict], list, list]:
    """The test split's annotations, the scenes behind them drawn again (checked against the annotations), and
    the localizer's records for the written images, run as `cnntool localize` runs."""
    from cnntool.data import scenes
    from cnntool.engine.predict import RunOptions, predict

    entries = json.loads((args.data / "test.json").read_text())
    try:
        drawn = scenes.redraw(entries, "test", seed=args.seed, config=scenes.SceneConfig())
    except ValueError as error:
        raise SystemExit(f"{error}; pass the seed the folder was made with") from None
    options = RunOptions(model=args.model, weights=args.weights, device="cpu", threads=args.threads, batch_size=100)
    return entries, drawn, list(predict([str(args.data / e["image"]) for e in entries], "localize", options))


def main() -> None:
    args = scene_arguments(__doc__.splitlines()[0]).parse_args()
    entries, drawn, records = test_split_read(args)
    counts: dict[str, Counter] = {}
    for entry, scene, record in zip(entries, drawn, records):
        found, c = record.fields["object"]["label"], counts.setdefault(scene.background, Counter())
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
