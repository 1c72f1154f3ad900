"""``--precision auto``: bf16 only where the hardware runs it natively and it predicts as fp32 does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_bundle
from lstm_model.precision import MIN_AGREEMENT
from lstm_model.precision import choose_precision
from lstm_model.precision import cpu_bf16_flags
from lstm_model.predict import Classifier

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def never_called(precision: str) -> float:
    raise AssertionError("no agreement check is needed here")


class TestAuto:
    def test_cpu_without_native_bf16_stays_fp32(self):
        choice = choose_precision("auto", CPU, never_called, cpu_flags=())
        assert choice.precision == "fp32" and "no native bf16" in choice.reason

    def test_native_bf16_that_agrees_is_used(self):
        choice = choose_precision("auto", CPU, lambda p: 1.0, cpu_flags=("amx_bf16",))
        assert choice.precision == "bf16" and choice.agreement == 1.0 and "amx_bf16" in choice.reason

    def test_native_bf16_below_the_agreement_bar_falls_back_to_fp32(self):
        asked = []
        choice = choose_precision("auto", CPU, lambda p: asked.append(p) or 0.995, cpu_flags=("avx512_bf16",))
        assert asked == ["bf16"]
        assert choice.precision == "fp32" and choice.agreement == 0.995 and "99.50%" in choice.reason

    def test_the_bar_is_inclusive(self):
        choice = choose_precision("auto", CPU, lambda p: MIN_AGREEMENT, cpu_flags=("avx512_bf16",))
        assert choice.precision == "bf16"

    @pytest.mark.parametrize("requested", ["fp32", "bf16"])
    def test_an_explicit_precision_is_kept(self, requested):
        assert choose_precision(requested, CPU, never_called).precision == requested


class TestCpuFlags:
    def test_reads_the_bf16_flags(self, tmp_path: Path):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
        assert cpu_bf16_flags(cpuinfo) == ("avx512_bf16",)
        cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
        assert cpu_bf16_flags(cpuinfo) == ()
        assert cpu_bf16_flags(tmp_path / "missing") == ()


def test_the_real_agreement_check_on_a_model():
    """What the scoring task does at model load, on a real (small) model: the agreement measured
    between its bf16 and fp32 predictions decides (bf16 rounding differs between CPUs, so the test
    checks the decision follows the measurement rather than a fixed outcome)."""
    bundle, _ = tiny_bundle()
    texts = [
        "El pedido llegó tarde",
        "no puedo pagar con tarjeta",
        "el precio subió",
        "el agente no contesta",
    ]

    def agreement_of(candidate: str) -> float:
        reference = Classifier.from_bundle(bundle).score(texts).predicted
        reduced = Classifier.from_bundle(bundle, precision=candidate).score(texts).predicted
        return float((reference == reduced).mean())

    measured = agreement_of("bf16")
    assert 0.5 <= measured <= 1.0
    choice = choose_precision("auto", CPU, agreement_of, cpu_flags=("avx512_bf16",))
    assert choice.agreement == measured
    assert choice.precision == ("bf16" if measured >= MIN_AGREEMENT else "fp32")
