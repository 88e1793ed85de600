"""Where a localizer's held-out gap comes from: unseen objects or unseen background photos. Scores one
model on four fresh scene sets that cross the training/held-out object pools with the training/held-out
photos (plain photos, the generator's default options otherwise).

    python bench/scene_gap.py --model localizer-digits --weights weights/localizer-digits.safetensors --n 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def write_scenes(out: Path, object_split: str, photo_split: str, n: int, seed: int) -> None:
    """n test-style scenes (test.json): objects from one split's pool on photos of another's."""
    from cnntool.data import scenes

    config = scenes.SceneConfig()
    pool, photos = scenes.object_pool(config.objects, object_split), scenes.background_paths(photo_split)
    (out / "test").mkdir(parents=True)
    entries = []
    for i in range(n):
        scene = scenes.make_scene(scenes.scene_rng(seed, "test", i), backgrounds=photos, pool=pool, config=config)
        name = f"test/{i:06d}.png"
        scene.image.save(out / name, compress_level=1)
        entries.append(scenes.annotation_entry(name, scene.objects, single=True))
    (out / "test.json").write_text(json.dumps(entries))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in pool.classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="localizer-digits")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n", type=int, default=1000, help="scenes per combination")
    parser.add_argument("--seed", type=int, default=7, help="not the dataset's seed 0: fresh scenes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from cnntool import evaluate

    print("| objects × background photos | presence | class | mean IoU |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for objects in ("train", "test"):
            for photos in ("train", "test"):
                root = Path(tmp) / f"{objects}-{photos}"
                write_scenes(root, objects, photos, args.n, args.seed)
                s = evaluate.localize(data=str(root), model=args.model, weights=args.weights, threads=args.threads)
                label = f"{'held-out' if objects == 'test' else 'training'} digits × " \
                        f"{'held-out' if photos == 'test' else 'training'} photos"
                print(f"| {label} | {s['presence_accuracy']:.3f} | {s['class_accuracy']:.3f} | {s['mean_iou']:.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()
