"""``python -m bench.gpu``: the script a lent GPU machine runs once, proven here on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.gpu import PHASES, main, write_synthetic_cifar
from tests.conftest import CIFAR_SUBSET, ROOT

# A line each phase must print in a smoke run: the figures the README's goals are held against.
KEY_LINES = (
    "inference_app_fp32_b1_ms",
    "inference_torchvision_bf16_b4_images_per_s",
    "explore_explore_ms",
    "explore_speedup",
    "explore_integrated_gradients_ms",
    "explore_occlusion_ms",
    "training_speedup",
    "training_speedup_guide_preset",
    "accuracy_main",
    "accuracy_aux2",
    "accuracy_full_cifar10_epoch_s",
    "ddp_steps",
    "compile_train_on_images_per_s",
    "compile_inference_app_bf16_b1_ms",
)


def lines_of(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and " " not in name:
            out[name] = value.split("  (")[0]
    return out


@pytest.mark.slow
def test_smoke_run_prints_every_phase_and_writes_the_json(tmp_path):
    """Every phase runs with tiny sizes on the CPU; the JSON lands in $OUT as on the device."""
    cmd = [sys.executable, "-m", "bench.gpu", "--smoke"]
    if (CIFAR_SUBSET / "cifar-10-batches-py" / "test_batch").is_file():
        cmd += ["--data", str(CIFAR_SUBSET)]  # else the script writes random images in CIFAR's layout
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OUT": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.startswith("device=cpu")
    printed = lines_of(result.stdout)
    for phase in PHASES:
        expected = "skipped: not measurable on a lent machine" if phase.name == "zerogpu" else "ok"
        assert printed.get(f"{phase.name}_status") == expected, f"{phase.name}: {printed.get(f'{phase.name}_status')}"
        assert f"{phase.name}_peak_gpu_mb" in printed
    for name in KEY_LINES:
        assert float(printed[name]) > 0, name
    assert printed["ddp_backend"] == "gloo" and printed["ddp_steps"] == "2"
    assert printed["phases_failed"] == "0"

    report = json.loads((tmp_path / "gpu.json").read_text())
    assert list(report["phases"]) == [p.name for p in PHASES]
    assert report["smoke"] is True and report["device"].startswith("cpu")
    for phase in PHASES:
        entry = report["phases"][phase.name]
        assert entry["seconds"] >= 0 and "peak_gpu_mb" in entry
    values = {f"{name}_{key}": value for name, entry in report["phases"].items() for key, value in entry["values"].items()}
    for name in KEY_LINES:
        assert values[name] > 0, name
    assert 0 <= values["accuracy_main"] <= 1
    assert values["accuracy_epochs"] == 1 and values["ddp_steps"] == 2


def test_phases_that_do_not_fit_the_limit_are_skipped_with_the_reason(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["--smoke", "--limit", "0", "--json", str(out)]) == 0
    printed = lines_of(capsys.readouterr().out)
    assert printed["device_status"] == "ok"  # takes no time: always runs
    for phase in PHASES[1:-1]:
        assert printed[f"{phase.name}_status"].startswith(f"skipped: needs at least {phase.minimum_s:.0f} s"), phase.name
    report = json.loads(out.read_text())
    assert list(report["phases"]) == [p.name for p in PHASES]
    assert report["phases"]["training"]["status"].startswith("skipped")


def test_a_failing_phase_is_reported_and_the_next_one_goes_on(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    missing = tmp_path / "no-cifar-here"
    assert main(["--smoke", "--phases", "training,zerogpu", "--data", str(missing), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"phase_error=training: DataError: CIFAR-10 folder not found: {missing}" in text
    printed = lines_of(text)
    assert printed["training_status"] == "error"
    assert printed["zerogpu_status"].startswith("skipped") and printed["phases_failed"] == "1"
    report = json.loads(out.read_text())
    assert list(report["phases"]) == ["device", "training", "zerogpu"]
    assert report["phases"]["training"]["error"].startswith("DataError")


def test_unknown_phase_names_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--smoke", "--phases", "trainig"])
    assert "unknown phases ['trainig']" in capsys.readouterr().err


def test_synthetic_cifar_reads_back_through_the_projects_reader(tmp_path):
    from googlenet.datasets.cifar10 import read_cifar10

    data = read_cifar10(write_synthetic_cifar(tmp_path, train=20, test=10))
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (10, 3, 32, 32)
    assert len(data.classes) == 10 and int(data.train_labels.max()) <= 9
