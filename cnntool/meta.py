"""WeightsMeta: the metadata document a cnntool weights file carries, its keys typed and checked. stdlib only.

A weights file may come from anywhere, so its document is validated whole, with bounds, before anything is
built from it (cnntool.loader): every value a module reads has its type and a sane range, and a bad one is a
ConfigError of one line. Descriptive keys (figures, commands, dates) are kept as they are.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

from cnntool.errors import ConfigError

# Task names that weights written before a task had its one name carry (cnntool.tasks has the names).
TASK_ALIASES = {"face-embed": "verify-face"}

MAX_CLASSES = 100_000
MAX_SIDE = 4096  # an input side; the registered models read 20..800 pixels
MAX_ENSEMBLE = 64
_MAX_INT, _MAX_FLOAT, _MAX_TEXT, _MAX_ITEMS, _MAX_DEPTH = 100_000, 1e6, 256, 256, 4


class InputDocument(TypedDict, total=False):
    size: list[int]
    channels: int
    mean: list[float]
    std: list[float]
    resize: str
    crop_fraction: float
    fill: int
    foreground: str
    contrast: str


class ReaderDocument(TypedDict, total=False):
    model: str
    kwargs: dict[str, Any]
    input: InputDocument
    classes: list[str]
    context: float
    ensemble: int
    file: str


class WeightsMeta(TypedDict, total=False):
    format_version: int
    task: str
    model: str  # the registry architecture
    kwargs: dict[str, Any]  # its builder's keyword arguments, as trained
    classes: list[str]  # class names (landmarks: point names), in output order
    point_names: list[str]
    input: InputDocument  # the input spec (cnntool.registry.InputSpec's fields)
    decode: dict[str, float]  # the task's decode defaults (e.g. a calibrated presence threshold)
    detector: str  # a window classifier's: the sliding-window detector it was trained for
    ensemble: int  # K nets under members.<i>.
    members: list[dict[str, Any]]
    reader: ReaderDocument  # a localizer's box reader
    domain: dict[str, Any]  # the domain check's figures and how it was trained (cnntool.engine.domain)
    verification: dict[str, Any]  # verify-face: {"metric", "thresholds": {metric: {"threshold", …}}}
    metrics: dict[str, Any]  # held-out figures and the data they were measured on
    val_split: float
    seed: int
    loss: str
    unseen_identities: list[str]
    data_source: str
    command: str
    init: dict[str, Any]
    cnntool_version: str


def check(document: Any, source: str) -> WeightsMeta:
    """The document as WeightsMeta, or a one-line ConfigError naming the first bad key."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: metadata is not an object")
    out: dict[str, Any] = dict(document)

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: metadata {key!r} {why}")

    for key in ("task", "model", "detector", "loss", "data_source", "command"):
        if key in out and not isinstance(out[key], str):
            raise bad(key, "must be a string")
    if "task" in out:
        out["task"] = TASK_ALIASES.get(out["task"], out["task"])
    for key in ("classes", "point_names", "unseen_identities"):
        if key in out:
            out[key] = _names(out[key], bad(key, f"must be a list of at most {MAX_CLASSES} names"))
    if "kwargs" in out:
        out["kwargs"] = _kwargs(out["kwargs"], bad("kwargs", "must map names to small JSON values"))
    if "input" in out:
        check_input(out["input"], lambda why: bad("input", why))
    if "decode" in out:
        decode = out["decode"]
        if not isinstance(decode, dict) or not all(isinstance(k, str) and _number(v) for k, v in decode.items()):
            raise bad("decode", "must map option names to finite numbers")
    if "ensemble" in out and (type(out["ensemble"]) is not int or not 0 <= out["ensemble"] <= MAX_ENSEMBLE):
        raise bad("ensemble", f"must be a member count 1..{MAX_ENSEMBLE} (how many members the file holds)")
    if "reader" in out:
        _reader(out["reader"], bad)
    if "verification" in out:
        check_verification(out["verification"], bad("verification", VERIFICATION_SHAPE))
    for key in ("metrics", "init", "domain"):
        if key in out and not isinstance(out[key], dict):
            raise bad(key, "must be an object")
    if "val_split" in out and not (_number(out["val_split"]) and 0 < out["val_split"] < 1):
        raise bad("val_split", "must be a fraction between 0 and 1")
    if "seed" in out and type(out["seed"]) is not int:
        raise bad("seed", "must be an integer")
    return out  # type: ignore[return-value]


def check_input(document: Any, bad) -> InputDocument:
    """An input spec document: known keys, sizes within MAX_SIDE, finite statistics, std > 0."""
    known = set(InputDocument.__annotations__)
    if not isinstance(document, dict) or not set(document) <= known:
        raise bad(f"must be an object with keys among {', '.join(sorted(known))}")
    size = document.get("size", [1, 1])
    least = 0 if document.get("resize") == "none" else 1  # an image kept at its own size has no input size
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and least <= v <= MAX_SIDE for v in size)):
        raise bad(f"size must be [height, width] within {least}..{MAX_SIDE}")
    channels = document.get("channels", 3)
    if channels not in (1, 3) or type(channels) is not int:
        raise bad("channels must be 1 or 3")
    for key in ("mean", "std"):
        values = document.get(key, [0.5] * channels)
        if not (isinstance(values, list) and len(values) == channels and all(_number(v) for v in values)):
            raise bad(f"{key} must give one finite number per channel")
    if any(v <= 0 for v in document.get("std", [1.0])):
        raise bad("std must be positive (a zero std divides by zero)")
    if "crop_fraction" in document and not (_number(document["crop_fraction"]) and 0 < document["crop_fraction"] <= 1):
        raise bad("crop_fraction must be within (0, 1]")
    if "fill" in document and not (type(document["fill"]) is int and 0 <= document["fill"] <= 255):
        raise bad("fill must be 0..255")
    for key in ("resize", "foreground", "contrast"):
        if key in document and not isinstance(document[key], str):
            raise bad(f"{key} must be a string")
    return document  # type: ignore[return-value]


def _reader(document: Any, bad) -> None:
    fields = ("model", "kwargs", "input", "classes", "context")
    if not isinstance(document, dict) or not all(k in document for k in fields):
        raise bad("reader", f"must give a localizer's box reader as {', '.join(fields)}")
    if not isinstance(document["model"], str):
        raise bad("reader", "must name its model")
    document["kwargs"] = _kwargs(document["kwargs"], bad("reader", "kwargs must map names to small JSON values"))
    check_input(document["input"], lambda why: bad("reader", f"input {why}"))
    document["classes"] = _names(document["classes"], bad("reader", "classes must be a list of names"))
    if not (_number(document["context"]) and 1 <= document["context"] <= 4):
        raise bad("reader", "needs a context from 1 to 4")
    if "ensemble" in document and (type(document["ensemble"]) is not int or not 0 <= document["ensemble"] <= MAX_ENSEMBLE):
        raise bad("reader", f"ensemble must be a member count 1..{MAX_ENSEMBLE} (how many members the file holds)")


VERIFICATION_SHAPE = "must hold a metric, finite thresholds, and p_same fits with a finite slope and offset"


def check_verification(document: Any, error: ConfigError) -> None:
    """A verify-face calibration (weights metadata or a --calibration file): raises `error` unless it is
    {"metric": str, "thresholds": {metric: {"threshold": finite, "probability"?: {"slope", "offset": finite}}}}."""
    if not isinstance(document, dict) or not isinstance(document.get("metric", ""), str):
        raise error
    thresholds = document.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise error
    for entry in thresholds.values():
        if not (isinstance(entry, dict) and _number(entry.get("threshold"))):
            raise error
        fit = entry.get("probability")
        if fit is not None and not (isinstance(fit, dict) and _number(fit.get("slope")) and _number(fit.get("offset"))):
            raise error


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _names(value: Any, error: ConfigError) -> list[str]:
    if not (isinstance(value, list) and len(value) <= MAX_CLASSES and all(isinstance(v, str) and len(v) <= _MAX_TEXT
                                                                          for v in value)):
        raise error
    return value


def _kwargs(value: Any, error: ConfigError) -> dict[str, Any]:
    if not (isinstance(value, dict) and len(value) <= _MAX_ITEMS and all(isinstance(k, str) for k in value)
            and all(_small(v, 1) for v in value.values())):
        raise error
    return value


def _small(value: Any, depth: int) -> bool:
    """A JSON value a builder may take: bounded numbers, short strings, short nested lists and objects."""
    if value is None or type(value) is bool:
        return True
    if type(value) is int:
        return abs(value) <= _MAX_INT
    if type(value) is float:
        return math.isfinite(value) and abs(value) <= _MAX_FLOAT
    if isinstance(value, str):
        return len(value) <= _MAX_TEXT
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, list):
        return len(value) <= _MAX_ITEMS and all(_small(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= _MAX_ITEMS and all(isinstance(k, str) and _small(v, depth + 1) for k, v in value.items())
    return False



def as_json(value: Any) -> Any:
    """Builder kwargs as the JSON header stores them: tuples become lists, all the way down."""
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value
