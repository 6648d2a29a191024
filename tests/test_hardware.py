"""The compute-dtype probe is remembered per machine only when measured on a quiet machine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from chatbot import hardware

# A small decoder's shapes: the probe takes a fraction of a second on them.
CONFIG = SimpleNamespace(
    hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2
)


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[hardware.DtypeProbe]:
    """Every probe actually measured, in a home of its own."""
    monkeypatch.setenv("BRANDVOICE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hardware, "_UNSETTLED", {})
    measured: list[hardware.DtypeProbe] = []
    real = hardware.probe_compute_dtypes

    def counting(config: object, **kwargs: object) -> hardware.DtypeProbe:
        measured.append(real(config, tokens=16))
        return measured[-1]

    monkeypatch.setattr(hardware, "probe_compute_dtypes", counting)
    return measured


def _cached_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "home" / "machine").glob("compute-dtype-*.json"))


def test_a_probe_on_a_quiet_machine_is_remembered(
    probes: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    dtype, probe = hardware.fastest_compute_dtype(CONFIG)
    assert dtype in (torch.float32, torch.bfloat16) and len(probes) == 1
    assert len(_cached_files(tmp_path)) == 1
    hardware._UNSETTLED.clear()
    assert hardware.fastest_compute_dtype(CONFIG)[1].tflops == probe.tflops
    assert len(probes) == 1  # read back, not measured again


def test_a_probe_on_a_busy_machine_is_kept_for_the_process_only(
    probes: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cores = hardware.os.cpu_count() or 1
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (3.0 * cores, 2.0, 1.0))
    hardware.fastest_compute_dtype(CONFIG)
    hardware.fastest_compute_dtype(CONFIG)
    assert len(probes) == 1 and _cached_files(tmp_path) == []  # measured once, not remembered
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    hardware._UNSETTLED.clear()  # a later process, on a quiet machine
    hardware.fastest_compute_dtype(CONFIG)
    assert len(probes) == 2 and len(_cached_files(tmp_path)) == 1
