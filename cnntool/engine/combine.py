"""`cnntool ensemble`: weights files of one architecture, each trained by `cnntool train`, → one file that
averages them (cnntool.models.ensemble), scored on the held-out data as `cnntool evaluate` scores any model,
with the members' metrics and training curves gathered beside it as a training run leaves its own.

The file keeps member 0's description (task, architecture, classes, input, training split) and lists every
member with its sha256, the command that trained it and its own figures, so each stays traceable. Localizers
may also get a reader (cnntool.models.reader), described and traced the same way under 'reader'.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cnntool import weights
from cnntool.device import device_option, threads_option
from cnntool.engine.report import files_sidecars, members_sidecars, run_sidecars, write_ensemble_reports
from cnntool.errors import ConfigError
from cnntool.folders import writable_folder
from cnntool.models.yvector import CONTEXT, background_index
from cnntool.options import argument, option

if TYPE_CHECKING:
    from cnntool.engine.task import Task

# What must agree between members for one architecture to hold all of their tensors and read their inputs.
_SAME = ("task", "model", "kwargs", "classes", "input")
NO_READER = "none"  # --reader none: recombine an ensemble file without its reader
# Run-specific fields of member 0 that do not describe the ensemble.
_PER_RUN = ("metrics", "command", "init", "created", "epochs", "train", "images_per_second", "model_seed", "kind",
            "ensemble", "members", "cnntool_version", "decode", "threshold_from", "reader")


@dataclass
class EnsembleConfig:
    members: list[str] = argument(help="Weights files (or embedded names) of one architecture, each trained by "
                                  "`cnntool train`; or one ensemble file, whose members are combined again (with "
                                  "another --reader or threshold).")
    out: Path = option(dataclasses.MISSING, "--out", "-o", help="The ensemble's weights file to write (.safetensors).")
    data: str = option(dataclasses.MISSING, "--data", "-d", help="What the members were trained on: its held-out "
                       "split is scored into the metadata.")
    tta: bool = option(False, "--tta", help="Also record the figures with the task's test-time augmentation "
                       "(localize: shifts; classify: mirror image).")
    calibrate: bool = option(False, "--calibrate", help="Localizers: choose the presence threshold on --data's "
                             "validation split first and keep it in the weights.")
    reader: str | None = option(None, "--reader", help="Localizers: a classifier trained on box crops (`cnntool data "
                                "crops`) that reads the averaged box again; the class is the product of both. One "
                                "ensemble file combined again keeps its own reader unless this names another, or none.")
    reader_context: float | None = option(None, "--reader-context", min=1.0, max=4.0, help="With --reader: crop side "
                                          "/ box side, as `cnntool data crops --context` cut the reader's training "
                                          "crops (default 1.2).")
    device: str = device_option("cpu")
    threads: int | None = threads_option()


def task_of(members: Sequence[str]) -> str:
    """The task the first member file was trained for (what scores the ensemble)."""
    if not members:
        raise ConfigError("give the weights files to combine")
    return weights.read_metadata(weights.resolve(members[0])).get("task") or "unknown"


def combine(task: "Task", config: EnsembleConfig, *, command: str = "") -> dict[str, Any]:
    """Write the ensemble of the members to config.out with its held-out figures on config.data; returns its
    metadata. A reader (localize): a classifier trained on box crops (`cnntool data crops`, cut with the
    context) reads the ensemble's box again (cnntool.models.reader); one ensemble file combined again keeps its
    own reader unless config.reader names another, or NO_READER. calibrate (localize): first choose the
    presence threshold on the data's validation split and keep it in the metadata (decode.threshold), so
    predictions and the held-out figures use it."""
    from cnntool import version
    from cnntool.models.ensemble import AVERAGES

    out, data, reader, context = Path(config.out), config.data, config.reader, config.reader_context
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors, not {out.name!r}")
    writable_folder(out.parent, "--out")
    paths = [weights.resolve(m) for m in config.members]
    if len(paths) == 1:
        tensors, described, first, sidecars, kept = _recombined(paths[0])
    else:
        (tensors, described, first), kept = _gathered(paths), None
        sidecars = files_sidecars(paths)
    if first.get("task") not in AVERAGES:
        raise ConfigError(f"{paths[0]}: {first.get('task') or 'no'} task; ensembles average {' or '.join(AVERAGES)} models")
    if config.calibrate and not task.reads_boxes:
        raise ConfigError(f"--calibrate chooses a localizer's presence threshold; these are {task.name} models")
    if reader in (None, NO_READER):
        if context is not None:
            raise ConfigError("--reader-context goes with --reader FILE (a kept reader keeps the context it was "
                              "trained with)")
        part = kept if reader is None else None
    elif not task.reads_boxes:
        raise ConfigError(f"--reader reads a localizer's box again; these are {task.name} models")
    else:
        part = _reader_part(weights.resolve(reader), first, CONTEXT if context is None else context)
    prefix = "localizer." if part else ""
    state = {f"{prefix}members.{i}.{k}": v for i, member in enumerate(tensors) for k, v in member.items()}
    meta = {**{k: v for k, v in first.items() if k not in _PER_RUN}, "ensemble": len(tensors),
            "members": described, "command": command,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cnntool_version": version()}
    made_by = f"the mean of {len(tensors)} members' outputs (see members)"
    reader_sidecars = None
    if part:
        reader_state, meta["reader"], reader_sidecars = part
        state.update({f"reader.{k}": v for k, v in reader_state.items()})
        made_by += f", their box read again by {meta['reader']['file']} (see reader)"
    # Scored through the normal loading path from a draft beside --out, which appears only once it has figures.
    draft = out.with_name(f".{out.name}.draft")
    weights.save(draft, state, meta)
    where = {"device": config.device, "threads": config.threads}
    try:
        if config.calibrate:
            meta.update(task.calibrate(str(draft), data, **where))
            weights.save(draft, state, meta)
        heldout = task.score(str(draft), data, tta=False, **where)
        metrics: dict[str, Any] = {"heldout": _figures(heldout), "heldout_data": heldout["data"],
                                   "weights_from": made_by}
        if config.tta:
            metrics[task.tta_report_key] = _figures(task.score(str(draft), data, tta=True, **where))
    finally:
        draft.unlink(missing_ok=True)
    meta["metrics"] = metrics
    meta["images_per_second"] = {"inference": heldout["images_per_second"],
                                 "measured": f"held-out evaluation (cnntool evaluate {task.name}), device "
                                             f"{config.device}, {config.threads or 'torch default'} threads"}
    weights.save(out, state, meta)
    write_ensemble_reports(out, *sidecars, {"command": command,
                                            "final": {k: meta[k] for k in ("metrics", "images_per_second", "created")}},
                           reader=reader_sidecars)
    return meta


def _gathered(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Each member file's tensors and description, and member 0's metadata (the ensemble's description)."""
    if len(paths) < 2:
        raise ConfigError(f"an ensemble wants 2 or more weights files (or one ensemble to combine again), not {len(paths)}")
    metas = [weights.read_metadata(p) for p in paths]
    for path, meta in zip(paths, metas):
        if meta.get("ensemble") or meta.get("reader"):
            raise ConfigError(f"{path}: already combined (an ensemble or a localizer with a reader); combine its members instead")
        differ = [key for key in _SAME if _resolved(meta, key) != _resolved(metas[0], key)]
        if differ:
            raise ConfigError(f"{path}: not the same {', '.join(differ)} as {paths[0].name}; members must be one architecture")
    return [weights.load(p)[0] for p in paths], [_describe(p, m) for p, m in zip(paths, metas)], metas[0]


def _recombined(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], tuple[list, list],
                                    tuple[dict[str, Any], dict[str, Any], Any] | None]:
    """An ensemble file's members as _gathered gives them from their own files (their descriptions as the file
    lists them: the sha256 and command of each member's file), its members' reports and curves, and its
    reader as _reader_part gives one (None without); its threshold and figures are left behind, to be made
    again."""
    state, meta = weights.load(path)
    count, described = meta.get("ensemble"), meta.get("members")
    if not count:
        raise ConfigError(f"{path}: one file is combined again only if it is an ensemble; "
                          "an ensemble wants 2 or more weights files")
    prefix = "localizer.members." if meta.get("reader") else "members."
    tensors = [_under(state, f"{prefix}{i}.") for i in range(count)] if isinstance(count, int) and count >= 2 else []
    if not tensors or not all(tensors) or not isinstance(described, list) or len(described) != count:
        raise ConfigError(f"{path}: its metadata says {count!r} members but its tensors or members list do not "
                          "hold that many; not a file cnntool wrote")
    reports, curves, reader_sidecars = members_sidecars(path, count)
    kept = None
    if meta.get("reader"):
        reader_state = _under(state, "reader.")
        if not reader_state or not isinstance(meta["reader"], dict) or "file" not in meta["reader"]:
            raise ConfigError(f"{path}: its metadata names a reader that its tensors or reader entry do not hold; "
                              "not a file cnntool wrote")
        kept = (reader_state, meta["reader"], reader_sidecars or (None, None))
    return tensors, described, meta, (reports, curves), kept


def _under(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The tensors named prefix…, named without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _reader_part(path: Path, first: dict[str, Any], context: float) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """A reader file's tensors, its description under the ensemble's 'reader' and its (report, curve)."""
    reader_state, reader_meta = weights.load(path)
    if reader_meta.get("task") != "classify":
        raise ConfigError(f"{path}: a reader is a classify model, not {reader_meta.get('task') or 'unknown'}")
    try:
        background_index(reader_meta.get("classes") or (), first.get("classes") or ())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    entry = {**{k: reader_meta[k] for k in ("model", "kwargs", "input", "classes", "ensemble") if k in reader_meta},
             "context": context, **_describe(path, reader_meta)}
    return reader_state, entry, run_sidecars(path)


def _resolved(meta: dict[str, Any], key: str) -> Any:
    """A metadata field as loading reads it: an input spec written before a field existed takes the
    registry's value for that field."""
    if key != "input" or "input" not in meta or "model" not in meta:
        return meta.get(key)
    from cnntool.models import catalog
    from cnntool.loader import input_spec_from

    return input_spec_from(meta["input"], catalog.get(meta["model"], task=meta.get("task")).input)


def _describe(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "command": meta.get("command", ""), "metrics": {k: v for k, v in meta.get("metrics", {}).items()
                                                            if k in ("heldout", "heldout_tta", "heldout_tta_flip")}}


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """An evaluation report's metrics, as training records them (without what was scored or how fast)."""
    return {k: v for k, v in report.items() if k not in ("task", "model", "data", "images_per_second", "bf16")}
