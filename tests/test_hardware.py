"""The CPU kind every figure is named by, and the AVX2 emulation that turns native bf16 off."""
import pytest

from girl_lib import fastpath, hardware
from girl_lib.errors import GirlError


@pytest.mark.parametrize("flags, kind", [
    ({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "amx"),
    ({"avx2", "avx512f", "avx512_bf16"}, "avx512-bf16"),
    ({"avx2", "avx512f", "avx512_vnni"}, "avx512"),
    ({"avx2", "fma", "avx_vnni"}, "avx2"),
    ({"sse4_2"}, "baseline"),
    (set(), "unknown"),
])
def test_cpu_kind_names_the_fastest_path(flags, kind):
    assert hardware.cpu_kind(flags) == kind


def test_emulated_avx2_drops_every_wider_feature(monkeypatch):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("Zen 4", frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})))
    monkeypatch.delenv(hardware.ENV_EMULATE, raising=False)
    assert hardware.cpu_has_native_bf16() and hardware.cpu_kind(hardware.cpu_flags()) == "avx512-bf16"
    assert hardware.cpu_label() == "avx512-bf16"
    monkeypatch.setenv(hardware.ENV_EMULATE, "avx2")
    assert hardware.cpu_flags() == {"avx2", "fma"}
    assert not hardware.cpu_has_native_bf16()
    # the fast path leaves bf16 as on a laptop: fp32 arithmetic on fp16-packed weights (or fp32)
    assert fastpath.resolve_fast_dtype("auto", "cpu") in (fastpath.FP16_WEIGHTS, None)
    features = hardware.cpu_features()
    assert features["cpu"] == "Zen 4" and features["emulated"] == "avx2" and features["cpu_kind"] == "avx2"
    assert hardware.cpu_label() == "avx2 (emulated on avx512-bf16)"  # what a figure is filed under


def test_unknown_emulation_is_refused(monkeypatch):
    monkeypatch.setenv(hardware.ENV_EMULATE, "pentium")
    with pytest.raises(GirlError, match="GIRL_EMULATE_CPU='pentium'"):
        hardware.cpu_flags()
    with pytest.raises(GirlError, match="unknown CPU kind"):
        hardware.emulation_env("pentium")
    assert hardware.emulation_env("avx2") == {"GIRL_EMULATE_CPU": "avx2", "ATEN_CPU_CAPABILITY": "avx2",
                                              "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
