"""Mixed precision: bf16 autocast where the hardware computes in bf16 natively.

Pretraining (the training step and the clustering pass's features) runs under bf16 autocast
on a CUDA GPU that supports bf16 and on a CPU with AMX tiles (Intel Sapphire Rapids and
later), where oneDNN's bf16 kernels run alexnet-small's training step 2.39x and its frozen
extraction 2.32x as fast as float32 (bench/bench_cpu_bf16.py). `--amp off` keeps float32,
`--amp bf16` insists (refused where it would be emulated). Evaluations keep float32 on CPU,
so a task's numbers do not depend on which CPU measured them; on CUDA their frozen passes
use bf16 as before. Losses and extracted features are cast back to float32. bf16 keeps
float32's exponent range, so no loss scaling is needed; a GPU without bf16 runs float32
rather than fp16 with a scaler. What a run used is recorded (`amp` in the pretraining config
and in every eval record's extra).
"""

from __future__ import annotations

import contextlib

import torch

from dcbench.errors import DcbenchError

AMP_CHOICES = ("auto", "bf16", "off")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a bf16 GPU, or a CPU with AMX tiles
    (AVX512-BF16 alone was not measured, so it is not counted)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx())
    return False


def amp_name(device: torch.device, requested: str = "auto") -> str:
    """The precision pretraining uses: 'bf16' or 'off' (float32)."""
    if requested not in AMP_CHOICES:
        raise DcbenchError(f"--amp {requested!r} is not one of {', '.join(AMP_CHOICES)}")
    if requested == "off":
        return "off"
    if native_bf16(device):
        return "bf16"
    if requested == "bf16":
        raise DcbenchError(f"--amp bf16: this {device.type.upper()} has no native bf16 (a "
                           f"bf16 GPU, or a CPU with AMX); it would be emulated and slower "
                           f"than float32; use --amp auto or --amp off")
    return "off"


def eval_amp_name(device: torch.device) -> str:
    """The precision of the evaluations' frozen passes: bf16 on a bf16 GPU, float32 on CPU."""
    return "bf16" if device.type == "cuda" and native_bf16(device) else "off"


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `amp` is 'bf16', else nothing."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
