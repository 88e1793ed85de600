"""`cnntool models`: the registry as a table or records, read without torch.

Held-out metrics come from the embedded weights' safetensors headers (plain JSON), so listing stays fast.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from dataclasses import dataclass

from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.models import catalog
from cnntool.options import option
from cnntool.records import OutputFormat, format_option
from cnntool.registry import ModelSpec, UnknownModelError


@dataclass
class ModelsQuery:
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


def describe(spec: ModelSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "task": spec.task,
        "input": spec.input.describe(),
        "classes": len(spec.classes) or None,
        "weights": spec.weights,
        "default": _is_default(spec),
        "summary": spec.summary,
    }
    if spec.weights and spec.weights.startswith("embedded:"):
        try:
            meta = weights.read_metadata(weights.resolve(spec.weights.split(":", 1)[1]))
        except ConfigError as exc:
            row["weights_error"] = str(exc)
        else:
            row["params"] = meta.get("params")
            row["ensemble"] = meta.get("ensemble")  # members averaged, when the file holds several networks
            row["reader"] = (meta.get("reader") or {}).get("file")  # a localizer's box reader, when it has one
            row["metrics"] = meta.get("metrics", {}).get("heldout")
            row["heldout_data"] = meta.get("metrics", {}).get("heldout_data")
            row["command"] = meta.get("command")
            row["init"] = meta.get("init")  # the file a fine-tune started from, with that file's command
    return row


def _is_default(spec: ModelSpec) -> bool:
    try:
        return catalog.default(spec.task) == spec.name
    except UnknownModelError:
        return False


def _metrics_text(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return ""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
    return ", ".join(parts[:4])


def print_models(query: ModelsQuery) -> None:
    from cnntool import tasks

    task, fmt = query.task, query.format
    try:
        task = tasks.canonical(task) if task is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rows = [describe(spec) for spec in catalog.specs(task)]
    fmt = fmt or OutputFormat.default_for(sys.stdout)
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cnntool models" + (f" (task {task})" if task else ""))
    for column in ("name", "task", "input", "classes", "weights", "held-out metrics"):
        table.add_column(column)
    for row in rows:
        name = row["name"] + (" *" if row["default"] else "")
        table.add_row(name, row["task"], row["input"], str(row["classes"] or ""), row["weights"] or "",
                      _metrics_text(row.get("metrics")) or row.get("weights_error", ""))
    Console().print(table)
    Console().print("* = the task's default model")
