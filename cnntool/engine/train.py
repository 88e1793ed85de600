"""The one training engine: every task trains through `train(task, config)`.

The task object supplies data, batches, loss and metrics (interface: cnntool.engine.task.Trainable).
The engine owns the rest: seeded data order and augmentation, the optimizer and learning-rate schedule,
bf16 autocast and channels_last, fine-tuning from trained weights (`init`), validation each epoch, best/last
checkpoints, resume (also mid-epoch), SIGINT/SIGTERM → checkpoint then exit, torchrun (DDP) and the outputs:
weights + metadata written atomically, a metrics JSON and a training-curve PNG beside them.

Repeatability: the data order of an epoch depends only on (seed, epoch), and torch's global RNG is
reseeded from (seed, rank, epoch, step) before every step, so a run resumed from any step boundary
retraces the uninterrupted one exactly, with no RNG state to save.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from cnntool import version, weights
from cnntool.data import batches
from cnntool.console import quiet_option, warn
from cnntool.device import resolve_device, set_threads, threads_option, workers_option
from cnntool.engine import checkpoint, distributed
from cnntool.engine.evaluate import autocast, run_eval
from cnntool.engine.inference import bf16_option
from cnntool.engine.report import Progress, draw_curves, save_figures, write_metrics_json
from cnntool.errors import ConfigError
from cnntool.folders import writable_folder
from cnntool.options import option

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class TrainConfig:
    """The engine's options, the same for every task (a task's command may change their defaults)."""

    out: Path = option(dataclasses.MISSING, "--out", "-o", help="Weights file to write (.safetensors); "
                       "NAME.metrics.json and NAME.curve.png go beside it.")
    epochs: int = option(10, "--epochs", "-e", min=1, help="Passes over the training data.")
    batch_size: int = option(128, "--batch-size", "-b", min=1, help="Images per step (per process under torchrun).")
    lr: float = option(0.05, "--lr", min=0.0, help="Peak learning rate.")
    optimizer: str = option("sgd", "--optimizer", help="sgd (Nesterov momentum) or adamw.")
    momentum: float = option(0.9, "--momentum", min=0.0, help="SGD momentum.")
    weight_decay: float = option(5e-4, "--weight-decay", min=0.0, help="Weight decay (not on biases and norm weights).")
    schedule: str = option("onecycle", "--schedule", help="onecycle, cosine or constant.")
    warmup: float = option(0.15, "--warmup", min=0.0, max=1.0, help="Fraction of the steps spent warming up.")
    seed: int = option(0, "--seed", help="Seeds the split, initial weights, data order and augmentation.")
    workers: int = workers_option()
    device: str = option("cpu", "--device", help="cpu, cuda, cuda:N or auto.")
    threads: int | None = threads_option()
    bf16: bool = bf16_option()
    channels_last: bool = option(False, "--channels-last", help="channels_last memory format.")
    ema: float = option(0.0, "--ema", min=0.0, max=0.99999, help="Keep a moving average of the weights with this "
                        "decay (e.g. 0.999) and ship it; 0 = off.")
    init: str | None = option(None, "--init", "--weights", help="Fine-tune: start from these weights (a file, an "
                              "embedded name, or DEFAULT / a torchvision weights name for the torchvision "
                              "architectures); tensors whose name and shape match are copied, so a new class count "
                              "keeps a fresh head.")
    freeze_backbone: bool = option(False, "--freeze-backbone", help="With --init: train only what --init left fresh "
                                   "(the head resized to your classes); the rest keeps its pretrained weights.")
    resume: bool = option(False, "--resume", help="Continue from the last checkpoint in the run directory.")
    run_dir: Path | None = option(None, "--run-dir", help="Checkpoint directory (default: runs/<out name>).")
    quiet: bool = quiet_option()
    # Seeds the initial weights, data order and augmentation when set; `seed` then seeds only the split
    # (ensemble members: one split, different networks).
    model_seed: int | None = None
    eval_batch_size: int = 500
    command: str = ""  # the command line, recorded in the metadata

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be positive")
        if self.out.suffix != ".safetensors":
            raise ConfigError(f"--out must end in .safetensors, not {self.out.name!r}")

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.out.stem

    @property
    def weights_seed(self) -> int:
        return self.seed if self.model_seed is None else self.model_seed

    def sidecar(self, suffix: str) -> Path:
        return self.out.with_name(f"{self.out.stem}{suffix}")

    def outputs(self) -> dict[str, Path]:
        """Every file a run writes, by the option that places it."""
        return {"--out": self.out, "--out (metrics)": self.sidecar(".metrics.json"),
                "--out (curve)": self.sidecar(".curve.png"), "--run-dir": self.checkpoint_dir / "last.safetensors",
                "--run-dir (best)": self.checkpoint_dir / "best.safetensors",
                "--run-dir (metrics)": self.checkpoint_dir / "metrics.json",
                "--run-dir (curve)": self.checkpoint_dir / "curve.png"}


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training after a checkpoint was written."""

    def __init__(self, signum: int, checkpoint_path: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint written to {checkpoint_path} "
                         "(continue with --resume)")
        self.signum, self.checkpoint_path = signum, checkpoint_path

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The schedule as a pure function of the global step (so resume needs no scheduler state)."""
    if cfg.schedule == "constant":
        return cfg.lr
    warm = int(cfg.warmup * total)
    if step < warm:
        start = cfg.lr / 25 if cfg.schedule == "onecycle" else 0.0
        return start + (cfg.lr - start) * step / warm
    t = (step - warm) / max(total - warm, 1)
    floor = cfg.lr * 1e-4 if cfg.schedule == "onecycle" else 0.0
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _step_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    return ((seed * 1_000_003 + rank * 10_007 + epoch) * 100_003 + step) % (2**63)


def _device(name: str, d: distributed.Dist) -> str:
    name = resolve_device(name)
    return f"cuda:{d.local_rank}" if name == "cuda" and d.enabled else name


def _optimizer(model, cfg: TrainConfig):
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


class _Stopper:
    """Turns SIGINT/SIGTERM into a flag checked between steps; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Stopper":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def request(self, signum: int) -> None:
        self.signum = signum


@dataclass
class _State:
    epoch: int = 0
    step: int = 0  # next step within the epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    train_loss_sum: float = 0.0
    train_seen: int = 0
    train_metric_state: list[Any] = field(default_factory=list)
    train_seconds: float = 0.0


def train(task, cfg: TrainConfig, *, on_step: Callable[["Trainer", int, int], None] | None = None) -> dict[str, Any]:
    """Train, evaluate on the held-out data, write the weights; returns their metadata."""
    return Trainer(task, cfg, on_step=on_step).run()


class Trainer:
    def __init__(self, task, cfg: TrainConfig, *, on_step=None) -> None:
        self.task, self.cfg, self.on_step = task, cfg, on_step
        self.stopper = _Stopper()

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current step with a checkpoint, as a signal would."""
        self.stopper.request(signum)

    def run(self) -> dict[str, Any]:
        import torch

        cfg, task = self.cfg, self.task
        set_threads(cfg.threads)
        self.dist = dist = distributed.init(cfg.device)
        try:
            if dist.main:  # before any data is read: a training must not fail at its first report
                writable_folder(cfg.out.parent, "--out")
                writable_folder(cfg.checkpoint_dir, "--run-dir")
            self.device = _device(cfg.device, dist)
            data = task.prepare(cfg.seed)
            skipped = data.skipped() if dist.main else []
            if skipped:
                shown = "; ".join(f"{path}: {why}" for path, why in skipped[:3])
                warn(f"{len(skipped)} unreadable image(s) left out ({shown}{'; …' if len(skipped) > 3 else ''})",
                     quiet=cfg.quiet)
            torch.manual_seed(cfg.weights_seed)  # same initial weights on every rank and every run
            model = task.build_model()
            self.parent = self._start_from(model, cfg.init) if cfg.init else None
            if cfg.freeze_backbone:
                self._freeze(model)
            model = model.to(self.device)
            if cfg.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self.model = model
            self.ema = _Ema(model) if cfg.ema else None
            self.optimizer = _optimizer(model, cfg)
            state = self._resume() if cfg.resume else _State()
            train_model = model
            if dist.enabled:
                from torch.nn.parallel import DistributedDataParallel

                # Gradients are written straight into DDP's buckets, which follow each parameter's layout: with
                # channels_last weights, separate grads would be laid out by autograd and differ from the buckets.
                train_model = DistributedDataParallel(model, device_ids=[self.device] if self.device.startswith("cuda") else None,
                                                      gradient_as_bucket_view=True)
            with self.stopper, Progress(quiet=cfg.quiet or not dist.main, metric=self._metric_name(),
                                             batch_size=cfg.batch_size) as progress:
                self.progress = progress
                if dist.main:
                    progress.log(f"training {task.metadata()['model']} on {len(data.train)} images, "
                                 f"validating on {len(data.val)}, {cfg.epochs} epochs, device {self.device}"
                                 + (f", {dist.world} processes" if dist.enabled else ""))
                    if self.parent:
                        fresh, total = self.parent["left_fresh"], len(model.state_dict())
                        progress.log(f"started from {cfg.init}: {total - len(fresh)}/{total} tensors copied"
                                     + (f"; fresh: {', '.join(fresh[:3])}{' …' if len(fresh) > 3 else ''}" if fresh else ""))
                while state.epoch < cfg.epochs:
                    self._epoch(train_model, data, state)
                return self._finish(data, state)
        finally:
            distributed.shutdown(dist)

    @property
    def shipped(self):
        """The weights that are validated, selected and written: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _metric_name(self) -> str:
        return self.task.new_metrics().primary

    # --- one epoch ------------------------------------------------------------------------------------

    def _epoch(self, train_model, data, state: _State) -> None:
        import torch

        cfg, task, dist = self.cfg, self.task, self.dist
        n = len(data.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.weights_seed * 7919 + state.epoch))
        usable = n - n % dist.world  # every rank takes the same number of steps
        shard = order[dist.rank:usable:dist.world]
        index_batches = batches.index_batches(shard, cfg.batch_size)
        steps = len(index_batches)
        total = steps * cfg.epochs
        metrics = task.new_metrics()
        if state.step and state.train_metric_state:
            metrics.load_tensors(state.train_metric_state)
        else:
            state.train_loss_sum, state.train_seen = 0.0, 0
        self.progress.start_epoch(state.epoch, cfg.epochs, steps, state.step)
        train_model.train()
        started, seen_now = time.perf_counter(), 0
        lr = learning_rate(cfg, state.epoch * steps + max(state.step - 1, 0), total)
        remaining = index_batches[state.step:]
        for images, targets in batches.iterate(data.train, remaining, workers=cfg.workers):
            step = state.step
            torch.manual_seed(_step_seed(cfg.weights_seed, dist.rank, state.epoch, step))
            lr = learning_rate(cfg, state.epoch * steps + step, total)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = task.train_batch(images.to(self.device, non_blocking=True), _to(targets, self.device))
            if cfg.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, cfg.bf16):
                outputs = train_model(inputs)
                loss = task.loss(outputs, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(cfg.ema, state.epoch * steps + step)
            batch_n = len(images)
            state.train_loss_sum += float(loss.detach()) * batch_n
            state.train_seen += batch_n
            metrics.update(outputs, targets)
            state.step += 1
            seen_now += batch_n
            elapsed = time.perf_counter() - started
            self.progress.step(state.step, state.train_loss_sum / state.train_seen, metrics.summary(),
                               seen_now * dist.world / max(elapsed, 1e-9))
            if self.on_step is not None:
                self.on_step(self, state.epoch, step)
            signum = self.stopper.signum or 0
            if dist.enabled:
                flag = torch.tensor([signum])
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                signum = int(flag)
            if signum:
                state.train_metric_state = [t.tolist() for t in metrics.tensors()]
                state.train_seconds += time.perf_counter() - started
                path = self._save_last(state)
                raise TrainingInterrupted(signum, path)
        state.train_seconds += time.perf_counter() - started
        self._end_epoch(data, state, metrics, lr)

    def _end_epoch(self, data, state: _State, metrics, lr: float) -> None:
        import torch

        cfg, task, dist = self.cfg, self.task, self.dist
        loss_totals = torch.tensor([state.train_loss_sum, float(state.train_seen)], dtype=torch.float64)
        dist.sum_([loss_totals, *metrics.tensors()])
        val = run_eval(self.shipped, data.val, self.task, device=self.device, batch_size=cfg.eval_batch_size,
                       workers=cfg.workers, channels_last=cfg.channels_last, bf16=cfg.bf16, dist=dist)
        primary = self._metric_name()
        record = {"epoch": state.epoch + 1, "lr": lr, "train_loss": float(loss_totals[0] / loss_totals[1]),
                  "val_loss": val.loss, "train_seconds": round(state.train_seconds, 2)}
        record.update({f"train_{k}": v for k, v in metrics.summary().items()})
        record.update({f"val_{k}": v for k, v in val.summary.items()})
        state.history.append(record)
        score = val.summary[primary]
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_epoch = score, state.epoch + 1
        state.epoch, state.step, state.train_metric_state = state.epoch + 1, 0, []
        state.train_seconds = 0.0
        if dist.main:
            if improved:
                # With the task's metadata, `--weights <run>/best.safetensors` works like a shipped file.
                weights.save(cfg.checkpoint_dir / "best.safetensors", self.shipped.state_dict(),
                             {**task.metadata(), "kind": "best", "epoch": state.epoch, primary: score})
            self._write_reports(state, final=None)
            val_loss = f"val loss {val.loss:.4f}, " if val.loss is not None else ""
            self.progress.log(f"epoch {state.epoch}/{cfg.epochs}: train loss {record['train_loss']:.4f}, {val_loss}"
                              f"val {primary} {score:.4f}" + ("  (best)" if improved else ""))
        self._save_last(state)

    def _start_from(self, model, init: str) -> dict[str, Any]:
        """Load the matching tensors of `init` into the fresh model; returns its provenance for the metadata."""
        import hashlib

        from cnntool import loader

        if loader.is_torchvision_name(init):  # e.g. ImageNet weights under a new head
            enum, state = loader.torchvision_weights(self.task.spec, init)
            fresh = weights.transfer(model, state, source=f"--init {init} ({enum})")
            return {"torchvision_weights": str(enum), "url": enum.url, "left_fresh": fresh}
        path = weights.resolve(init)
        state, parent = weights.load(path)
        if parent.get("ensemble"):  # its tensors are named members.<i>.…: none would match, all would start fresh
            raise ConfigError(f"--init {init}: an ensemble of {parent['ensemble']} nets; start from one of its "
                              f"members ({', '.join(m['file'] for m in parent.get('members', []))})")
        holds = f" (holds {parent['model']} {parent.get('kwargs', {})})" if parent.get("model") else ""
        fresh = weights.transfer(model, state, source=f"--init {init}{holds}")
        return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "model": parent.get("model", ""), "command": parent.get("command", ""), "left_fresh": fresh,
                **({"init": parent["init"]} if "init" in parent else {})}  # a chain of fine-tunes stays traceable

    def _freeze(self, model) -> None:
        """Every tensor --init filled stops learning; the ones it left fresh (the new head) train alone."""
        if self.parent is None:
            raise ConfigError("--freeze-backbone needs --init: there is no pretrained backbone to keep")
        fresh = set(self.parent["left_fresh"])
        if not fresh:
            raise ConfigError("--freeze-backbone: --init filled every tensor, so nothing would train; it is for a "
                              "head resized to new classes")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in fresh)

    # --- checkpoints ----------------------------------------------------------------------------------

    def _save_last(self, state: _State) -> Path:
        path = self.cfg.checkpoint_dir / "last.safetensors"
        if self.dist.main:
            extra = {"ema": self.ema.module.state_dict()} if self.ema is not None else {}
            checkpoint.save(path, self.model.state_dict(), self.optimizer, asdict(state), extra=extra)
        self.dist.barrier()
        return path

    def _resume(self) -> _State:
        path = self.cfg.checkpoint_dir / "last.safetensors"
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {path}")
        model_state, optimizer_state, progress, extra = checkpoint.load(path)
        weights.load_into(self.model, model_state, source=str(path))
        if self.ema is not None:
            weights.load_into(self.ema.module, extra.get("ema", model_state), source=f"{path} (ema)")
        self.optimizer.load_state_dict(optimizer_state)
        return _State(**progress)

    # --- the end: held-out figures and the weights file ----------------------------------------------

    def _finish(self, data, state: _State) -> dict[str, Any]:
        cfg, task, dist = self.cfg, self.task, self.dist
        if data.select_on_val:
            best, _ = weights.load(cfg.checkpoint_dir / "best.safetensors") if dist.main else (None, None)
            if dist.enabled:  # every rank evaluates the same weights
                import torch.distributed as tdist

                box = [best]
                tdist.broadcast_object_list(box, src=0)
                best = box[0]
            self.shipped.load_state_dict(best)
            chosen = f"best validation epoch ({state.best_epoch})"
        else:
            chosen = f"last epoch ({state.epoch}); the held-out split is not used for selection"
        heldout, metrics = evaluate_trained(self.shipped, task, data, cfg, device=self.device, dist=dist)
        metrics.update({"weights_from": chosen, "validation": state.history[-1] if state.history else {}})
        meta = trained_metadata(task, cfg, metrics, heldout.images_per_second, device=self.device,
                                parent=self.parent)
        if dist.main:
            weights.save(cfg.out, self.shipped.state_dict(), meta)
            self._write_reports(state, final=meta)
            if hasattr(task, "figures"):  # a confusion matrix, a PR or ROC curve of the reported split
                save_figures(cfg.checkpoint_dir, task.figures(metrics["heldout"]))
            primary = self._metric_name()
            kind = "held-out" if data.select_on_val else "validation"
            self.progress.log(f"{kind} {primary} {heldout.summary[primary]:.4f} on {heldout.images} images "
                              f"→ {cfg.out}")
        dist.barrier()
        return meta

    def _write_reports(self, state: _State, final: dict[str, Any] | None) -> None:
        document: dict[str, Any] = {"history": state.history, "best_epoch": state.best_epoch,
                                    "best_val": state.best_score, "command": self.cfg.command}
        # During the run they live in the run folder; beside --out only once the weights they describe exist.
        where = self.cfg.checkpoint_dir / "metrics.json", self.cfg.checkpoint_dir / "curve.png"
        if final is not None:
            document["final"] = {k: final[k] for k in ("metrics", "images_per_second", "created")}
            where = self.cfg.sidecar(".metrics.json"), self.cfg.sidecar(".curve.png")
        write_metrics_json(where[0], document)
        draw_curves(where[1], state.history, self._metric_name())


def evaluate_trained(model, task, data, cfg: TrainConfig, *, device: str, dist=None):
    """A trained model's figures as its metadata records them: the held-out split, with the task's
    test-time augmentation where it has one, and the task's extra evaluations (e.g. a cross-source set).
    Returns (the held-out result, the metrics dict)."""

    def evaluate(dataset, tta: bool = False):
        return run_eval(model, dataset, task, device=device, batch_size=cfg.eval_batch_size, workers=cfg.workers,
                        channels_last=cfg.channels_last, bf16=cfg.bf16, tta=tta, dist=dist)

    heldout = evaluate(data.heldout)
    # Without a separate test split the figure is the validation split's (never trained on, the last epoch
    # shipped rather than one chosen on it), and is named so.
    metrics: dict[str, Any] = {"heldout": heldout.metrics, "heldout_data": data.heldout_description,
                               "heldout_kind": "test" if data.select_on_val else "validation"}
    if task.tta_key:  # as the task's predict command's test-time augmentation
        metrics[task.tta_key] = evaluate(data.heldout, tta=True).metrics
    for key, dataset, description in task.extra_evaluations():
        metrics[key] = evaluate(dataset).metrics
        metrics[f"{key}_data"] = description
    return heldout, metrics


def trained_metadata(task, cfg: TrainConfig, metrics: dict[str, Any], images_per_second: float, *, device: str,
                     parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a trained weights file says about itself (design.md §4): the task's fields, the held-out figures,
    the exact command and the training configuration."""
    return {
        **task.metadata(),
        "metrics": metrics,
        "command": cfg.command,
        **({"init": parent} if parent else {}),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        **({"model_seed": cfg.model_seed} if cfg.model_seed is not None else {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cnntool_version": version(),
        "images_per_second": {"inference": round(images_per_second, 1),
                              "measured": f"held-out evaluation, batch {cfg.eval_batch_size}, device "
                                          f"{device}, {_threads()} threads"},
        "train": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                  if k not in ("out", "run_dir", "command", "quiet", "resume")},
    }


class _Ema:
    """A frozen copy of the model kept as ema ← d·ema + (1−d)·model after every step; d ramps up over the
    first steps so early averages forget the random initialization. Integer buffers (BatchNorm's counter)
    are copied. The tensor pairs are listed once: every update to either model is in place, and walking
    state_dict() each step would cost more than the arithmetic."""

    def __init__(self, model) -> None:
        import copy

        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        floats = [(e, m) for e, m in pairs if e.dtype.is_floating_point]
        self._averages, self._currents = [e for e, _ in floats], [m for _, m in floats]
        self._counters = [(e, m) for e, m in pairs if not e.dtype.is_floating_point]

    def update(self, decay: float, step: int) -> None:
        import torch

        d = min(decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self._averages, self._currents, 1 - d)
            for e, m in self._counters:
                e.copy_(m)


def _to(obj, device: str):
    """Tensors (or dicts/lists of them, for tasks with structured targets) onto the device."""
    if hasattr(obj, "to"):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj



def _threads() -> int:
    import torch

    return torch.get_num_threads()
