"""One record type for every task, and the writers that print records. stdlib only.

A record is one JSON object per input (design.md §2): common fields, then the task's payload, or an `error`
object. Each task has one payload type (cnntool/tasks/<task>/) that says what it puts on the wire
(`to_dict`), in a table (`summary`) and in CSV rows (`csv_rows`, one per prediction / detection / point).
Coordinates are pixels of the original image after EXIF orientation.

Output is always well-formed: JSON is strict (a non-finite number never reaches it: such a record becomes an
error record), CSV has one fixed header per task, and text for people has its control characters escaped.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence, TextIO

from cnntool.console import printable, rich_console
from cnntool.errors import first_line
from cnntool.options import option

__all__ = ["OutputFormat", "Payload", "Record", "error_info", "make_writer", "rich_console", "to_string"]


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


def format_option() -> Any:
    return option(None, "--format", "-f", help="Output format. Default: table on a terminal, jsonl when piped.")


class Payload(Protocol):
    """A task's result for one input."""

    def to_dict(self) -> dict[str, Any]: ...  # the record's task fields, as JSON
    def summary(self) -> str: ...  # a few words for the table view
    def csv_rows(self) -> list[dict[str, Any]]: ...  # the task's csv_columns, one row per item (may be none)


class NonFiniteOutput(ValueError):
    """A model gave NaN or infinity where a score or coordinate belongs."""


@dataclass
class Record:
    source: str
    task: str
    model: str
    width: int | None = None
    height: int | None = None
    payload: Payload | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields beside the payload (e.g. "saved")
    error: dict[str, str] | None = None

    @classmethod
    def failure(cls, source: str, task: str, model: str, exc: BaseException) -> "Record":
        return cls(source=source, task=task, model=model, error=error_info(exc))

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def fields(self) -> dict[str, Any]:
        """The task's fields as they go on the wire."""
        return {**(self.payload.to_dict() if self.payload is not None else {}), **self.extra}

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
    return {"type": exc.__class__.__name__, "message": first_line(exc)}


def _round(value: Any, digits: int = 4) -> Any:
    """Floats rounded for output; NonFiniteOutput on NaN or infinity anywhere."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NonFiniteOutput("the model gave a non-finite number (NaN or infinity): its weights or input "
                                  "spec are broken")
        return round(value, digits)
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return value


def wire(record: Record) -> dict[str, Any]:
    """The record as it is written: rounded; a record holding a non-finite number becomes an error record (in
    place, so the run counts it as failed)."""
    try:
        return _round(record.to_dict())
    except NonFiniteOutput as exc:
        record.payload, record.extra, record.error = None, {}, error_info(exc)
        return record.to_dict()


class Writer:
    """Base writer: `write` each record as it comes (streaming), `close` once at the end."""

    def __init__(self, stream: TextIO, columns: Sequence[str] = ()) -> None:
        self.stream = stream

    def write(self, record: Record) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, allow_nan=False)


class JsonlWriter(Writer):
    def write(self, record: Record) -> None:
        self.stream.write(_json(wire(record)) + "\n")
        self.stream.flush()  # a consumer like `jq` or `head` sees each record at once


class JsonWriter(Writer):
    """One JSON array, still streamed item by item so a long run holds nothing in memory."""

    def __init__(self, stream: TextIO, columns: Sequence[str] = ()) -> None:
        super().__init__(stream)
        self._count = 0

    def write(self, record: Record) -> None:
        self.stream.write(("[\n  " if self._count == 0 else ",\n  ") + _json(wire(record)))
        self._count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self._count == 0 else "\n]\n")
        super().close()


# Every CSV starts with these and ends with the error columns; the task's own columns sit between.
CSV_HEAD = ("source", "task", "model", "width", "height")
CSV_TAIL = ("saved", "save_error", "error.type", "error.message")
# A cell a spreadsheet would run as a formula (OWASP's list) is written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        text = printable(value)
        return "'" + text if text.startswith(_FORMULA_START) else text
    return value


class CsvWriter(Writer):
    """One row per prediction / detection / point under one fixed header per task (CSV_HEAD, the task's
    columns, CSV_TAIL); an input with none, or that failed, still gets one row, so no input is lost."""

    def __init__(self, stream: TextIO, columns: Sequence[str] = ()) -> None:
        super().__init__(stream)
        self.columns = [*CSV_HEAD, *columns, *CSV_TAIL]
        self._writer = csv.writer(stream)
        self._writer.writerow(self.columns)

    def write(self, record: Record) -> None:
        document = wire(record)
        common = {k: document.get(k) for k in CSV_HEAD}
        if "error" in document:
            rows = [{**common, "error.type": document["error"]["type"], "error.message": document["error"]["message"]}]
        else:
            items = _round(record.payload.csv_rows()) if record.payload is not None else []
            common["saved"], common["save_error"] = document.get("saved"), document.get("save_error")
            rows = [{**common, **item} for item in items] or [common]
        for row in rows:
            self._writer.writerow([csv_cell(row.get(c)) for c in self.columns])
        self.stream.flush()


class TableWriter(Writer):
    """Aligned rows for a person at a terminal. Rows are printed in chunks as they arrive, so a long
    run shows progress; the first chunk fixes the column widths."""

    CHUNK = 32

    def __init__(self, stream: TextIO, columns: Sequence[str] = ()) -> None:
        super().__init__(stream)
        self._console = rich_console(stream)
        self._rows: list[tuple[str, str, str]] = []
        self._widths: tuple[int, int] | None = None

    def write(self, record: Record) -> None:
        from rich.markup import escape

        document = wire(record)
        if "error" in document:
            error = document["error"]
            size, result = "-", f"[red]error[/red] {escape(printable(error['type']))}: {escape(printable(error['message']))}"
        else:
            size = f"{record.width}x{record.height}"
            result = escape(printable(record.payload.summary() if record.payload is not None else ""))
        self._rows.append((escape(printable(record.source)), size, result))
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


def make_writer(fmt: OutputFormat | None, stream: TextIO | None = None, columns: Sequence[str] = ()) -> Writer:
    """The writer for `fmt` (None: by the stream, OutputFormat.default_for); `columns`: the task's CSV columns."""
    stream = stream if stream is not None else sys.stdout
    fmt = fmt or OutputFormat.default_for(stream)
    return WRITERS[OutputFormat(fmt)](stream, columns)


def write_all(records: Iterable[Record], writer: Writer) -> tuple[int, int]:
    """Write every record; return (done, failed)."""
    done = failed = 0
    for record in records:
        writer.write(record)
        done += record.ok
        failed += not record.ok
    writer.close()
    return done, failed


def to_string(records: Iterable[Record], fmt: OutputFormat, columns: Sequence[str] = ()) -> str:
    buf = io.StringIO()
    write_all(records, WRITERS[fmt](buf, columns))
    return buf.getvalue()
