"""Choosing the inference precision: bf16 only where the hardware runs it natively and it agrees.

On a CPU with native bf16 (Intel AMX, or AVX-512 BF16 on AMD and Intel), casting the networks to bf16
runs the LSTM 2-5x faster; on an AVX2-only CPU the same cast is slower than fp32 (measured on this
project's machines: see README "Measured figures"). bf16 also rounds, so a model may pick another
class for a few comments: ``auto`` checks, at model load, that bf16 and fp32 agree on rows stored with
the model before using it. The machine decides, not the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

MIN_AGREEMENT = 0.999  # share of check rows whose predicted class must not change
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "fp32" or "bf16" on CPU; "fp32", "bf16" or "fp16" on CUDA
    reason: str
    agreement: float | None = None  # share of check rows on which it agreed with fp32


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The CPU flags that mean native bf16 arithmetic ((), where the file cannot be read)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), [])  # fmt: skip
    except OSError:
        return ()
    return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in flags)


def reduced_precision_for(device: torch.device, cpu_flags: Sequence[str]) -> tuple[str | None, str]:
    """The reduced precision worth trying on ``device`` and why (None: stay with fp32)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(device)} runs bf16"
        return "fp16", f"{torch.cuda.get_device_name(device)} has no bf16; fp16"
    if not cpu_flags:
        return None, "this CPU has no native bf16 (no AMX or AVX-512 BF16): bf16 would be slower"
    return "bf16", f"this CPU has native bf16 ({', '.join(cpu_flags)})"


def choose_precision(
    requested: str,
    device: torch.device,
    agreement_of: Callable[[str], float],
    *,
    cpu_flags: Sequence[str] | None = None,
    min_agreement: float = MIN_AGREEMENT,
) -> PrecisionChoice:
    """``requested`` as is, or for ``auto`` the reduced precision when the hardware runs it natively and
    ``agreement_of(precision)`` (the share of check rows predicted as in fp32) reaches ``min_agreement``."""
    if requested != "auto":
        return PrecisionChoice(requested, f"{requested} requested")
    flags = cpu_bf16_flags() if cpu_flags is None else tuple(cpu_flags)
    candidate, why = reduced_precision_for(device, flags)
    if candidate is None:
        return PrecisionChoice("fp32", why)
    agreement = agreement_of(candidate)
    if agreement < min_agreement:
        return PrecisionChoice(
            "fp32",
            f"{why}, but {candidate} agreed with fp32 on only {agreement:.2%} of the check rows",
            agreement,
        )
    return PrecisionChoice(
        candidate, f"{why} and agreed with fp32 on {agreement:.2%} of the check rows", agreement
    )
