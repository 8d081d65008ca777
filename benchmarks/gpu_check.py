"""The prepared GPU check: one command, at most 8 minutes on one H100/H200-class GPU, one report.

Not a test (``--dry-run`` is: ``tests/test_gpu_check.py``). Three parts, measured in one run so
the ratios share the machine's state:

1. **Tests marked ``gpu``** (``tests/runtime/test_gpu.py``: autocast, fused attention, pinned
   copies, GPU-memory batches, GPU <-> CPU models, a real CUDA out-of-memory retry), run as
   ``python -m pytest -m gpu -q tests`` in a child process: passed / failed / skipped counts.
2. **Real size**: synthetic ``fluo`` stacks of 64x512x512 and 128x1024x1024 (input planes, 4x
   in z: 253 and 509 output planes) through ``volsr.restore(engine='msdsr', device='cuda',
   fit_minutes=1)``: the default self-supervised fit, then the default restore
   (``precision='auto'``: bfloat16 autocast). Wall time of fit and restore, restore throughput
   (output voxels/s), peak GPU memory of each (``torch.cuda.max_memory_allocated``, reset
   between them), GPU utilisation during the restore (``nvidia-smi`` every 0.5 s), and the
   restore's network rate: its FLOPs, counted with ``torch.utils.flop_counter.FlopCounterMode``
   (the counter ``bench_speed.py`` measures its network calls with) on a restore of two planes
   per direction of the same size, scaled to all planes, divided by the restore's wall time,
   against a bfloat16 8192^3 matmul timed in the same run.
3. **2D engines' training step rate** (``msunet``, ``brainsr``; preset ``small``, their default
   crops and batch of 16) on synthetic planes: steps/s after the first steps (warm-up), per
   training stage for Brain-SR (autoencoder, denoiser, noise predictor), so a GPU-scale Brain-SR
   run can be sized.

The stacks: an isotropic ``fluo`` block of up to 256x256 pixels (``volsr.samples.isotropic_volume``),
every 4th plane kept (``subsample_z``), tiled in y and x to the stack size (generating 128x1024x1024
whole would take minutes of the budget). Time does not depend on the content.

Budget: the whole run is held to ``--budget-minutes`` (8). A part that needs more than what is
left is skipped, a fit or restore still running at the limit is cancelled (``cancel=``), the
pytest run gets the time left as its timeout; the report says which and why. The run order puts
the largest restore last: tests, matmul, 64x512x512, the 2D rates, 128x1024x1024.

    python benchmarks/gpu_check.py                      # on the GPU machine: writes results/gpu.md + .json
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu.md   # a few seconds on a CPU: 8x32x32, 2 steps
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 4
BLOCK = 256  # side of the generated isotropic block, tiled to the stack size


@dataclass
class Setup:
    """What the run does; ``--dry-run`` swaps in tiny shapes, 2 steps and the CPU."""

    dry: bool
    device: str
    shapes: tuple[tuple[int, int, int], ...]
    fit_minutes: tuple[float, ...]
    fit_steps: int | None
    train_steps: int
    matmul_n: int
    preset_2d: str = "small"
    engine_options: dict = field(default_factory=dict)

    @classmethod
    def make(cls, dry: bool) -> Setup:
        if dry:  # tiny networks too: the dry run is a test of the script, seconds on a CPU
            return cls(True, "cpu", ((8, 32, 32), (8, 32, 48)), (0.1, 0.1), 2, 2, 256, "tiny", {"preset": "tiny"})
        return cls(False, "cuda", ((64, 512, 512), (128, 1024, 1024)), (1.0, 1.0), None, 300, 8192)


class Budget:
    """The run's wall-time limit: what is left, whether a part fits, and a ``cancel`` for volsr calls."""

    def __init__(self, minutes: float):
        self.t0, self.limit = time.perf_counter(), 60.0 * float(minutes)
        self.events: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.limit - self.elapsed()

    def fits(self, what: str, needs_s: float) -> bool:
        if needs_s <= self.left():
            return True
        self.events.append(f"{what}: skipped, needs ~{needs_s:.0f} s and {max(0.0, self.left()):.0f} s of the "
                           f"{self.limit / 60:g}-minute budget were left")
        return False

    def cancel(self) -> bool:
        return self.left() <= 0


# -- the GPU's own numbers ---------------------------------------------------------------------------
def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device: str, n: int, repeats: int = 10) -> float:
    """TFLOP/s of an n^3 bfloat16 matrix product on ``device`` (median of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def peak_memory(device: str) -> float | None:
    """GiB allocated at the peak since the last :func:`reset_peak` (None off CUDA)."""
    if torch.device(device).type != "cuda":
        return None
    sync(device)
    return torch.cuda.max_memory_allocated() / 2**30


def reset_peak(device: str) -> None:
    if torch.device(device).type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()


class Utilisation:
    """``nvidia-smi`` GPU utilisation (%) sampled every ``interval`` s in a background thread."""

    def __init__(self, enabled: bool, interval: float = 0.5):
        self.exe = shutil.which("nvidia-smi") if enabled else None
        self.interval, self.samples = interval, []
        self._stop, self._thread, self._started = threading.Event(), None, False

    def _gpu_id(self) -> str:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return visible[index].strip() if index < len(visible) and visible[index].strip() else str(index)

    def _run(self, gpu: str) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run([self.exe, f"--id={gpu}", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                self.samples += [int(v) for v in out.stdout.split() if v.strip().isdigit()][:1]
            except (OSError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self.exe and not self._started:  # once
            self._started = True
            self._thread = threading.Thread(target=self._run, args=(self._gpu_id(),), daemon=True)
            self._thread.start()

    def stop(self) -> dict | None:
        """``{"mean": %, "max": %, "samples": n}``, or None without nvidia-smi (or samples); may be called again."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
        if not self.samples:
            return None
        return {"mean": float(np.mean(self.samples)), "max": int(max(self.samples)), "samples": len(self.samples)}


class LogLines(logging.Handler):
    """The ``volsr`` logger's lines (device, dtype, batch; an out-of-memory retry) while the block runs."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> LogLines:
        log = logging.getLogger("volsr")
        self._level = log.level
        log.addHandler(self)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        log = logging.getLogger("volsr")
        log.removeHandler(self)
        log.setLevel(self._level)


# -- 1. the tests marked gpu ------------------------------------------------------------------------
def gpu_tests(budget: Budget) -> dict:
    """``python -m pytest -m gpu -q tests`` from the repository root, in a child process."""
    if not budget.fits("tests marked gpu", 30):
        return {"status": "skipped (budget)"}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, budget.left()))
    except subprocess.TimeoutExpired:
        budget.events.append("tests marked gpu: stopped at the budget")
        return {"status": "timed out", "seconds": time.perf_counter() - t0}
    text = res.stdout + res.stderr
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    summary = next((line for line in reversed(text.splitlines()) if re.search(r"\d+ (passed|failed|skipped|"
                                                                              r"deselected|error)", line)), "")
    for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
        counts["errors" if kind.startswith("error") else kind] += int(n)
    failed = [line.split()[1] for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    skips = [line.split("] ", 1)[-1] for line in text.splitlines() if line.startswith("SKIPPED ")]  # pytest's -ra
    return {"status": "ran", "returncode": res.returncode, "summary": summary.strip("= "), **counts,
            "failed_tests": failed, "skip_reasons": skips, "seconds": time.perf_counter() - t0,
            "command": "python " + " ".join(cmd[1:])}


# -- 2. real-size fit + restore -----------------------------------------------------------------------
def synthetic_stacks(shapes) -> list[np.ndarray]:
    """Input stacks (Z, Y, X) uint16: one isotropic fluo block, every 4th plane, tiled in y and x."""
    from volsr.samples import isotropic_volume, subsample_z

    z = max(s[0] for s in shapes)
    by, bx = min(BLOCK, min(s[1] for s in shapes)), min(BLOCK, min(s[2] for s in shapes))
    truth = isotropic_volume(((z - 1) * FACTOR + 1, by, bx), seed=0, kind="fluo", dtype="uint16")
    planes = subsample_z(truth, FACTOR)
    out = []
    for sz, sy, sx in shapes:
        reps = (1, -(-sy // by), -(-sx // bx))
        out.append(np.ascontiguousarray(np.tile(planes[:sz], reps)[:, :sy, :sx]))
    return out


def restore_flops(eng, shape, grid) -> float:
    """FLOPs of the whole restore: counted on two planes per direction of the same size, scaled to all."""
    from torch.utils.flop_counter import FlopCounterMode

    from volsr.pipeline.volume import restore_volume

    c, z, ny, nx = shape
    k, total = 2, 0.0
    for axis, n, sub in (("xz", ny, (c, z, 2, nx)), ("yz", nx, (c, z, ny, 2))):
        vol = np.random.default_rng(0).random(sub).astype(np.float32)
        with FlopCounterMode(display=False) as counter:
            restore_volume(vol, grid, eng, planes=axis, fusion=axis, seed=0, precision="auto")
        total += counter.get_total_flops() / k * n
    return total


def fit_and_restore(stack: np.ndarray, fit_minutes: float, setup: Setup, budget: Budget, restore_s: float) -> dict:
    """``volsr.restore`` with the default fit and restore; the restore's memory, utilisation and rate."""
    import volsr

    label = "x".join(map(str, stack.shape))
    needs = (fit_minutes * 60 if setup.fit_steps is None else 5) + restore_s
    if not budget.fits(f"fit + restore {label}", needs):
        return {"shape_in": list(stack.shape), "status": "skipped (budget)"}
    util = Utilisation(enabled=not setup.dry)
    marks: dict = {}

    def progress(stage, done, total, **info):
        if stage != "fit" and "fit_peak" not in marks:  # the fit is over: the restore begins
            marks["fit_peak"] = peak_memory(setup.device)
            reset_peak(setup.device)
            util.start()
        if stage == "yz" and done >= total:  # both directions done: what follows is the CPU's
            util.stop()
        marks["last"] = (stage, done, total)

    reset_peak(setup.device)
    t0 = time.perf_counter()
    fit = {"fit_steps": setup.fit_steps} if setup.fit_steps else {"fit_minutes": fit_minutes}
    try:
        with LogLines() as log:
            res = volsr.restore(stack, engine="msdsr", device=setup.device, z_factor=FACTOR, seed=0,
                                progress=progress, cancel=budget.cancel, engine_options=dict(setup.engine_options),
                                **fit)
    except volsr.Cancelled:
        util.stop()
        budget.events.append(f"fit + restore {label}: cancelled at the budget after {time.perf_counter() - t0:.0f} s "
                             f"(last progress {marks.get('last')})")
        return {"shape_in": list(stack.shape), "status": "cancelled (budget)", "log": log.lines}
    usage = util.stop()
    row = {"shape_in": list(stack.shape), "shape_out": list(res.data.shape), "status": "ran", "log": log.lines,
           "fit_s": float(res.timings["fit_s"]), "restore_s": float(res.timings["restore_s"]),
           "fit_peak_gib": marks.get("fit_peak"), "restore_peak_gib": peak_memory(setup.device),
           "utilisation": usage, "fit_steps": res.engine.provenance.get("fit_report", {}).get("steps")}
    row["voxels_per_s"] = res.data.size / row["restore_s"]
    row["restore_tflop"] = restore_flops(res.engine, (1, *stack.shape), res.grid) / 1e12
    row["tflops_per_s"] = row["restore_tflop"] / row["restore_s"]
    return row


# -- 3. 2D engines' training step rate ------------------------------------------------------------------
def _rate(points: list[tuple[float, int]], skip: int = 3) -> float | None:
    """Steps/s between the ``skip``-th and the last (time, step) point (the first steps warm up)."""
    if len(points) < 2:
        return None
    (ta, sa), (tb, sb) = points[min(skip, len(points) - 2)], points[-1]
    return (sb - sa) / (tb - ta) if tb > ta else None


def training_rate(name: str, setup: Setup, budget: Budget) -> dict:
    """Fit ``name`` (``setup.preset_2d``) for ``setup.train_steps`` steps on synthetic planes: steps/s, per stage."""
    import volsr
    from volsr.samples import isotropic_volume

    if not budget.fits(f"training rate {name}", 10 if setup.dry else 30):
        return {"engine": name, "status": "skipped (budget)"}
    side = 64 if setup.dry else 256
    planes = isotropic_volume((8, side, side), seed=1, kind="fluo")
    eng = volsr.create_engine(name, preset=setup.preset_2d, device=setup.device)
    points: dict[str, list[tuple[float, int]]] = {}

    def progress(stage, done, total, **info):
        points.setdefault(info.get("part", "all"), []).append((time.perf_counter(), done))

    reset_peak(setup.device)
    try:
        rep = eng.fit(planes, steps=setup.train_steps, minutes=max(0.05, min(1.0, budget.left() / 60)), seed=0,
                      progress=progress, cancel=budget.cancel)
    except volsr.Cancelled:
        budget.events.append(f"training rate {name}: cancelled at the budget")
        return {"engine": name, "status": "cancelled (budget)"}
    return {"engine": name, "status": "ran", "preset": eng.cfg.preset, "crop": int(eng.cfg.crop),
            "batch": rep["batch_size"], "steps": rep["steps"], "stopped_by": rep["stopped_by"],
            "steps_per_s": rep["steps_per_second"], "peak_gib": peak_memory(setup.device),
            "steps_per_s_warm": {part: _rate(p) for part, p in points.items()}}


# -- the report -----------------------------------------------------------------------------------------
def _num(v, fmt: str = ".1f", none: str = "n/a") -> str:
    return none if v is None else format(v, fmt)


def _section_tests(t: dict) -> list[str]:
    lines = ["## 1. Tests marked `gpu`", ""]
    if t["status"] != "ran":
        return lines + [f"Not run: {t['status']}.", ""]
    lines += [f"`{t['command']}`: **{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped, "
              f"{t['errors']} errors** in {t['seconds']:.0f} s (exit code {t['returncode']}; pytest: {t['summary']})."]
    lines += [f"- failed: `{name}`" for name in t["failed_tests"]]
    lines += [f"- skipped: {reason}" for reason in t.get("skip_reasons", [])]
    return lines + [""]


def _section_restore(rows: list[dict], mm: float | None, setup: Setup) -> list[str]:
    lines = ["## 2. Real size: default fit + restore (msdsr, 4x in z)", "",
             f"bfloat16 matmul {setup.matmul_n}^3 on {setup.device}: **{_num(mm, '.4g')} TFLOP/s** (same run).", "",
             "| input | output | status | fit s | restore s | output voxels/s | peak GPU GiB fit / restore | "
             "GPU util mean / max % | restore TFLOP | TFLOP/s | / matmul |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        shape = "x".join(map(str, r["shape_in"]))
        if r["status"] != "ran":
            lines.append(f"| {shape} | | {r['status']} | | | | | | | | |")
            continue
        u = r["utilisation"]
        ratio = r["tflops_per_s"] / mm if mm else None
        lines.append(f"| {shape} | {'x'.join(map(str, r['shape_out']))} | ran | {r['fit_s']:.1f} | {r['restore_s']:.1f} "
                     f"| {r['voxels_per_s'] / 1e6:.3g} M | {_num(r['fit_peak_gib'], '.2f')} / "
                     f"{_num(r['restore_peak_gib'], '.2f')} | {_num(u and u['mean'], '.0f')} / {_num(u and u['max'], 'd')} "
                     f"| {r['restore_tflop']:.3g} | {r['tflops_per_s']:.3g} | {_num(ratio, '.3f')} |")
    lines += ["", "FLOPs: `torch.utils.flop_counter.FlopCounterMode` over a restore of 2 planes per direction of "
              "the same size (same engine, `precision='auto'`), times planes / 2; TFLOP/s: those FLOPs / the "
              "restore's wall time. GPU utilisation: `nvidia-smi` every 0.5 s from the restore's first plane to its "
              "last. Fit: " + (f"{setup.fit_steps} steps" if setup.fit_steps else
                               ", ".join(f"{m:g} min" for m in setup.fit_minutes)) + ".", ""]
    for r in rows:
        if r.get("log"):
            lines += [f"volsr's log, {'x'.join(map(str, r['shape_in']))}:", ""] + [f"    {x}" for x in r["log"]] + [""]
    return lines


def _section_training(rows: list[dict], setup: Setup) -> list[str]:
    lines = ["## 3. 2D engines: training step rate", "",
             f"Preset `{setup.preset_2d}`, synthetic fluo planes, {setup.train_steps} steps (or 1 minute) on "
             f"{setup.device}; "
             "steps/s over the whole fit and after each stage's first 3 steps (warm-up).", "",
             "| engine | status | crop | batch | steps | steps/s (fit) | steps/s warm, per stage | peak GPU GiB |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if r["status"] != "ran":
            lines.append(f"| {r['engine']} | {r['status']} | | | | | | |")
            continue
        warm = ", ".join(f"{part} {_num(v, '.2f')}" for part, v in r["steps_per_s_warm"].items())
        lines.append(f"| {r['engine']} | ran | {r['crop']} | {r['batch']} | {r['steps']} | {r['steps_per_s']:.2f} | "
                     f"{warm} | {_num(r['peak_gib'], '.2f')} |")
    return lines + [""]


def markdown(rows: dict, setup: Setup, budget: Budget, command: str) -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and not setup.dry else setup.device
    lines = ["# GPU check" + (" (dry run: tiny shapes on the CPU, not a measurement)" if setup.dry else ""), "",
             f"`{command}` on {gpu}, torch {torch.__version__}; {rows['elapsed_s']:.0f} s of the "
             f"{budget.limit / 60:g}-minute budget.", ""]
    lines += _section_tests(rows["tests"])
    lines += _section_restore(rows["restore"], rows["matmul_tflops"], setup)
    lines += _section_training(rows["training"], setup)
    lines += ["## Budget", ""] + ([f"- {e}" for e in budget.events] or ["Every part ran within the budget."])
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes, 2 steps, the CPU; no pytest, no nvidia-smi")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.md"))
    ap.add_argument("--budget-minutes", type=float, default=8.0, help="wall-time limit of the whole run (8)")
    args = ap.parse_args(argv)
    setup, budget = Setup.make(args.dry_run), Budget(args.budget_minutes)
    if not setup.dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py needs a CUDA GPU (torch.cuda.is_available() is False); try --dry-run")
    rows: dict = {"setup": {k: v for k, v in vars(setup).items()}, "restore": [], "training": []}
    rows["tests"] = {"status": "skipped (--dry-run)"} if setup.dry else gpu_tests(budget)
    rows["matmul_tflops"] = matmul_tflops(setup.device, setup.matmul_n, 3 if setup.dry else 10)
    stacks = synthetic_stacks(setup.shapes) if budget.fits("synthetic stacks", 5) else []
    restore_s = (5, 5) if setup.dry else (60, 150)  # what a restore needs at least, to be worth starting
    runs = list(zip(stacks, setup.fit_minutes, restore_s))
    if runs:
        rows["restore"].append(fit_and_restore(*runs[0][:2], setup, budget, runs[0][2]))
    rows["training"] = [training_rate(name, setup, budget) for name in ("msunet", "brainsr")]
    for stack, minutes, need in runs[1:]:  # the largest restore last: the first to go when time runs out
        rows["restore"].append(fit_and_restore(stack, minutes, setup, budget, need))
    rows["restore"] += [{"shape_in": list(s), "status": "skipped (budget)"} for s in setup.shapes[len(rows["restore"]):]]
    rows["elapsed_s"], rows["budget_events"] = budget.elapsed(), budget.events
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, setup, budget, "python benchmarks/gpu_check.py" + ("" if not argv else " " + " ".join(argv)))
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
