"""Mixed precision: bf16 autocast on CUDA (where the GPU supports it), off on CPU.

Training and frozen feature extraction run under `autocast(device)`; losses and extracted
features are cast back to float32. bf16 keeps float32's exponent range, so no loss scaling is
needed; a GPU without bf16 runs in float32 rather than fp16 with a scaler. What a run used is
recorded (`amp` in the pretraining config and in every eval record's extra).
"""

from __future__ import annotations

import contextlib

import torch


def amp_name(device: torch.device) -> str:
    """'bf16' where autocast is on for this device, else 'off'."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "off"


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if amp_name(device) == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
