"""The `cnntool data` group: data set generators (scenes, documents), crops for R-CNN's second stage, and
the tiny example of each task's layout. Each command is built from the option dataclasses of what it runs."""

from __future__ import annotations

from typing import Any

import typer


def add_scenes(app: typer.Typer) -> None:
    from cnntool.command import command
    from cnntool.data import scenes
    from cnntool.data.splits import Generated

    def write(run: Generated, config: scenes.SceneConfig, workers: scenes.Workers) -> None:
        _wrote(run, scenes.write_dataset(_folder(run), run.counts(), seed=run.seed, config=config,
                                         workers=workers.workers))

    app.command("scenes")(command(write, Generated, scenes.SceneConfig, scenes.Workers, doc=(
        "Scenes for localize/detect: real objects pasted on real photos, with box annotations.\n\n"
        "Example: cnntool data scenes --out runs/data/scenes --n 12000 --seed 0")))


def add_crops(app: typer.Typer) -> None:
    from cnntool.command import command
    from cnntool.data.crops import CropConfig, CropSources, write_crops

    def crops(where: CropSources, config: CropConfig) -> None:
        counts = write_crops(where.sources, _folder(where), config)
        from cnntool.console import warn

        warn(f"wrote {counts['train']} training and {counts['test']} held-out crops under {where.out}", quiet=where.quiet)

    app.command("crops")(command(crops, CropSources, CropConfig, doc=(
        "Crops of annotated objects for training a box reader (R-CNN's second stage) with `cnntool train classify`."
        "\n\nExample: cnntool data crops runs/data/scenes --out runs/data/crops")))


def add_documents(app: typer.Typer) -> None:
    from cnntool.command import Uses, command
    from cnntool.data import documents
    from cnntool.data.splits import Generated

    def write(run: Generated, config: documents.DocumentConfig) -> None:
        _wrote(run, documents.write_dataset(_folder(run), run.counts(), seed=run.seed, config=config))

    app.command("documents")(command(write, Uses(Generated, defaults={"test": 1000}), documents.DocumentConfig, doc=(
        "Document-scanner data: a page or photo in perspective on another photo, with its 4 corners.\n\n"
        "Example: cnntool data documents --out runs/data/documents --n 12000 --seed 0")))


def add_example(app: typer.Typer) -> None:
    from cnntool.command import command
    from cnntool.data.examples import ExampleConfig, write_example

    def example(config: ExampleConfig) -> None:
        from cnntool.console import warn

        warn(f"wrote {write_example(config)}", quiet=config.quiet)

    app.command("example")(command(example, ExampleConfig, doc=(
        "A tiny data set in the layout `cnntool train TASK` reads, from data the install ships: copy its layout.\n\n"
        "Example: cnntool data example detect --out my-detect && cnntool train detect --data my-detect --epochs 2 "
        "--out my.safetensors")))


def _folder(run: Any):
    from cnntool.folders import writable_folder

    return writable_folder(run.out, "--out")


def _wrote(run: Any, written: list) -> None:
    from cnntool.console import warn

    warn(f"wrote {', '.join(str(p) for p in written)}", quiet=run.quiet)


COMMANDS = {"scenes": add_scenes, "crops": add_crops, "documents": add_documents, "example": add_example}
