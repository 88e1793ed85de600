"""What a training run leaves beside its weights: the per-epoch history as JSON and a training-curve
PNG drawn with PIL (no plotting library); and the live progress displays on stderr, of training and of
prediction."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from cnntool.folders import save_image
from cnntool.weights import atomic_write_bytes

_W, _H, _PAD = 640, 300, 40
_COLOURS = {"train": (31, 119, 180), "val": (255, 127, 14)}
LOG_EVERY_S = 60.0


def write_metrics_json(path: Path, document: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def draw_curves(path: Path, history: Sequence[dict[str, Any]], metric: str) -> None:
    """Two panels, loss and `metric` per epoch, train and validation lines."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (_W * 2, _H), "white")
    d = ImageDraw.Draw(img)
    for panel, key in enumerate(("loss", metric)):
        x0 = panel * _W
        series = {split: [h.get(f"{split}_{key}") for h in history] for split in ("train", "val")}
        values = [v for s in series.values() for v in s if v is not None]
        d.text((x0 + _PAD, 8), f"{key} per epoch (blue: train, orange: validation)", fill="black")
        left, top, right, bottom = x0 + _PAD, 28, x0 + _W - 12, _H - 28
        d.rectangle((left, top, right, bottom), outline="grey")
        if not values:
            continue
        lo, hi = min(values), max(values)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        n = max(len(history), 2)

        def xy(i: int, v: float) -> tuple[float, float]:
            return (left + (right - left) * i / (n - 1), bottom - (bottom - top) * (v - lo) / (hi - lo))

        d.text((x0 + 2, top - 4), f"{hi:.3g}", fill="black")
        d.text((x0 + 2, bottom - 8), f"{lo:.3g}", fill="black")
        d.text((right - 60, bottom + 6), f"epoch {len(history)}", fill="black")
        for split, vals in series.items():
            points = [xy(i, v) for i, v in enumerate(vals) if v is not None]
            if len(points) > 1:
                d.line(points, fill=_COLOURS[split], width=2)
            for px, py in points:
                d.ellipse((px - 2, py - 2, px + 2, py + 2), fill=_COLOURS[split])
    _save_png(img, path)


def draw_curve(xs: Sequence[float], ys: Sequence[float], *, x_label: str, y_label: str, title: str):
    """One curve on 0..1 × 0..1 axes (a PR or ROC curve), as a PIL image."""
    from PIL import Image, ImageDraw

    side = 360
    img = Image.new("RGB", (side + 2 * _PAD, side + 2 * _PAD), "white")
    d = ImageDraw.Draw(img)
    left, top, right, bottom = _PAD, _PAD, _PAD + side, _PAD + side
    d.rectangle((left, top, right, bottom), outline="grey")
    d.text((left, 10), title, fill="black")
    d.text((right - 6 * len(x_label), bottom + 8), x_label, fill="black")
    d.text((4, top - 16), y_label, fill="black")
    for v in (0.0, 0.5, 1.0):
        d.text((left + v * side - 8, bottom + 8), f"{v:g}", fill="black")
        d.text((8, bottom - v * side - 6), f"{v:g}", fill="black")
    points = [(left + x * side, bottom - y * side) for x, y in zip(xs, ys)]
    if len(points) > 1:
        d.line(points, fill=_COLOURS["val"], width=2)
    return img


def draw_confusion(matrix: Sequence[Sequence[int]], names: Sequence[str]):
    """A confusion matrix (rows: true class, columns: predicted) as a PIL image, each row shaded by its share."""
    from PIL import Image, ImageDraw

    k = len(names)
    cell = max(18, min(48, 640 // max(k, 1)))
    left = 7 * min(12, max((len(str(n)) for n in names), default=1)) + 12
    top = 44
    img = Image.new("RGB", (max(left + k * cell + 10, 420), top + k * cell + 10), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 4), "rows: true class, columns: predicted (shade: share of the row)", fill="black")
    for i, row in enumerate(matrix):
        total = max(sum(row), 1)
        d.text((4, top + i * cell + cell // 3), str(names[i])[:12], fill="black")
        d.text((left + i * cell + 2, top - 16), str(names[i])[:max(1, cell // 7)], fill="black")
        for j, count in enumerate(row):
            share = count / total
            shade = int(255 - 200 * share)
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            d.rectangle(box, fill=(shade, shade, 255), outline=(220, 220, 220))
            if count and cell >= 24:
                d.text((box[0] + 3, box[1] + cell // 3), str(count), fill="black" if share < 0.6 else "white")
    return img


def save_figures(folder: Path, figures: dict[str, Any]) -> None:
    for name, image in figures.items():
        _save_png(image, folder / f"{name}.png")


def _save_png(img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(img, path)


def run_sidecars(path: Path) -> tuple[dict[str, Any] | None, Any]:
    """A weights file's training report (NAME.metrics.json, with the file's name) and curve (NAME.curve.png);
    None for either that is absent, e.g. beside an embedded file."""
    from PIL import Image

    sidecar, curve = (path.with_name(f"{path.stem}{suffix}") for suffix in (".metrics.json", ".curve.png"))
    report = {"file": path.name, **json.loads(sidecar.read_text())} if sidecar.is_file() else None
    return report, Image.open(curve).convert("RGB") if curve.is_file() else None


def files_sidecars(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The reports and curves found beside member files (run_sidecars), for write_ensemble_reports."""
    found = [run_sidecars(path) for path in paths]
    return [r for r, _ in found if r], [c for _, c in found if c]


def members_sidecars(path: Path, members: int) -> tuple[list[dict[str, Any]], list[Any], tuple[Any, Any] | None]:
    """The members' reports and curves out of an ensemble file's own sidecars (write_ensemble_reports), and its
    box reader's (report, curve) if it has one: its report lists them under 'members' and 'reader', its curve
    sheet holds the members' panels first and the reader's last, each of one height. The curves are told apart
    only when every member had its report (and so, from cnntool, its curve)."""
    report, sheet = run_sidecars(path)
    reports = (report or {}).get("members") or []
    reader = (report or {}).get("reader")
    panels = len(reports) + bool(reader)
    if sheet is None or len(reports) != members or sheet.height % panels:
        return reports, [], (reader, None) if reader else None
    height = sheet.height // panels
    curves = [sheet.crop((0, i * height, sheet.width, (i + 1) * height)) for i in range(panels)]
    return reports, curves[:len(reports)], (reader, curves[-1]) if reader else None


def write_ensemble_reports(out: Path, reports: Sequence[dict[str, Any]], curves: Sequence[Any],
                           document: dict[str, Any], *, reader: tuple[Any, Any] | None = None) -> None:
    """An ensemble's sidecars: `document` plus the members' own reports as `members` (and a localizer's box
    reader's (report, curve) as `reader`), and their training curves one above the other."""
    from PIL import Image

    curves = list(curves)
    if reader is not None:
        report, curve = reader
        document = {**document, "reader": report}
        curves += [curve] if curve else []
    write_metrics_json(out.with_name(f"{out.stem}.metrics.json"), {**document, "members": list(reports)})
    if not curves:
        return
    sheet = Image.new("RGB", (max(c.width for c in curves), sum(c.height for c in curves)), "white")
    top = 0
    for curve in curves:
        sheet.paste(curve, (0, top))
        top += curve.height
    _save_png(sheet, out.with_name(f"{out.stem}.curve.png"))


class Progress:
    """A rich progress bar per epoch on stderr: loss, metric, images/s, ETA. Silent when quiet."""

    def __init__(self, *, quiet: bool, metric: str, batch_size: int = 1) -> None:
        self.quiet, self.metric, self.batch_size = quiet, metric, batch_size
        self._bar = None
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            from cnntool.records import rich_console

            self.console = rich_console(sys.stderr)
            # Not a terminal (a log file): no bar, a plain line every LOG_EVERY_S seconds instead.
            self._bar = None if not self.console.is_terminal else RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[metric]}  {task.fields[speed]:.0f} img/s"),
                TimeRemainingColumn(), console=self.console, transient=True,
            )
        self._task = None
        self._last = 0.0
        self._epoch_text = ""

    def __enter__(self) -> "Progress":
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._epoch_text, self._steps, self._last = f"epoch {epoch + 1}/{epochs}", steps, time.monotonic()
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, completed=done,
                                        loss=0.0, metric="", speed=0.0)

    def step(self, done: int, loss: float, summary: dict[str, float], speed: float) -> None:
        now = time.monotonic()
        text = "  ".join(f"{k} {v:.4f}" for k, v in summary.items())
        if self.quiet:
            return
        if self._bar is None:
            if now - self._last >= LOG_EVERY_S:
                self._last = now
                eta = (self._steps - done) * self._batch_seconds(speed)
                self.log(f"{self._epoch_text} step {done}/{self._steps}  loss {loss:.4f}  {text}  "
                         f"{speed:.0f} img/s  epoch ETA {eta / 60:.1f} min")
            return
        if now - self._last < 0.2:  # redraws cost time on tiny models
            return
        self._last = now
        self._bar.update(self._task, completed=done, loss=loss, metric=text, speed=speed)

    def _batch_seconds(self, speed: float) -> float:
        return self.batch_size / speed if speed > 0 else 0.0

    def log(self, message: str) -> None:
        if not self.quiet:
            (self.console.print if self._bar is None else self._bar.console.print)(message)


# Off a terminal (a log file, CI), prediction reports a line this often instead of a bar.
STATUS_EVERY_S = 10.0


class RunProgress:
    """Prediction's progress on stderr: a rich bar (images, img/s, ETA when the total is known) on a terminal, a
    one-line status every STATUS_EVERY_S seconds otherwise, nothing with -q. Records printed to a terminal's
    stdout meanwhile appear above the bar."""

    def __init__(self, total: int | None, *, quiet: bool, what: str = "images") -> None:
        self.total, self.quiet, self.what = total, quiet, what
        self.done, self._bar, self._task = 0, None, None
        self._start = self._last = time.monotonic()
        if quiet:
            return
        from cnntool.console import rich_console

        self.console = rich_console(sys.stderr)
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            stdout_tty = getattr(sys.stdout, "isatty", lambda: False)()
            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[speed]:.1f} img/s"), TimeRemainingColumn(),
                                     console=self.console, transient=True, redirect_stdout=stdout_tty,
                                     redirect_stderr=False)

    def __enter__(self) -> "RunProgress":
        if self._bar is not None:
            self._bar.__enter__()
            self._task = self._bar.add_task(self.what, total=self.total, speed=0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.quiet:
            return
        now = time.monotonic()
        speed = self.done / max(now - self._start, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, speed=speed)
        elif now - self._last >= STATUS_EVERY_S:
            self._last = now
            of = f"/{self.total}" if self.total else ""
            eta = f", about {(self.total - self.done) / speed:.0f} s left" if self.total and speed > 0 else ""
            rate = f"{speed:.1f} img/s" if speed >= 1 else f"{1 / speed:.1f} s per image"
            self.console.print(f"cnntool: {self.done}{of} {self.what}, {rate}{eta}")
