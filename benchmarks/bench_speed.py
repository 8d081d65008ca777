"""Where restoration time goes: network FLOPs and achieved rate vs matmul, throughput, precision.

For each engine / preset: FLOPs of one network call on a batch (``torch.utils.flop_counter``),
its time, achieved GFLOP/s and the ratio to a plain matrix multiply of the same dtype measured
in the same run (float32 and bfloat16); then restore throughput (output voxels per second) of a
whole stack through ``volsr.volume.restore_volume`` in float32 and bfloat16, the PSNR between the
two, the share of time spent inside the network (torch profiler) and the peak RSS.
Untrained weights: timing does not depend on the values.

    python benchmarks/bench_speed.py --shape 16,256,256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from volsr.engines import create_engine
from volsr.precision import inference_context
from volsr.sampling import OutputGrid
from volsr.volume import restore_volume

FACTOR = 4


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def network_call(name: str, preset: str, batch: int, h: int, w: int, precision: str, repeats: int) -> dict:
    """FLOPs and time of one denoiser / UNet forward on (batch, C, h, w)."""
    from torch.utils.flop_counter import FlopCounterMode

    eng = create_engine(name, preset=preset)
    if name == "msdsr":
        net = eng.network["denoiser"] if eng.cfg.two_stage else eng.network
        x = torch.randn(batch, net.conv_in.conv.in_channels, h, w)
        t = torch.full((batch,), 500, dtype=torch.long)

        def call():
            return net(x, timesteps=t)
    else:
        net = eng.network
        x = torch.randn(batch, net.conv_0.conv_0.conv.in_channels, h, w)

        def call():
            return net(x)
    net.eval()
    with inference_context(torch.device("cpu"), precision):
        with FlopCounterMode(display=False) as fc:
            call()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return {"engine": name, "preset": preset, "precision": precision, "batch": [batch, h, w],
            "gflop": fc.get_total_flops() / 1e9, "seconds": sec, "gflops_per_s": fc.get_total_flops() / sec / 1e9}


def restore_run(name: str, preset: str, shape, precision: str, steps: int) -> tuple[dict, np.ndarray]:
    eng = create_engine(name, preset=preset, **({"sampling_steps": steps} if name == "msdsr" else {}))
    eng.trained = True
    torch.manual_seed(0)
    with torch.no_grad():  # untrained residual nets output exactly 0: give them weights that do something
        for p in eng.ema.parameters():
            p.add_(0.02 * torch.randn_like(p))
    vol = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    grid = OutputGrid(shape[0], FACTOR)
    prof_net = 0.0
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = restore_volume(vol, grid, eng, seed=0, precision=precision).data
    wall = time.perf_counter() - t0
    for ev in prof.key_averages():
        if ev.key.startswith("aten::") and any(k in ev.key for k in ("conv", "mm", "linear", "attention")):
            prof_net += ev.self_cpu_time_total / 1e6
    n_vox = out.size
    return {"engine": name, "preset": preset, "precision": precision, "shape_in": list(shape),
            "seconds": wall, "voxels_per_s": n_vox / wall, "conv_matmul_share": prof_net / wall}, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="16,128,128", help="input stack Z,Y,X (restored 4x in z)")
    ap.add_argument("--engines", default="msdsr:small,msunet:small")
    ap.add_argument("--steps", type=int, default=10, help="MSDSR sampling steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_speed.md")))
    args = ap.parse_args(argv)
    shape = [int(v) for v in args.shape.split(",")]
    rows = {"matmul_gflops": {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)},
            "calls": [], "restores": []}
    for spec in args.engines.split(","):
        name, preset = spec.split(":")
        for prec in ("float32", "bfloat16"):
            rows["calls"].append(network_call(name, preset, 4, 64, 256, prec, args.repeats))
        outs = {}
        for prec in ("float32", "bfloat16"):
            r, outs[prec] = restore_run(name, preset, shape, prec, args.steps)
            rows["restores"].append(r)
        mse = float(np.mean((outs["float32"] - outs["bfloat16"]) ** 2))
        rows["restores"][-1]["psnr_vs_float32"] = 10 * np.log10(1.0 / max(mse, 1e-20))
    rows["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    mm = rows["matmul_gflops"]
    lines = [f"`python benchmarks/bench_speed.py {' '.join(argv or sys.argv[1:])}`", "",
             f"matmul 1024^2: float32 {mm['float32']:.1f} GFLOP/s, bfloat16 {mm['bfloat16']:.1f} GFLOP/s", "",
             "| engine | preset | precision | batch (N,H,W) | GFLOP | s | GFLOP/s | / matmul |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for c in rows["calls"]:
        lines.append(f"| {c['engine']} | {c['preset']} | {c['precision']} | {c['batch']} | {c['gflop']:.2f} | "
                     f"{c['seconds']:.3f} | {c['gflops_per_s']:.1f} | {c['gflops_per_s'] / mm[c['precision']]:.2f} |")
    lines += ["", "| engine | precision | input | s | output voxels/s | conv+matmul share | PSNR vs float32 |",
              "|---|---|---|---:|---:|---:|---:|"]
    for r in rows["restores"]:
        ps = r.get("psnr_vs_float32")
        lines.append(f"| {r['engine']}:{r['preset']} | {r['precision']} | {r['shape_in']} | {r['seconds']:.1f} | "
                     f"{r['voxels_per_s']:.0f} | {r['conv_matmul_share']:.2f} | {'' if ps is None else f'{ps:.1f} dB'} |")
    lines.append(f"\npeak RSS {rows['peak_rss_gib']:.2f} GiB")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
