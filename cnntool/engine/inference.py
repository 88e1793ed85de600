"""Prepare a loaded model for inference: the one place the prediction path's speed-ups live.

- BatchNorm folding (on by default): in eval mode a BatchNorm2d is a per-channel affine map, so when it
  reads nothing but a Conv2d's output it can be merged into that conv's weights and bias
  (torch.nn.utils.fusion.fuse_conv_bn_eval). One pass over the activations less; same outputs up to
  float rounding.
- channels_last (on by default, CPU only): oneDNN's convolutions run NHWC natively; with NCHW tensors they
  reorder to and from it around every conv.
- bf16 autocast (off by default): halves the bytes moved, but needs native bf16 arithmetic (AVX-512 BF16 or
  AMX) to pay; on an AVX2-only CPU it is several times slower (bench/RESULTS.md), and it costs accuracy.
- int8 (off by default, CPU only): post-training static quantization calibrated on the first batch
  (cnntool.engine.quantize); about 2× the fp32 forward of a ResNet on AVX2, at a measured accuracy cost.
- torch.compile (off by default): Inductor's fused kernels; the first batch of each shape pays a compile of
  seconds to minutes, kept in the Inductor cache (compile_cache_dir()) for later runs.

tests/test_inference.py checks every registered model's outputs with and without these.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool.cache import cache_dir
from cnntool.errors import ConfigError, first_line
from cnntool.options import option

if TYPE_CHECKING:
    import torch
    from torch import nn


def bf16_option() -> Any:
    return option(False, "--bf16", help="bfloat16 autocast. Pays only with native bf16 (GPUs, CPUs with AVX-512 BF16 "
                  "or AMX): on AVX2 CPUs it is several times slower; check accuracy with `cnntool evaluate classify … "
                  "--bf16`.")


def int8_option() -> Any:
    return option(False, "--int8", help="Run on the CPU's int8 kernels (post-training quantization, ranges measured "
                  "on the first 8 images of the run): about 2× faster for ResNets, slightly different scores; check "
                  "accuracy with `cnntool evaluate classify … --int8`.")


def compile_option() -> Any:
    return option(False, "--compile", help="torch.compile the model. The first batch of each shape compiles (seconds "
                  "to minutes); kernels are cached in $TORCHINDUCTOR_CACHE_DIR, default ~/.cache/cnntool/inductor.")


@dataclass(frozen=True, kw_only=True)
class InferenceOptions:
    fold_bn: bool = True
    channels_last: bool = True
    bf16: bool = False
    compile: bool = False
    int8: bool = False


def compile_cache_dir() -> Path:
    """Where torch.compile keeps its compiled kernels: $TORCHINDUCTOR_CACHE_DIR when set, else the cache
    directory's inductor/ (Inductor's own default is under /tmp, which a reboot empties, and every later run
    would pay the compile again)."""
    given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return Path(given) if given else cache_dir() / "inductor"


# --- BatchNorm folding ------------------------------------------------------------------------------------

def fold_batchnorm(model: "nn.Module") -> int:
    """Fold every eval-mode BatchNorm2d that reads only a Conv2d's output into that conv, in place; returns
    how many were folded. The folded BatchNorm becomes an Identity, so the model's own forward (and every
    attribute callers use) stays as it was.

    Which conv feeds which BatchNorm is read from the code, not guessed from names: torch.fx traces each
    module's forward into a graph, and a pair is folded only where the BatchNorm's sole input is the conv's
    output and nothing else reads that output. A module fx cannot trace (data-dependent control flow) is
    skipped and its children are traced instead; inside a plain nn.Sequential, adjacent conv → BatchNorm
    pairs need no trace. Modules reachable under two names (shared) are never touched: a use of them
    outside the traced module could not be seen.
    """
    from torch import nn

    if model.training:
        raise ValueError("BatchNorm folding is for eval mode: call model.eval() first")
    shared = _shared_modules(model)
    pairs = _fold_pairs(model, "", shared)
    named = dict(model.named_modules())
    for conv_name, bn_name in pairs:
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        fused = fuse_conv_bn_eval(named[conv_name], named[bn_name])
        _replace(model, conv_name, fused)
        _replace(model, bn_name, nn.Identity())
    return len(pairs)


def _shared_modules(model: "nn.Module") -> set[int]:
    seen: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        seen[id(module)] = seen.get(id(module), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def _has_conv_and_bn(module: "nn.Module") -> bool:
    from torch import nn

    kinds = {type(m) for m in module.modules()}
    return nn.Conv2d in kinds and nn.BatchNorm2d in kinds


def _foldable(conv: "nn.Module", bn: "nn.Module", shared: set[int]) -> bool:
    """Exact types only: a subclass may override forward. Hooks would be lost with the module."""
    from torch import nn

    if type(conv) is not nn.Conv2d or type(bn) is not nn.BatchNorm2d:
        return False
    if id(conv) in shared or id(bn) in shared or conv.training or bn.training or conv.padding_mode != "zeros":
        return False
    if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in (conv, bn))


def _fold_pairs(module: "nn.Module", prefix: str, shared: set[int]) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) pairs under `module`, names relative to the root."""
    from torch import nn

    if not _has_conv_and_bn(module):
        return []
    traced = _traced_pairs(module, shared)
    if traced is not None:
        return [(prefix + c, prefix + b) for c, b in traced]
    pairs = []
    children = list(module.named_children())
    if type(module) is nn.Sequential:
        # Sequential's forward feeds each child's output to the next child only.
        for (c_name, conv), (b_name, bn) in zip(children, children[1:]):
            if _foldable(conv, bn, shared):
                pairs.append((prefix + c_name, prefix + b_name))
    taken = {name for pair in pairs for name in pair}
    for name, child in children:
        if prefix + name not in taken:
            pairs += _fold_pairs(child, f"{prefix}{name}.", shared)
    return pairs


def _traced_pairs(module: "nn.Module", shared: set[int]) -> list[tuple[str, str]] | None:
    """Pairs from an fx trace of `module`, or None when it cannot be traced."""
    import torch.fx

    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception:  # fx raises many kinds (TraceError, TypeError, …) on untraceable code
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    named = dict(module.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv_name, bn_name = source.target, node.target
        if calls[conv_name] != 1 or calls[bn_name] != 1:  # one module called twice: fusing changes both
            continue
        if _foldable(named[conv_name], named[bn_name], shared):
            pairs.append((conv_name, bn_name))
    return pairs


def _replace(root: "nn.Module", name: str, new: "nn.Module") -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, new)


# --- the prepared model -----------------------------------------------------------------------------------

def _float32_outputs(out: Any) -> Any:
    """Outputs as the task decoders expect them: bf16 tensors back to float32 (numpy has no bf16), through
    the lists, tuples and dicts detectors return."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, dict):
        return {k: _float32_outputs(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        values = [_float32_outputs(v) for v in out]
        return type(out)(*values) if hasattr(out, "_fields") else type(out)(values)  # namedtuples too
    return out


def _has_4d_weights(model: "nn.Module") -> bool:
    return any(p.dim() == 4 for p in model.parameters())


class InferenceModel:
    """A model prepared for inference; call it like the module (inside torch.inference_mode)."""

    def __init__(self, module: "nn.Module", device: str, options: InferenceOptions = InferenceOptions(), *,
                 quiet: bool = False) -> None:
        import torch

        self.module = module.eval()
        self.device = torch.device(device)
        self.options = options
        self.quiet = quiet
        if options.int8:
            _check_int8(options, self.device)
        # int8 conversion fuses conv → BatchNorm → ReLU itself; a folded BatchNorm's Identity would split the pair.
        self.folded = fold_batchnorm(self.module) if options.fold_bn and not options.int8 else 0
        # CPU only: on CUDA NHWC pays with tensor-core (fp16/bf16) convolutions, which were not measured here.
        self.channels_last = (options.channels_last and self.device.type == "cpu" and _has_4d_weights(self.module))
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)
        if options.int8:
            from cnntool.engine.quantize import Int8FromFirstBatch

            self.module = Int8FromFirstBatch(self.module)
        self._compiled = None
        if options.compile:
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
            if quiet:  # -q: no stray lines on stderr, e.g. a CUDA build's "No CUDA runtime is found" on a CPU
                import logging

                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self._compiled = torch.compile(self.module)

    def __call__(self, x: "torch.Tensor") -> Any:
        import torch

        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._compiled is not None:
            try:
                return self._run(self._compiled, x)
            except Exception as exc:
                # An error the eager module also raises belongs to the input (the caller reports it for
                # that image); one only the compiled module raises means compiling failed here.
                out = self._run(self.module, x)
                self._compiled = None
                if not self.quiet:
                    reason = first_line(exc)
                    print(f"cnntool: warning: torch.compile failed ({reason}); running uncompiled", file=sys.stderr)
                return out
        return self._run(self.module, x)

    def _run(self, forward, x: "torch.Tensor") -> Any:
        import torch

        if not self.options.bf16:
            return forward(x)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            return _float32_outputs(forward(x))


def _check_int8(options: InferenceOptions, device: "torch.device") -> None:
    if device.type != "cpu":
        raise ConfigError(f"--int8 runs on the CPU's int8 kernels; use --device cpu, not {device}")
    if options.bf16 or options.compile:
        raise ConfigError("--int8 cannot be combined with --bf16 or --compile")


def prepare(module: "nn.Module", device: str, options: InferenceOptions = InferenceOptions(), *,
            quiet: bool = False) -> InferenceModel:
    return InferenceModel(module, device, options, quiet=quiet)
