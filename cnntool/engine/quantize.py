"""--int8: post-training static quantization for CPU inference, calibrated on the run's own first batch.

Weights are quantized per output channel and activations per tensor to 8 bits (torch.ao.quantization's FX
graph mode with the "x86" backend's default settings: histogram observers for activations, which choose the
range that least distorts what they saw), and convolutions, linear layers and ReLUs then run on int8 kernels
(fbgemm / oneDNN). An op with no int8 kernel stays float with a dequantize / quantize around it, and
conv → BatchNorm → ReLU chains are fused first, so the model needs no change.

The activation ranges must come from real inputs. A checkpoint records none, so they are measured on the
first CALIBRATION_IMAGES images of the first batch a run sees, and every batch (that one included) then
runs quantized. Hence the same image can score slightly differently in another run whose first batch
differs: run the same inputs in the same order to reproduce a result. bench/RESULTS.md gives the measured
accuracy and speed effect.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from cnntool.errors import ConfigError, first_line

# Observing costs a float forward of these images (~0.1 s each for resnet18@224 on one core), paid once
# per run. On Fashion-MNIST, calibrating on 1, 4, 8, 16 or 32 random test images gave the same int8
# accuracy (95.42-95.59 %, float 95.54 %; bench/RESULTS.md).
CALIBRATION_IMAGES = 8


def backend() -> str:
    """The int8 kernel library for this CPU: "x86" (fbgemm and oneDNN) or "qnnpack" (ARM)."""
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    raise ConfigError(f"--int8: this torch build has no CPU int8 kernels (engines: {', '.join(engines)})")


def quantize_int8(module: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """An int8 copy of the eval-mode `module`, its activation ranges observed on `calibration`."""
    engine = backend()
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings(), torch.no_grad():
        # torch.ao.quantization announces its move to torchao on import and on every call; the API works
        # as documented.
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
        except ImportError:  # announced to move to torchao; a torch without it cannot quantize this way
            raise ConfigError(f"--int8 needs torch.ao.quantization's FX mode, which torch {torch.__version__} "
                              f"does not have") from None

        try:
            observed = prepare_fx(copy.deepcopy(module).eval(), get_default_qconfig_mapping(engine),
                                  example_inputs=(calibration[:1],))
        except Exception as exc:  # fx raises many kinds (TraceError, TypeError, …) on untraceable code
            reason = first_line(exc)
            raise ConfigError(f"--int8: this model cannot be quantized (torch.fx cannot trace it: {reason})") from None
        observed(calibration)
        return convert_fx(observed)


class Int8FromFirstBatch(nn.Module):
    """Runs `module` quantized to int8, calibrated on the first batch it is given."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.float_module = module
        self.quantized: nn.Module | None = None
        self.eval()  # and the float module with it

    def forward(self, x: torch.Tensor):
        if self.quantized is None:
            self.quantized = quantize_int8(self.float_module, x[:CALIBRATION_IMAGES])
        return self.quantized(x)
