"""Whether training multiplies in bfloat16: the image trainer and the language-model trainers both ask.

``train_precision = "auto"`` means bfloat16 where the CPU multiplies it natively (AVX-512 BF16, AMX), where
it halves the time per step at the same accuracy, and float32 elsewhere, where emulated bfloat16 is slower.
"""

from __future__ import annotations

from pathlib import Path


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (its flags, on Linux); elsewhere, no."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def train_in_bf16(precision: str) -> bool:
    """Whether training runs its forward and backward passes under bfloat16 autocast."""
    return precision == "bfloat16" or (precision == "auto" and native_bf16())
