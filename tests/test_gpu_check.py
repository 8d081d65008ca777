"""``benchmarks/gpu_check.py --dry-run``: the prepared GPU check runs end to end on a CPU in seconds.

The real run needs a CUDA GPU (``python benchmarks/gpu_check.py``); this keeps the script from
rotting between GPU runs: every section is written, with numbers, and the time budget skips
what would not fit.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _rows(section: str) -> list[str]:
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| input")
            and not line.startswith("| engine")]


def test_dry_run_writes_every_section_with_numbers(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# GPU check (dry run")
    assert "Not run: skipped (--dry-run)" in _section(text, "## 1. Tests marked `gpu`")
    restore = _section(text, "## 2. Real size")
    assert re.search(r"bfloat16 matmul 256\^3 on cpu: \*\*[0-9.e+-]+ TFLOP/s", restore)
    rows = _rows(restore)
    assert [r.split(" | ")[0] for r in rows] == ["| 8x32x32", "| 8x32x48"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "29x" + cells[0].split("x", 1)[1] and cells[2] == "ran"
        for cell in cells[3:6] + cells[8:]:  # fit s, restore s, voxels/s, TFLOP, TFLOP/s, / matmul
            assert re.fullmatch(r"[0-9.e+-]+( M)?", cell), cell
        assert cells[6] == "n/a / n/a" and cells[7] == "n/a / n/a"  # no GPU memory or nvidia-smi on a CPU
    training = _rows(_section(text, "## 3. 2D engines"))
    assert [r.split(" | ")[0] for r in training] == ["| msunet", "| brainsr"]
    for row in training:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "ran" and cells[4] == "2" and float(cells[5]) > 0
    assert "Every part ran within the budget." in _section(text, "## Budget")
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["matmul_tflops"] > 0 and len(data["restore"]) == 2 and len(data["training"]) == 2
    assert all(r["status"] == "ran" and r["voxels_per_s"] > 0 and r["restore_tflop"] > 0 for r in data["restore"])
    assert any("restoring on cpu" in line for line in data["restore"][0]["log"])  # volsr's own log line


def test_a_budget_too_short_skips_parts_and_says_so(gpu_check, tmp_path, capsys):
    out = tmp_path / "short.md"
    assert gpu_check.main(["--dry-run", "--out", str(out), "--budget-minutes", "0.0001"]) == 0
    text = out.read_text()
    budget = _section(text, "## Budget")
    assert "skipped, needs ~" in budget and "0.0001-minute budget" in budget
    assert all("skipped (budget)" in row for row in _rows(_section(text, "## 2. Real size")))
    assert all("skipped (budget)" in row for row in _rows(_section(text, "## 3. 2D engines")))
