"""One record type for every task, and the writers that print records. stdlib only.

A record is one JSON object per input (design.md §2): common fields, then the task's own fields, or an
`error` object. Coordinates are pixels of the original image after EXIF orientation.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

from cnntool.errors import first_line


class OutputFormat(str, enum.Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    table = "table"

    @classmethod
    def default_for(cls, stream: TextIO) -> "OutputFormat":
        """Human table on a terminal, machine-readable jsonl when piped or redirected."""
        isatty = getattr(stream, "isatty", None)
        return cls.table if isatty is not None and isatty() else cls.jsonl


def rich_console(stream: TextIO):
    """A rich Console writing to stream. Off a terminal rich assumes 80 columns and folds long lines and
    tables; a redirected report or table gets room enough that nothing folds."""
    from rich.console import Console

    isatty = getattr(stream, "isatty", None)
    return Console(file=stream, highlight=False, width=None if isatty is not None and isatty() else 200)


@dataclass
class Record:
    source: str
    task: str
    model: str
    width: int | None = None
    height: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # the task's own output
    error: dict[str, str] | None = None

    @classmethod
    def failure(cls, source: str, task: str, model: str, exc: BaseException) -> "Record":
        return cls(source=source, task=task, model=model, error=error_info(exc))

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "task": self.task, "model": self.model}
        if self.error is not None:
            out["error"] = self.error
            return out
        out["width"], out["height"] = self.width, self.height
        out.update(self.fields)
        return out


def error_info(exc: BaseException) -> dict[str, str]:
    """A one-line, user-facing description of why an input failed."""
    message = first_line(exc)
    return {"type": exc.__class__.__name__, "message": message}


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return value


class Writer:
    """Base writer: `write` each record as it comes (streaming), `close` once at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, record: Record) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    def write(self, record: Record) -> None:
        self.stream.write(json.dumps(_round(record.to_dict()), ensure_ascii=False) + "\n")
        self.stream.flush()  # a consumer like `jq` or `head` sees each record at once


class JsonWriter(Writer):
    """One JSON array, still streamed item by item so a long run holds nothing in memory."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._count = 0

    def write(self, record: Record) -> None:
        self.stream.write(("[\n  " if self._count == 0 else ",\n  ") + json.dumps(_round(record.to_dict()), ensure_ascii=False))
        self._count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self._count == 0 else "\n]\n")
        super().close()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
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


class CsvWriter(Writer):
    """One row per record. Columns are fixed by the first record plus the error columns; fields that
    appear only later are appended to the header of nothing (a CSV cannot grow columns), so they are
    joined into an `extra` JSON column instead of being lost."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._columns: list[str] | None = None
        self._writer = csv.writer(stream)

    def write(self, record: Record) -> None:
        row = flatten(_round(record.to_dict()))
        if self._columns is None:
            base = list(row) if record.ok else ["source", "task", "model"]
            self._columns = base + [c for c in ("error.type", "error.message") if c not in base] + ["extra"]
            self._writer.writerow(self._columns)
        extra = {k: v for k, v in row.items() if k not in self._columns}
        row["extra"] = json.dumps(extra, ensure_ascii=False) if extra else ""
        self._writer.writerow(["" if row.get(c) is None else row.get(c, "") for c in self._columns])
        self.stream.flush()


def summarize(record: Record) -> str:
    """The task's result in a few words, for the table view."""
    f = record.fields
    if "predictions" in f:
        return ", ".join(f"{p['label']} {p['score']:.3f}" for p in f["predictions"])
    if "object" in f:
        o = f["object"]
        if o.get("box") is None:
            return f"no object (p_c {o['present']:.3f})"
        return f"{o['label']} {o['score']:.3f} p_c {o['present']:.3f} box {[round(v) for v in o['box']]}"
    if "detections" in f:
        dets = f["detections"]
        shown = ", ".join(f"{d['label']} {d['score']:.2f} {[round(v) for v in d['box']]}" for d in dets[:5])
        more = f" (+{len(dets) - 5} more)" if len(dets) > 5 else ""
        return f"{len(dets)}: {shown}{more}" if dets else "none"
    if "points" in f:
        return f"{len(f['points'])} points" + (f" in {[round(v) for v in f['box']]}" if f.get("box") else "")
    if "same" in f:
        return f"{'same' if f['same'] else 'different'} (distance {f['distance']:.3f}, threshold {f['threshold']:.3f})"
    if "identity" in f:
        return f"{f['identity']} (distance {f['distance']:.3f})"
    return json.dumps(_round(f), ensure_ascii=False)


class TableWriter(Writer):
    """Aligned rows for a person at a terminal. Rows are printed in chunks as they arrive, so a long
    run shows progress; the first chunk fixes the column widths."""

    CHUNK = 32

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._console = rich_console(stream)
        self._rows: list[tuple[str, str, str]] = []
        self._widths: tuple[int, int] | None = None

    def write(self, record: Record) -> None:
        from rich.markup import escape

        size = f"{record.width}x{record.height}" if record.ok else "-"
        if record.ok:
            result = escape(summarize(record))
        else:
            result = f"[red]error[/red] {escape(record.error['type'])}: {escape(record.error['message'])}"
        self._rows.append((escape(record.source), size, result))
        if len(self._rows) >= self.CHUNK:
            self._flush_rows()

    def _flush_rows(self) -> None:
        from rich import box
        from rich.table import Table

        if not self._rows:
            return
        first = self._widths is None
        if first:
            self._widths = (min(60, max(len(r[0]) for r in self._rows)), max(9, max(len(r[1]) for r in self._rows)))
        table = Table(box=box.SIMPLE_HEAD if first else None, show_header=first, pad_edge=False)
        table.add_column("source", min_width=self._widths[0], max_width=self._widths[0], overflow="fold")
        table.add_column("size", min_width=self._widths[1], justify="right")
        table.add_column("result")
        for row in self._rows:
            table.add_row(*row)
        self._console.print(table)
        self._rows = []

    def close(self) -> None:
        self._flush_rows()
        super().close()


WRITERS: dict[OutputFormat, type[Writer]] = {
    OutputFormat.jsonl: JsonlWriter,
    OutputFormat.json: JsonWriter,
    OutputFormat.csv: CsvWriter,
    OutputFormat.table: TableWriter,
}


def make_writer(fmt: OutputFormat | None, stream: TextIO | None = None) -> Writer:
    stream = stream if stream is not None else sys.stdout
    fmt = fmt or OutputFormat.default_for(stream)
    return WRITERS[OutputFormat(fmt)](stream)


def write_all(records: Iterable[Record], writer: Writer) -> tuple[int, int]:
    """Write every record; return (done, failed)."""
    done = failed = 0
    for record in records:
        writer.write(record)
        done += record.ok
        failed += not record.ok
    writer.close()
    return done, failed


def to_string(records: Iterable[Record], fmt: OutputFormat) -> str:
    buf = io.StringIO()
    write_all(records, WRITERS[fmt](buf))
    return buf.getvalue()
