"""`cnntool models [NAME]`: the registry as a table or records, and one model's card, read without torch.

Held-out figures come from the embedded weights' safetensors headers (plain JSON), so listing stays fast. A
card is what the registry and the weights file say of a model (task, input, classes, where its weights come
from and whether that needs the network, its held-out figures and the command that made it), followed by the
model's hand-written card in weights/<name>.md when there is one.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnntool import weights
from cnntool.console import printable
from cnntool.errors import ConfigError
from cnntool.models import catalog
from cnntool.options import argument, option
from cnntool.records import OutputFormat, format_option
from cnntool.registry import ModelSpec, UnknownModelError

# Each task's main held-out figures, in the order a listing shows them.
HEADLINES = {"classify": ("accuracy",), "localize": ("presence_accuracy", "class_accuracy", "mean_iou"),
             "landmarks": ("nme",), "detect": ("map50_95", "map50"), "verify-face": ("auc", "eer")}


@dataclass
class ModelsQuery:
    name: str | None = argument(help="A model's name: print its card.", default=None)
    task: str | None = option(None, "--task", "-t", help="Only this task's models.")
    format: OutputFormat | None = format_option()


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists to dotted scalar columns: {"box": [1, 2]} → {"box.0": 1, "box.1": 2}."""
    out: dict[str, Any] = {}
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)) and value:
            out.update(flatten(value, name + "."))
        elif isinstance(value, (dict, list)):
            out[name] = ""
        else:
            out[name] = value
    return out


def offline(spec: ModelSpec) -> str:
    """Whether the model runs with no network: "yes", "download" (torchvision's weights, from the torch hub) or
    "train" (no weights of its own: train them, or pass --weights)."""
    if spec.parts:
        return "yes" if all(offline(catalog.get(p)) == "yes" for p in spec.parts.values()) else "download"
    source = spec.weights or ""
    if source.startswith(("embedded:", "external:")):
        return "yes"
    return "download" if source.startswith("torchvision:") else "train"


def _metadata(spec: ModelSpec) -> dict[str, Any]:
    if not (spec.weights or "").startswith("embedded:"):
        return {}
    return weights.read_metadata(weights.resolve(spec.weights.split(":", 1)[1]))


def describe(spec: ModelSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "task": spec.task,
        "input": spec.input.describe(),
        "classes": len(spec.classes) or None,
        "weights": spec.weights or (f"parts: {', '.join(spec.parts.values())}" if spec.parts else None),
        "offline": offline(spec),
        "default": _is_default(spec),
        "summary": spec.summary,
    }
    try:
        meta = _metadata(spec)
    except ConfigError as exc:
        row["weights_error"] = str(exc)
        return row
    if meta:
        heldout = meta.get("metrics", {}).get("heldout") or {}
        row["main_figure"] = {k: heldout[k] for k in HEADLINES.get(spec.task, ()) if k in heldout}
        row["ensemble"] = meta.get("ensemble")  # members averaged, when the file holds several networks
        row["reader"] = (meta.get("reader") or {}).get("file")  # a localizer's box reader, when it has one
        row["metrics"] = heldout
        row["heldout_data"] = meta.get("metrics", {}).get("heldout_data")
        row["command"] = meta.get("command")
        row["init"] = meta.get("init")  # the file a fine-tune started from, with that file's command
    return row


def _is_default(spec: ModelSpec) -> bool:
    try:
        return catalog.default(spec.task) == spec.name
    except UnknownModelError:
        return False


def _figures(figures: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in (figures or {}).items() if isinstance(v, (int, float)))


def print_models(query: ModelsQuery) -> None:
    from cnntool import tasks

    if query.name is not None:
        return print_card(query.name)
    try:
        task = tasks.canonical(query.task) if query.task is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rows = [describe(spec) for spec in catalog.specs(task)]
    fmt = query.format or OutputFormat.default_for(sys.stdout)
    if fmt is OutputFormat.jsonl:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    if fmt is OutputFormat.csv:
        flat = [flatten(row) for row in rows]
        columns = list(dict.fromkeys(key for row in flat for key in row))
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
        return
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    from rich.table import Table

    from cnntool.console import rich_console

    table = Table(title="cnntool models" + (f" (task {task})" if task else ""))
    for column in ("name", "task", "input", "classes", "offline", "held-out main figure"):
        table.add_column(column)
    for row in rows:
        name = row["name"] + (" *" if row["default"] else "")
        table.add_row(name, row["task"], row["input"], str(row["classes"] or ""), row["offline"],
                      _figures(row.get("main_figure")) or row.get("weights_error", ""))
    console = rich_console(sys.stdout)
    console.print(table)
    console.print("* = the task's default model; offline: yes (runs here), download (torchvision's weights, from the "
                  "torch hub where online), train (no weights: train them, or pass --weights); "
                  "`cnntool models NAME` prints a model's card")


def card_path(spec: ModelSpec) -> Path | None:
    path = weights.weights_dir() / f"{spec.card or spec.name}.md"
    return path if path.is_file() else None


def print_card(name: str) -> None:
    """The model's card: the registry's and the weights' facts, then its hand-written card."""
    spec = catalog.get(name)
    row = describe(spec)
    lines = [f"# {spec.name} ({spec.task}{', the default' if row['default'] else ''})", "", spec.summary, "",
             f"- input: {spec.input.describe()}, resize {spec.input.resize}, mean {list(spec.input.mean)}, "
             f"std {list(spec.input.std)}",
             f"- classes: {', '.join(spec.classes) if 0 < len(spec.classes) <= 20 else len(spec.classes) or 'as trained'}",
             f"- weights: {row['weights'] or 'none (train them)'}; offline: {row['offline']}"]
    if row.get("metrics"):
        lines.append(f"- held-out: {_figures(row['metrics'])} ({row.get('heldout_data')})")
    if row.get("command"):
        lines.append(f"- made by: {row['command']}")
    text = "\n".join(printable(line) for line in lines) + "\n"  # names from a weights file may carry escapes
    path = card_path(spec)
    if path is not None:
        text += "\n" + path.read_text()
    sys.stdout.write(text)
