"""The prediction pipeline shared by every predict subcommand:

sources → decode + preprocess (worker processes) → batches → model → task.decode → Record → writer

Order is the order of the inputs. A bad input becomes an error record in its place and the rest go on.
Memory stays flat however many inputs stream through: at most `in_flight` decoded images exist at once.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from cnntool import sources
from cnntool.folders import writable_folder
from cnntool.preprocess import DEFAULT_MAX_PIXELS, Geometry, ImageError, Preprocessor, open_image
from cnntool.records import OutputFormat, Record, error_info, make_writer

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cnntool.engine.inference import InferenceOptions
    from cnntool.loader import LoadedModel


class ModelError(RuntimeError):
    """The model raised on one image (e.g. an image smaller than its smallest window)."""


@dataclass(kw_only=True)
class RunOptions:
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    batch_size: int = 32
    workers: int = 0
    threads: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    recursive: bool = False
    save: Path | None = None
    quiet: bool = False
    format: OutputFormat | None = None
    task_options: Mapping[str, Any] = field(default_factory=dict)
    # How the model runs (cnntool.engine.inference): --bf16, --compile and --int8 on the command line; BatchNorm
    # folding and channels_last are on unless turned off here (the benchmarks compare both ways).
    bf16: bool = False
    compile: bool = False
    int8: bool = False
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


def resolve_device(name: str) -> str:
    """auto, cpu, cuda, cuda:N or mps → a device torch can use here, or a one-line ConfigError."""
    import torch

    from cnntool.errors import ConfigError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but there are {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return name


def task_module(task: str):
    return importlib.import_module(f"cnntool.tasks.{task}.predict")


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

    def __init__(self, loaded: "LoadedModel", device: str, task_options: Mapping[str, Any],
                 inference: "InferenceOptions | None" = None, *, quiet: bool = False) -> None:
        import torch

        from cnntool.engine.inference import InferenceOptions, prepare

        self.loaded = loaded
        self.device = torch.device(device)
        # Folds BatchNorm into loaded.module in place: the Predictor owns the model from here on.
        self.model = prepare(loaded.module, device, inference or InferenceOptions(), quiet=quiet)
        self.task = task_module(loaded.task)
        given = {k: v for k, v in task_options.items() if v is not None}
        self.task_options = {**loaded.spec.decode, **given}
        runner = getattr(self.task, "runner", None)  # a task may call its model its own way (detect's --tta)
        self.run_model = runner(self.model, loaded.module, self.task_options) if runner else self.model
        self.preprocessor = Preprocessor(loaded.input)

    def _forward(self, arrays: list["np.ndarray"]):
        """One forward pass over a stack of same-size images; images kept at their own size (resize
        "none") go one by one, their outputs joined as if batched (tensors concatenated, lists chained)."""
        import numpy as np
        import torch

        if len({a.shape for a in arrays}) == 1:
            pixels = torch.from_numpy(np.stack(arrays))
            return self.run_model(self.preprocessor.normalize(pixels).to(self.device))
        outputs = [self._forward([a]) for a in arrays]
        return torch.cat(outputs) if isinstance(outputs[0], torch.Tensor) else [o for out in outputs for o in out]

    def _decode(self, items: list[Item]) -> list[dict[str, Any] | BaseException]:
        """Each item's record fields, or the exception the model raised on it. A batch that fails is
        split down to its single images, so one image the model cannot take costs only its own record.
        Configuration errors (an unknown --classes name, say) still end the run."""
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
            reason = first_line(exc)
            return [ModelError(f"the model cannot process this image ({reason})")]

    def __call__(self, batch: list[Item]) -> list[Record]:
        good = [item for item in batch if item.error is None]
        results = dict(zip(map(id, good), self._decode(good))) if good else {}
        records = []
        for item in batch:
            result = item.error if item.error is not None else results[id(item)]
            if isinstance(result, BaseException):
                records.append(Record(source=item.source, task=self.loaded.task, model=self.loaded.name,
                                      error=error_info(result)))
            else:
                g = item.geometry
                records.append(Record(source=item.source, task=self.loaded.task, model=self.loaded.name,
                                      width=g.width, height=g.height, fields=result))
        return records


def predict(inputs: Iterable[str], task: str, options: RunOptions) -> Iterator[Record]:
    """Yield one record per input, in input order."""
    import torch

    from cnntool.loader import load_model

    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    loaded = load_model(options.model, options.weights, task=task, device=device)
    predictor = Predictor(loaded, device, options.task_options, options.inference_options(), quiet=options.quiet)
    in_flight = max(2 * options.batch_size, 4 * max(options.workers, 1))
    items = load_items(inputs, predictor.preprocessor, workers=options.workers, in_flight=in_flight,
                       max_pixels=options.max_pixels, recursive=options.recursive)
    saver = AnnotationSaver(options.save, predictor.task) if options.save else None
    for batch in batched(items, options.batch_size):
        records = predictor(batch)
        for item, record in zip(batch, records):
            if saver is not None and record.ok:
                saver.save(item, record)
            yield record


class ImageDirectory:
    """A directory this run writes images into: PNGs named after their inputs, never overwriting an
    earlier output of the same run (two inputs may share a file name), each written atomically."""

    def __init__(self, directory: Path, option: str) -> None:
        self.directory = writable_folder(directory, option)
        self._used: set[str] = set()

    def write(self, source: str, image) -> Path:
        stem = Path(source).stem or "image"
        name, n = f"{stem}.png", 1
        while name in self._used:
            n += 1
            name = f"{stem}-{n}.png"
        self._used.add(name)
        target = self.directory / name
        tmp = target.with_name(f".{name}.tmp")
        image.save(tmp, format="PNG")
        os.replace(tmp, target)
        return target


class AnnotationSaver:
    """Draws each result onto its original image (`--save DIR`)."""

    def __init__(self, directory: Path, task) -> None:
        self.output = ImageDirectory(directory, "--save")
        self.task = task

    def save(self, item: Item, record: Record) -> None:
        drawn = self.task.draw(open_image(item.path, channels=3), record.fields)
        record.fields = {**record.fields, "saved": str(self.output.write(item.path, drawn))}


def run(task: str, inputs: list[str], options: RunOptions, *, progress: Callable[[Record], None] | None = None) -> int:
    """Run a predict subcommand end to end; return the exit code (0 all done, 1 some inputs failed)."""
    writer = make_writer(options.format)
    failed = 0
    for record in predict(inputs, task, options):
        writer.write(record)
        failed += not record.ok
        if progress is not None:
            progress(record)
    writer.close()
    if failed and not options.quiet:
        print(f"cnntool: {failed} input(s) failed; see their error records", file=sys.stderr)
    return 1 if failed else 0
