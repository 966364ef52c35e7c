"""``scripts/gpu-check.sh`` on the CPU, up to the point where CUDA is required (issue 18): the
checks that need no GPU pass with ``--device cpu``, every check is skipped with its reason on a
machine without CUDA, and a failing check is its own FAIL line and a non-zero status."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(PASS|FAIL|SKIP) [a-z0-9-]+: .+ \(\d+\.\d s\)$")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cpu_part_passes_one_line_per_check(gpu_check, capsys):
    assert gpu_check.main(["--device", "cpu", "--only", "device,p-bits,influence,vllm"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["PASS", "device:"],
        ["PASS", "p-bits:"],
        ["PASS", "influence:"],
        ["SKIP", "vllm:"],
    ]
    assert all(LINE.match(line) for line in lines)
    assert "6ac76c5b92f0e5db" in lines[1]  # block_checksum(0, 0) as tests/test_projection pins


def test_a_failing_check_is_its_line_and_the_status(gpu_check, capsys, monkeypatch):
    def broken(device, work):
        raise AssertionError("P on cuda differs from the CPU\nsecond line")

    monkeypatch.setitem(gpu_check.CHECKS, "p-bits", broken)
    assert gpu_check.main(["--device", "cpu", "--only", "p-bits,device"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("FAIL p-bits: AssertionError: P on cuda differs from the CPU (")
    assert lines[1].startswith("PASS device:")


@pytest.mark.skipif(
    importlib.util.find_spec("torch") and __import__("torch").cuda.is_available(),
    reason="a CUDA machine runs the checks for real",
)
def test_without_cuda_the_script_skips_each_check_with_the_reason():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--only", "device,p-bits,ddp"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["SKIP", "SKIP", "SKIP"]
    assert "sees no CUDA device" in lines[0] and "--device cpu" in lines[1]


def test_unknown_check_names_are_refused(gpu_check):
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "p-bits,nonsense"])


def test_the_script_is_executable_and_bounded():
    text = (ROOT / "scripts" / "gpu-check.sh").read_text()
    assert "timeout" in text and "gpu_check.py" in text
    assert sys.executable  # the tests' python runs the module above
