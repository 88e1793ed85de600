"""The predict subcommands as the CLI has them now, for tests that run each one (some are still being
written: a test skips, with the reason, a subcommand that is not in `cnntool --help` or whose default
model is not embedded yet)."""

from __future__ import annotations

from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.models import catalog
from cnntool.registry import UnknownModelError

# The design card's predict subcommands; the registry task of each one's models.
CARD = {"classify": "classify", "localize": "localize", "landmarks": "landmarks", "detect": "detect",
        "verify-face": "verify-face"}


def cli_commands() -> dict:
    from typer.main import get_command

    from cnntool.cli import app

    return get_command(app).commands


def takes_images(command) -> bool:
    """A predict subcommand takes image inputs (a group like verify-face: its default `compare` does)."""
    sub = getattr(command, "commands", None)
    if sub is not None:
        return "compare" in sub and takes_images(sub["compare"])
    return any(p.name == "inputs" for p in command.params)


def predict_subcommands() -> list[str]:
    """The card's predict subcommands plus any image-taking one the CLI has grown since."""
    found = {name for name, command in cli_commands().items() if takes_images(command)}
    return sorted(set(CARD) | found)


def has_option(subcommand: str, flag: str) -> bool:
    command = cli_commands()[subcommand]
    command = getattr(command, "commands", {}).get("compare", command)
    return any(flag in p.opts for p in command.params)


def absent_reason(subcommand: str) -> str | None:
    if subcommand not in cli_commands():
        return f"{subcommand}: not in `cnntool --help` yet"
    return None


def default_model_reason(subcommand: str) -> str | None:
    """Why a subcommand cannot run with its defaults here: absent, no default model, or not embedded."""
    reason = absent_reason(subcommand)
    if reason:
        return reason
    try:
        spec = catalog.get(catalog.default(CARD.get(subcommand, subcommand)))
    except UnknownModelError as exc:
        return f"{subcommand}: no default model ({exc})"
    source = spec.weights or ""
    if source.startswith("embedded:"):
        try:
            weights.resolve(source.split(":", 1)[1])
        except ConfigError as exc:
            return f"{subcommand}: default model {spec.name!r} not embedded yet ({exc})"
    if source == "external:dlib":
        from cnntool.dlib import model_path

        try:
            for key in ("detector", "face5", "embedding"):
                model_path(key)
        except (FileNotFoundError, KeyError) as exc:
            return f"{subcommand}: dlib's face models are not installed ({exc})"
    return None


# A small architecture of each subcommand's task, for random-initialised weights files of that task.
ARCH = {"classify": "lenet5", "localize": "localizer-digits", "landmarks": "landmarker-corners",
        "detect": "yolo-digits", "verify-face": "embedding-net"}


def save_random_weights(path, arch: str, *, bare: bool = False, **meta) -> str:
    """Seeded random weights of `arch`, with our metadata (its task and name, plus `meta`) unless bare."""
    import torch

    torch.manual_seed(0)
    spec = catalog.get(arch)
    return str(weights.save(path, spec.build().state_dict(), {} if bare else {"task": spec.task, "model": arch, **meta}))
