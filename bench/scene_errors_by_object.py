"""Which held-out objects a localizer misreads, and which of them a classifier misreads clean.

The held-out scenes reuse a small pool (500 digits for 1,571 scenes), so an object whose shape is ambiguous costs every
scene it lies in. The test split is drawn again (`scenes.redraw`) to learn the pool row under each scene;
the localizer runs on the written images as `cnntool localize` does; `--reference`, a classify model trained
without the held-out objects (not lenet5-digits: its random split trained on most of them), reads every pool
object clean, centred and on black. The scenes its misreadings lie in are the class errors that a reader as
good as it would make if the scenes cost nothing.

    python bench/scene_errors_by_object.py --data runs/data/scenes-mix-more --reference FILE.safetensors
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from scene_errors_by_photo import scene_arguments, test_split_read


def read_clean(images, reference: str, threads: int) -> list[str]:
    """The reference model's label for each pool image, written to PNG and read as `cnntool classify` does."""
    from PIL import Image

    from cnntool.engine.predict import RunOptions, predict

    with tempfile.TemporaryDirectory() as folder:
        paths = [str(Path(folder, f"{i:05d}.png")) for i in range(len(images))]
        for path, image in zip(paths, images):
            Image.fromarray(image).save(path)
        options = RunOptions(weights=reference, device="cpu", threads=threads, batch_size=100, quiet=True)
        return [record.fields["predictions"][0]["label"] for record in predict(paths, "classify", options)]


def main() -> None:
    parser = scene_arguments(__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None, help="a classify weights file that never saw the held-out objects")
    args = parser.parse_args()

    from cnntool.data import scenes

    entries, drawn, records = test_split_read(args)
    pool = scenes.object_pool(scenes.SceneConfig().objects, "test")
    scenes_of, read_as, missed = Counter(), defaultdict(list), 0
    for entry, scene, record in zip(entries, drawn, records):
        if entry["label"] is None:
            continue
        row, found = scene.sources[0], record.fields["object"]["label"]
        scenes_of[row] += 1
        missed += found is None
        if found is not None and found != entry["label"]:
            read_as[row].append(found)
    clean = read_clean(pool.images, args.reference, args.threads) if args.reference else None
    truth = [pool.classes[int(label)] for label in pool.labels]
    hard = {row for row, wrong in read_as.items() if len(wrong) >= 2}
    if clean:
        hard |= {row for row in scenes_of if clean[row] != truth[row]}

    print("| pool row | label | scenes | misread in scenes | read as |" + (" reference, clean |" if clean else ""))
    print("|---|---|---|---|---|" + ("---|" if clean else ""))
    for row in sorted(hard, key=lambda r: (-len(read_as[r]), r)):
        cells = [row, truth[row], scenes_of[row], len(read_as[row]), " ".join(read_as[row]) or "—"]
        print("| " + " | ".join(map(str, cells)) + " |" + (f" {clean[row]} |" if clean else ""))
    objects, misread = sum(scenes_of.values()), sum(map(len, read_as.values()))
    print(f"\n{objects} objects in {len(entries)} scenes, {len(scenes_of)} distinct pool objects; misread {misread} "
          f"(on {len(read_as)} pool objects), missed {missed}")
    if clean:
        wrong = [row for row in scenes_of if clean[row] != truth[row]]
        print(f"reference misreads {sum(c != t for c, t in zip(clean, truth))} of the {len(truth)} pool objects clean; "
              f"the {len(wrong)} of them that the split shows lie in {sum(scenes_of[r] for r in wrong)} of its "
              f"{objects} object scenes; the localizer misreads {sum(len(read_as[r]) for r in wrong)} of those")


if __name__ == "__main__":
    main()
