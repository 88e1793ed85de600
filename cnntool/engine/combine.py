"""`cnntool ensemble`: weights files of one architecture, each trained by `cnntool train`, → one file that
averages them (cnntool.models.ensemble), scored on the held-out data as `cnntool evaluate` scores any model,
with the members' metrics and training curves gathered beside it as a training run leaves its own.

The file keeps member 0's description (task, architecture, classes, input, training split) and lists every
member with its sha256, the command that trained it and its own figures, so each stays traceable. Localizers
may also get a reader (cnntool.models.reader), described and traced the same way under 'reader'.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.folders import writable_folder
from cnntool.models.reader import CONTEXT, background_index
from cnntool.engine.report import files_sidecars, members_sidecars, run_sidecars, write_ensemble_reports

# What must agree between members for one architecture to hold all of their tensors and read their inputs.
_SAME = ("task", "model", "kwargs", "classes", "input")
NO_READER = "none"  # --reader none: recombine an ensemble file without its reader
# Run-specific fields of member 0 that do not describe the ensemble.
_PER_RUN = ("metrics", "command", "init", "created", "epochs", "train", "images_per_second", "model_seed", "kind",
            "ensemble", "members", "cnntool_version", "decode", "threshold_from", "reader")


def combine(members: Sequence[str], *, out: Path, data: str, tta: bool = False, calibrate: bool = False,
            reader: str | None = None, context: float | None = None, command: str = "", device: str = "cpu",
            threads: int | None = None) -> dict[str, Any]:
    """Write the ensemble of `members` to `out` with its held-out figures on `data`; returns its metadata.
    `reader` (localize): a classifier trained on box crops (`cnntool data crops`, cut with `context`) reads the
    ensemble's box again (cnntool.models.reader); one ensemble file combined again keeps its own reader unless
    `reader` names another, or NO_READER. `calibrate` (localize): then choose the presence threshold on data's
    validation split and keep it in the metadata (decode.threshold), so predictions and the held-out figures
    use it."""
    from cnntool import evaluate
    from cnntool.models.ensemble import AVERAGES
    from cnntool.engine.train import package_version

    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors, not {out.name!r}")
    writable_folder(out.parent, "--out")
    paths = [weights.resolve(m) for m in members]
    if len(paths) == 1:
        tensors, described, first, sidecars, kept = _recombined(paths[0])
    else:
        (tensors, described, first), kept = _gathered(paths), None
        sidecars = files_sidecars(paths)
    if first.get("task") not in AVERAGES:
        raise ConfigError(f"{paths[0]}: {first.get('task') or 'no'} task; ensembles average {' or '.join(AVERAGES)} models")
    if calibrate and first["task"] != "localize":
        raise ConfigError("--calibrate chooses a localizer's presence threshold; these are classify models")
    if reader in (None, NO_READER):
        if context is not None:
            raise ConfigError("--reader-context goes with --reader FILE (a kept reader keeps the context it was "
                              "trained with)")
        part = kept if reader is None else None
    elif first["task"] != "localize":
        raise ConfigError("--reader reads a localizer's box again; these are classify models")
    else:
        part = _reader_part(weights.resolve(reader), first, CONTEXT if context is None else context)
    prefix = "localizer." if part else ""
    state = {f"{prefix}members.{i}.{k}": v for i, member in enumerate(tensors) for k, v in member.items()}
    meta = {**{k: v for k, v in first.items() if k not in _PER_RUN}, "ensemble": len(tensors),
            "members": described, "command": command,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cnntool_version": package_version()}
    made_by = f"the mean of {len(tensors)} members' outputs (see members)"
    reader_sidecars = None
    if part:
        reader_state, meta["reader"], reader_sidecars = part
        state.update({f"reader.{k}": v for k, v in reader_state.items()})
        made_by += f", their box read again by {meta['reader']['file']} (see reader)"
    # Scored through the normal loading path from a draft beside --out, which appears only once it has figures.
    draft = out.with_name(f".{out.name}.draft")
    weights.save(draft, state, meta)
    try:
        if calibrate:
            meta.update(_calibrated(draft, data, device=device, threads=threads))
            weights.save(draft, state, meta)
        score = {"classify": evaluate.classify, "localize": evaluate.localize}[first["task"]]
        heldout = score(data=data, model=None, weights=str(draft), device=device, threads=threads)
        metrics: dict[str, Any] = {"heldout": _figures(heldout), "heldout_data": heldout["data"],
                                   "weights_from": made_by}
        if tta:
            options = {"tta_flip": True} if first["task"] == "classify" else {"tta": True}
            metrics["heldout_tta" if first["task"] == "localize" else "heldout_tta_flip"] = _figures(
                score(data=data, model=None, weights=str(draft), device=device, threads=threads, **options))
    finally:
        draft.unlink(missing_ok=True)
    meta["metrics"] = metrics
    meta["images_per_second"] = {"inference": heldout["images_per_second"],
                                 "measured": f"held-out evaluation (cnntool evaluate {first['task']}), device {device}, "
                                             f"{threads or 'torch default'} threads"}
    weights.save(out, state, meta)
    write_ensemble_reports(out, *sidecars, {"command": command, "final": {k: meta[k] for k in ("metrics", "images_per_second",
                                                                                         "created")}},
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


def _calibrated(draft: Path, data: str, *, device: str, threads: int | None) -> dict[str, Any]:
    """The metadata fields of a presence threshold chosen on the validation split (tasks/localize.py)."""
    from cnntool.evaluate import localize_presence
    from cnntool.tasks.localize.predict import DEFAULT_THRESHOLD, calibrate_threshold

    p_c, present = localize_presence(data=data, weights=str(draft), split="val", device=device, threads=threads)
    threshold = calibrate_threshold(p_c, present)
    right = {t: float(((p_c >= t) == present).float().mean()) for t in (DEFAULT_THRESHOLD, threshold)}
    return {"decode": {"threshold": threshold},
            "threshold_from": f"{data}: val split, {len(p_c)} images: presence accuracy {right[threshold]:.4f} at "
                              f"p_c ≥ {threshold:g} ({right[DEFAULT_THRESHOLD]:.4f} at {DEFAULT_THRESHOLD:g}), the "
                              "best on a 0.05 grid"}


def _resolved(meta: dict[str, Any], key: str) -> Any:
    """A metadata field as loading reads it: an input spec written before a field existed takes the
    registry's value for that field."""
    if key != "input" or "input" not in meta or "model" not in meta:
        return meta.get(key)
    from cnntool import registry
    from cnntool.loader import input_spec_from

    return input_spec_from(meta["input"], registry.get(meta["model"], task=meta.get("task")).input)


def _describe(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "command": meta.get("command", ""), "metrics": {k: v for k, v in meta.get("metrics", {}).items()
                                                            if k in ("heldout", "heldout_tta", "heldout_tta_flip")}}


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """An evaluation report's metrics, as training records them (without what was scored or how fast)."""
    return {k: v for k, v in report.items() if k not in ("task", "model", "data", "images_per_second", "bf16")}
