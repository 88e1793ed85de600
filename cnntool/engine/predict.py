"""The prediction pipeline shared by every predict subcommand:

sources → decode + preprocess (worker processes) → batches → model → task.decode → Record → writer

The task is a cnntool.engine.task.Task: its decode, runner and draw are all the pipeline knows of it. Order
is the order of the inputs. A bad input becomes an error record in its place and the rest go on. Memory
stays flat however many inputs stream through: at most `in_flight` decoded images exist at once.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from cnntool import sources
from cnntool.console import quiet_option, warn
from cnntool.device import device_option, resolve_device, set_threads, threads_option, workers_option
from cnntool.engine.inference import bf16_option, compile_option, int8_option
from cnntool.folders import ImageDirectory
from cnntool.loader import model_option, weights_option
from cnntool.options import option
from cnntool.preprocess import DEFAULT_MAX_PIXELS, Geometry, ImageError, Preprocessor, max_pixels_option, open_image
from cnntool.records import OutputFormat, Record, error_info, format_option, make_writer

if TYPE_CHECKING:
    import numpy as np

    from cnntool.engine.inference import InferenceOptions
    from cnntool.engine.task import Task
    from cnntool.loader import LoadedModel


class ModelError(RuntimeError):
    """The model raised on one image (e.g. an image smaller than its smallest window)."""


@dataclass(kw_only=True)
class RunOptions:
    """How a predict subcommand runs, whatever its task."""

    model: str | None = model_option()
    weights: str | None = weights_option()
    format: OutputFormat | None = format_option()
    device: str = device_option()
    batch_size: int = option(32, "--batch-size", "-b", min=1, help="Images per forward pass.")
    workers: int = workers_option()
    threads: int | None = threads_option()
    # How the model runs (cnntool.engine.inference): --bf16, --compile and --int8 on the command line;
    # BatchNorm folding and channels_last are on unless turned off here (the benchmarks compare both ways).
    bf16: bool = bf16_option()
    compile: bool = compile_option()
    int8: bool = int8_option()
    save: Path | None = option(None, "--save", help="Write annotated images into this directory.")
    recursive: bool = sources.recursive_option()
    max_pixels: int = max_pixels_option()
    quiet: bool = quiet_option()
    task_options: Mapping[str, Any] = field(default_factory=dict)  # the task's decode options, as given
    fold_bn: bool = True
    channels_last: bool = True

    def inference_options(self) -> "InferenceOptions":
        from cnntool.engine.inference import InferenceOptions

        return InferenceOptions(fold_bn=self.fold_bn, channels_last=self.channels_last, bf16=self.bf16,
                                compile=self.compile, int8=self.int8)


@dataclass
class Item:
    """One input on its way through the pipeline: either pixels + geometry, or the reason it failed."""

    source: str
    path: str | None
    pixels: "np.ndarray | None" = None
    geometry: Geometry | None = None
    error: BaseException | None = None


# Worker-process state: set once per process by the pool initializer, so each task sends only a path.
_worker_preprocessor: Preprocessor | None = None
_worker_max_pixels = DEFAULT_MAX_PIXELS


def _init_worker(preprocessor: Preprocessor, max_pixels: int) -> None:
    global _worker_preprocessor, _worker_max_pixels
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tears the pool down
    _worker_preprocessor, _worker_max_pixels = preprocessor, max_pixels


def _load(preprocessor: Preprocessor, path: str, max_pixels: int) -> tuple[Any, Any, Any]:
    """(pixels, geometry, None) or (None, None, error): an exception never escapes a decode."""
    try:
        pixels, geometry = preprocessor.load_uint8(path, max_pixels=max_pixels)
        return pixels, geometry, None
    except ImageError as exc:
        return None, None, exc
    except Exception as exc:  # a decoder bug must cost one record, not the run
        return None, None, ImageError(f"{exc.__class__.__name__}: {exc}")


def _load_in_worker(path: str) -> tuple[Any, Any, Any]:
    # "" marks a source that matched nothing; it only keeps results aligned with the pending queue.
    if path == "":
        return None, None, None
    assert _worker_preprocessor is not None
    return _load(_worker_preprocessor, path, _worker_max_pixels)


def load_items(inputs: Iterable[str], preprocessor: Preprocessor, *, workers: int, in_flight: int,
               max_pixels: int, recursive: bool = False) -> Iterator[Item | None]:
    """Decode every input, in order, with `workers` processes (0 = here) and at most `in_flight` decoded
    images held at once. None marks a pause in the input (stdin has nothing ready)."""
    expanded = sources.expand(inputs, recursive=recursive, pauses=True)
    if workers <= 0:
        for entry in expanded:
            if isinstance(entry, sources.InputPause):
                yield None
            elif isinstance(entry, sources.MissingSource):
                yield Item(entry.source, None, error=ImageError(entry.reason))
            else:
                yield Item(sources.display_name(entry), entry, *_load(preprocessor, entry, max_pixels))
        return

    # Pool.imap keeps order; the semaphore stops its feeder thread from running ahead of the consumer.
    slots = threading.Semaphore(in_flight)
    pending: deque[str | sources.MissingSource] = deque()

    def paths() -> Iterator[str]:
        for entry in expanded:
            slots.acquire()
            pending.append(entry)
            if isinstance(entry, (sources.MissingSource, sources.InputPause)):
                yield ""  # placeholder so results stay aligned with `pending`
            else:
                yield entry

    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(preprocessor, max_pixels)) as pool:
        for pixels, geometry, error in pool.imap(_load_in_worker, paths(), chunksize=1):
            entry = pending.popleft()
            slots.release()
            if isinstance(entry, sources.InputPause):
                yield None
            elif isinstance(entry, sources.MissingSource):
                yield Item(entry.source, None, error=ImageError(entry.reason))
            else:
                yield Item(sources.display_name(entry), entry, pixels, geometry, error)


def batched(items: Iterator[Item | None], size: int) -> Iterator[list[Item]]:
    """Groups of consecutive items holding `size` decodable images (errors ride along in place); a pause
    in the input (None) ends the batch early."""
    batch: list[Item] = []
    good = 0
    for item in items:
        if item is None:
            if batch:
                yield batch
                batch, good = [], 0
            continue
        batch.append(item)
        good += item.error is None
        if good >= size:
            yield batch
            batch, good = [], 0
    if batch:
        yield batch


class Predictor:
    """A loaded model + its task's decoder, applied to batches of preprocessed items."""

    def __init__(self, task: "Task", loaded: "LoadedModel", device: str, task_options: Mapping[str, Any],
                 inference: "InferenceOptions | None" = None, *, quiet: bool = False) -> None:
        import torch

        from cnntool.engine.inference import InferenceOptions, prepare

        self.task, self.loaded = task, loaded
        self.device = torch.device(device)
        # Folds BatchNorm into loaded.module in place: the Predictor owns the model from here on.
        self.model = prepare(loaded.module, device, inference or InferenceOptions(), quiet=quiet)
        given = {k: v for k, v in task_options.items() if v is not None}
        self.task_options = {**loaded.spec.decode, **given}
        run = task.runner(self.model, loaded.module, self.task_options)
        # A model with a domain check (cnntool.models.domain) hands the task's decoder its logits as well.
        self.run_model = run if loaded.domain is None else (lambda x: (run(x), loaded.domain(x)))
        self.preprocessor = Preprocessor(loaded.input)

    def _forward(self, arrays: list["np.ndarray"]):
        """One forward pass over a stack of same-size images; images kept at their own size (resize
        "none") go one by one, their outputs joined as if batched (tensors concatenated, lists chained)."""
        import numpy as np
        import torch

        if len({a.shape for a in arrays}) == 1:
            pixels = torch.from_numpy(np.stack(arrays) if len(arrays) > 1 else arrays[0][None])
            if not getattr(self.loaded.module, "takes_uint8", False):
                pixels = self.preprocessor.normalize(pixels)
            return self.run_model(pixels.to(self.device))
        outputs = [self._forward([a]) for a in arrays]
        return torch.cat(outputs) if isinstance(outputs[0], torch.Tensor) else [o for out in outputs for o in out]

    def _decode(self, items: list[Item]) -> list[Any]:
        """Each item's payload, or the exception the model raised on it. A batch that fails is split down to
        its single images, so one image the model cannot take costs only its own record. Configuration
        errors (an unknown --classes name, say) still end the run."""
        import torch

        from cnntool.errors import ConfigError, first_line

        try:
            with torch.inference_mode():
                outputs = self._forward([item.pixels for item in items])
            return self.task.decode(outputs, [item.geometry for item in items], classes=self.loaded.classes,
                                    options=self.task_options)
        except ConfigError:
            raise
        except Exception as exc:
            if len(items) > 1:
                return [result for item in items for result in self._decode([item])]
            return [ModelError(f"the model cannot process this image ({first_line(exc)})")]

    def __call__(self, batch: list[Item]) -> list[Record]:
        good = [item for item in batch if item.error is None]
        results = dict(zip(map(id, good), self._decode(good))) if good else {}
        records = []
        for item in batch:
            result = item.error if item.error is not None else results[id(item)]
            record = Record(source=item.source, task=self.task.name, model=self.loaded.name)
            if isinstance(result, BaseException):
                record.error = error_info(result)
            else:
                record.width, record.height, record.payload = item.geometry.width, item.geometry.height, result
            records.append(record)
        return records


def predict(task: "Task", inputs: Iterable[str], options: RunOptions) -> Iterator[Record]:
    """Yield one record per input, in input order."""
    from cnntool.loader import load_model

    set_threads(options.threads)
    device = resolve_device(options.device)
    loaded = load_model(options.model, options.weights, task=task.name, device=device)
    predictor = Predictor(task, loaded, device, options.task_options, options.inference_options(),
                          quiet=options.quiet)
    in_flight = max(2 * options.batch_size, 4 * max(options.workers, 1))
    items = load_items(inputs, predictor.preprocessor, workers=options.workers, in_flight=in_flight,
                       max_pixels=options.max_pixels, recursive=options.recursive)
    saver = AnnotationSaver(options.save, task) if options.save else None
    for batch in batched(items, options.batch_size):
        records = predictor(batch)
        for item, record in zip(batch, records):
            if saver is not None and record.ok:
                saver.save(item, record)
            yield record


class AnnotationSaver:
    """Draws each result onto its original image (`--save DIR`)."""

    def __init__(self, directory: Path, task: "Task") -> None:
        self.output = ImageDirectory(directory, "--save")
        self.task = task

    def save(self, item: Item, record: Record) -> None:
        """The annotated image's path as the record's "saved"; a failure to draw or write it (a full disk, the
        file gone meanwhile) is the record's "save_error", and the run goes on."""
        from cnntool.errors import first_line

        try:
            drawn = self.task.draw(open_image(item.path, channels=3), record.payload)
            record.extra["saved"] = str(self.output.write(item.path, drawn))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
            record.extra["save_error"] = f"annotated image not written: {reason}"


def run(task: "Task", inputs: list[str], options: RunOptions, *,
        after_each: Callable[[Record], None] | None = None) -> int:
    """Run a predict subcommand end to end; return the exit code (0 all done, 1 some inputs failed)."""
    from cnntool.engine.report import RunProgress

    failed = unlike = done = 0
    with RunProgress(sources.count(inputs, recursive=options.recursive), quiet=options.quiet) as progress:
        writer = make_writer(options.format, columns=task.csv_columns)  # after the bar: on a terminal it prints above
        for record in predict(task, inputs, options):
            writer.write(record)
            failed += not record.ok or "save_error" in record.extra
            unlike += getattr(record.payload, "in_domain", None) is False
            done += record.ok
            if after_each is not None:
                after_each(record)
            progress.advance()
        writer.close()
    if unlike:
        warn(f"{unlike} of {done} image(s) do not look like what the model was trained on: no answer given for them "
             "(in_domain false; `cnntool models NAME` says what it knows)", quiet=options.quiet)
    if failed:
        warn(f"{failed} input(s) failed; see their error records", quiet=options.quiet)
    return 1 if failed else 0
