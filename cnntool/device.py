"""Where a command runs: the torch device, its threads, and decoding processes; their options, declared once."""

from __future__ import annotations

from typing import Any

from cnntool.errors import ConfigError
from cnntool.options import option

DEVICES = "auto, cpu, cuda, cuda:N, mps"


def device_option(default: str = "auto") -> Any:
    return option(default, "--device", help="auto, cpu, cuda or cuda:N.")


def threads_option() -> Any:
    return option(None, "--threads", min=1, help="Torch intra-op threads (default: torch's choice).")


def workers_option() -> Any:
    return option(0, "--workers", "-j", min=0, help="Decoding processes (0 = decode in the main process).")


def resolve_device(name: str) -> str:
    """auto, cpu, cuda, cuda:N or mps → a device torch can use here, or a one-line ConfigError."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; valid: {DEVICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but there are {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return name


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
