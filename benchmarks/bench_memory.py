"""Benchmark: peak host memory of one inference forward pass per input pixel (CPU).

Not a test. Justifies the activation-memory estimates of :mod:`volsr.runtime.hardware` and the
engines' ``bytes_per_pixel``: for each network (MSDSR's DiffusionModelUNet presets, the
BasicUNet presets of MS-UNet / MSDSR's stage 1) a fresh subprocess builds the network, runs a
warm-up forward on one 32x32 plane, then one forward under ``torch.inference_mode`` on a
batch of ``--batch`` planes of ``--side`` x ``--side``; the peak RSS growth of that forward
(``ru_maxrss``), divided by the input pixels, is the measured bytes per pixel. Next to it the
estimate volsr plans with (:func:`volsr.engines.msdsr.denoiser_bytes_per_pixel`,
:func:`volsr.engines.unet_common.basic_unet_bytes_per_pixel`, both from
:func:`volsr.runtime.hardware.unet_bytes_per_pixel`). RSS growth is coarse (allocator caching,
oneDNN scratch space), which is why the estimate keeps a margin.

Usage::

    python benchmarks/bench_memory.py --side 256 --batch 4 --paper > benchmarks/results/results_memory.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROBE = r"""
import json, resource, sys, torch
kind, preset, side, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
if kind == "diffusion":
    from volsr.models.diffusion_unet import build_diffusion_unet
    net = build_diffusion_unet(preset, channels=1, mask_channel=True, condition_channels=1).eval()
    run = lambda x: net(x, timesteps=torch.full((x.shape[0],), 500))
    cin = 3
else:
    from volsr.engines.unet_common import UNET_PRESETS, build_basic_unet
    net = build_basic_unet(2, 1, UNET_PRESETS[preset]["features"]).eval()
    run, cin = net, 2
with torch.inference_mode():
    run(torch.rand(1, cin, 32, 32))
    x = torch.rand(batch, cin, side, side)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(x)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes_per_pixel": (after - before) * 1024 / (batch * side * side)}))
"""

NETS = [("diffusion", "tiny"), ("diffusion", "small"), ("basic", "tiny"), ("basic", "small"), ("basic", "paper")]


def measure(kind: str, preset: str, side: int, batch: int) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, kind, preset, str(side), str(batch)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["bytes_per_pixel"]


def estimate(kind: str, preset: str, side: int) -> float:
    """What volsr plans with: the engines' ``bytes_per_pixel`` for the same network and plane size."""
    from volsr.engines.msdsr import denoiser_bytes_per_pixel
    from volsr.engines.unet_common import UNET_PRESETS, basic_unet_bytes_per_pixel

    if kind == "diffusion":
        return denoiser_bytes_per_pixel(preset, side, side)
    return basic_unet_bytes_per_pixel(UNET_PRESETS[preset]["features"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--paper", action="store_true",
                    help="also the 274M-parameter diffusion preset (1 plane of 64x64 and of 128x128; ~1 min each)")
    args = ap.parse_args()
    runs = [(kind, preset, args.side, args.batch) for kind, preset in NETS]
    runs += [("diffusion", "small", side, args.batch) for side in (64, 128)]
    if args.paper:
        runs += [("diffusion", "paper", 64, 1), ("diffusion", "paper", 128, 1)]
    print("Peak RSS growth of one float32 CPU forward under torch.inference_mode (1 thread), per input pixel;")
    print("the estimate is what volsr plans batches with (`bytes_per_pixel` of the engines).\n")
    print("| network | preset | planes | measured B/px | estimate B/px | estimate / measured |")
    print("|---|---|---|---:|---:|---:|")
    for kind, preset, side, batch in runs:
        m = measure(kind, preset, side, batch)
        e = estimate(kind, preset, side)
        print(f"| {kind} | {preset} | {batch} x {side}x{side} | {m:.0f} | {e:.0f} | {e / m:.2f} |", flush=True)


if __name__ == "__main__":
    main()
