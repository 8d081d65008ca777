"""Where restoration time goes, and how much faster the default got (issue 13).

Not a test. Four parts, all measured in one run so the ratios share the machine's state:

1. **Matmul anchors**: a 1024^2 matrix product in float32 and bfloat16 (GFLOP/s).
2. **Network calls**: per engine network (MSDSR denoiser and stage-1 regressor, MS-UNet), FLOPs
   of one forward on a batch (``torch.utils.flop_counter``), median time, achieved GFLOP/s and
   the ratio to the same-dtype matmul; variants: float32 / bfloat16 autocast, channels-last,
   fused attention (SDPA, from 1,024 tokens), and (``--compile``) ``torch.compile`` with its compile time. On
   8 x 64x256 and on one real-sized plane (253x512, padded to 256x512), where the denoiser's
   middle-block attention has 2,048 tokens.
3. **Landed vs default**: restores alternating the landed setting (``sampling_steps=10``,
   float32) and the current default (the config's steps, ``precision='auto'``), ``--repeats``
   times each; medians and their ratio. Two stacks: ``--ratio-shape`` (64x96x96, both
   directions: small 253x96 planes) and ``--ratio-real-planes`` (64x16x512 restored along X
   only: 16 planes of 253x512, the planes of a 64x512x512 stack in both directions, so its
   ratio is the real-size one at a 64th of the cost). A profile of one restore splits the
   time into network forwards, the rest of the engine (sampler arithmetic, padding, copies),
   and the volume pipeline (slicing, pasting, fusion).
4. **Real size**: ``volsr.restore`` of a ``--shape`` stack (64x512x512 -> 253x512x512) with every
   default (the 4-minute self-supervised fit, then the restore) in a child process: minutes,
   output voxels/s, peak RSS, and the time to write and read the result as TIFF.

Untrained (randomly perturbed) weights: time does not depend on the values. Quality at each
step count is measured by ``bench_quality.py`` (see ``results/results_steps.md``).

    python benchmarks/bench_speed.py                                  # full run (~30 min on 2 cores)
    python benchmarks/bench_speed.py --shape 16,64,64 --ratio-shape 16,32,32 --ratio-real-planes 16,4,64 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from volsr.engines import create_engine
from volsr.grid import OutputGrid
from volsr.pipeline.volume import restore_volume
from volsr.runtime import concurrency
from volsr.runtime.concurrency import run_side_by_side
from volsr.runtime.precision import fused_attention, inference_context, resolve_precision

FACTOR = 4
LANDED = {"sampling_steps": 10, "precision": "float32"}


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 7) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def _perturbed(eng):
    """Untrained residual networks output exactly 0; give them weights that do something."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in eng.ema.parameters():
            p.add_(0.02 * torch.randn_like(p))
    eng.trained = True
    return eng


def _networks(eng) -> dict:
    """name -> (module, example input builder) for the networks one restore calls."""
    net = eng.ema
    if eng.name == "msdsr":
        den = net["denoiser"] if eng.cfg.two_stage else net
        out = {"msdsr denoiser": (den, lambda b, h, w: (torch.randn(b, den.conv_in.conv.in_channels, h, w),
                                                        torch.full((b,), 500, dtype=torch.long)))}
        if eng.cfg.two_stage:
            reg = net["regressor"]
            out["msdsr regressor"] = (reg, lambda b, h, w: (torch.randn(b, reg.conv_0.conv_0.conv.in_channels, h, w),))
        return out
    return {f"{eng.name} unet": (net, lambda b, h, w: (torch.randn(b, net.conv_0.conv_0.conv.in_channels, h, w),))}


def _call(module, args):
    return module(args[0], timesteps=args[1]) if len(args) == 2 else module(args[0])


def network_call(label, module, make, batch, h, w, precision, repeats, *, channels_last=False, compile_=False,
                 side_by_side=False, fused=False) -> dict:
    """FLOPs and median time of one forward on (batch, C, h, w); ``side_by_side``: its two halves as
    two calls at once, one thread each (:mod:`volsr.runtime.concurrency`); ``fused``: self-attention through
    SDPA (:func:`volsr.runtime.precision.fused_attention`, what ``precision='auto'`` does)."""
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    args = make(batch, h, w)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    with inference_context(torch.device("cpu"), precision), FlopCounterMode(display=False) as fc:
        _call(module, args)
    compile_s = None
    if compile_:
        t0 = time.perf_counter()
        module = torch.compile(module)
        with inference_context(torch.device("cpu"), precision):
            _call(module, args)
        compile_s = time.perf_counter() - t0
    def once():
        if not side_by_side:
            return _call(module, args)
        halves = [tuple(a[i:i + batch // 2] for a in args) for i in (0, batch // 2)]
        return run_side_by_side(lambda part: _call(module, part), halves, 2)

    times = []
    with inference_context(torch.device("cpu"), precision), fused_attention(module if fused else None):
        once()
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    if channels_last:
        module.to(memory_format=torch.contiguous_format)
    sec = statistics.median(times)
    variant = precision + (" channels-last" if channels_last else "") + (" fused attention" if fused else "") \
        + (" compiled" if compile_ else "") + (", 2 halves side by side" if side_by_side else "")
    return {"network": label, "variant": variant, "precision": precision, "batch": [batch, h, w],
            "gflop": fc.get_total_flops() / 1e9, "seconds": sec, "gflops_per_s": fc.get_total_flops() / sec / 1e9,
            "compile_s": compile_s}


OP_GROUPS = (("convolution", ("conv",)),
             ("matmul / attention", ("mm", "linear", "attention", "bmm", "baddbmm", "softmax")),
             ("group norm", ("group_norm", "native_group_norm")), ("activation (SiLU)", ("silu",)),
             ("add / mul / copy / pad", ("add", "mul", "copy", "pad", "cat", "to", "clone", "contiguous")))


def op_profile(module, make, batch, h, w, precision, fused=False, channels_last=False) -> dict:
    """Self CPU time of one forward by operator group (torch.profiler): where the time goes."""
    module.eval()
    args = make(batch, h, w)
    if channels_last:  # by hand: inference_context(..., network) would also fuse the attention
        module.to(memory_format=torch.channels_last)
        args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    with inference_context(torch.device("cpu"), precision), fused_attention(module if fused else None):
        _call(module, args)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            _call(module, args)
    groups = {name: 0.0 for name, _ in OP_GROUPS}
    groups["other"] = 0.0
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        op = ev.key[len("aten::"):]
        name = next((g for g, keys in OP_GROUPS if any(k in op for k in keys)), "other")
        groups[name] += ev.self_cpu_time_total / 1e6
    total = sum(groups.values())
    if channels_last:
        module.to(memory_format=torch.contiguous_format)
    variant = precision + (" channels-last" if channels_last else "") + (" fused attention" if fused else "")
    return {"precision": variant, "batch": [batch, h, w], "total_s": total,
            "share": {k: v / total for k, v in groups.items()}}


class _Timer:
    """Wall time spent inside the engine's networks' forwards and inside ``engine.restore``."""

    def __init__(self, eng):
        self.network = self.engine = 0.0
        self._hooks = []
        for module, _ in _networks(eng).values():
            self._hooks.append(module.register_forward_pre_hook(self._start))
            self._hooks.append(module.register_forward_hook(self._stop))
        self._orig, self._eng = eng._restore, eng

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return self._orig(*a, **k)
            finally:
                self.engine += time.perf_counter() - t0
        eng._restore = timed

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self.network += time.perf_counter() - self._t0

    def close(self):
        for h in self._hooks:
            h.remove()
        self._eng._restore = self._orig


def restore_once(eng, vol, setting: dict, *, profile: bool = False, planes: str = "both") -> dict:
    grid = OutputGrid(vol.shape[1], FACTOR)
    timer = _Timer(eng) if profile else None
    workers = concurrency.MAX_WORKERS
    concurrency.MAX_WORKERS = 1 if setting.get("one_at_a_time") else workers  # the previous default
    t0 = time.perf_counter()
    try:
        out = restore_volume(vol, grid, eng, seed=0, precision=setting["precision"], planes=planes,
                             sampling_steps=setting["sampling_steps"]).data
    finally:
        concurrency.MAX_WORKERS = workers
    wall = time.perf_counter() - t0
    row = {"seconds": wall, "voxels_per_s": out.size / wall}
    if timer is not None:
        timer.close()
        row.update(network_s=timer.network, engine_other_s=timer.engine - timer.network,
                   pipeline_s=wall - timer.engine)
    return row


def landed_vs_default(shape, repeats: int, planes: str = "both") -> dict:
    eng = _perturbed(create_engine("msdsr"))
    default = {"sampling_steps": int(eng.cfg.sampling_steps), "precision": "auto"}
    one_at_a_time = {**default, "one_at_a_time": True}
    vol = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    restore_once(eng, vol[:, :, :16, :16], default)  # warm-up (first-call allocations)
    runs = {"landed": [], "default": [], "one_at_a_time": []}
    for _ in range(repeats):  # alternate, so drift on a shared machine hits all alike
        for name, setting in (("landed", LANDED), ("default", default), ("one_at_a_time", one_at_a_time)):
            runs[name].append(restore_once(eng, vol, setting, planes=planes)["seconds"])
    prof = restore_once(eng, vol, one_at_a_time, profile=True, planes=planes)  # side by side, calls overlap
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"shape_in": list(shape), "planes": planes, "preset": eng.cfg.preset, "default": default, "one_at_a_time": one_at_a_time,
            "side_by_side_gain": med["one_at_a_time"] / med["default"],
            "resolved_precision": resolve_precision("auto", torch.device("cpu")), "landed": LANDED,
            "seconds": runs, "median_s": med, "speedup": med["landed"] / med["default"], "profile": prof}


def real_size(shape) -> dict:
    """``volsr.restore`` of a ``shape`` stack with every default (4-minute fit, then restore), in a
    child process (its own peak RSS), plus the time to write and read it as TIFF."""
    code = f"""
import json, os, resource, tempfile, time, tifffile
import volsr
from volsr.samples import isotropic_volume
vol = isotropic_volume({tuple(shape)!r}, seed=0, kind="fluo", dtype="uint16")
res = volsr.restore(vol, z_factor={FACTOR})
row = {{k: float(v) for k, v in res.timings.items()}}
row["out_shape"] = list(res.data.shape)
d = tempfile.mkdtemp()
t0 = time.perf_counter(); tifffile.imwrite(os.path.join(d, "a.tif"), res.data); tifffile.imread(os.path.join(d, "a.tif"))
row["tiff_io_s"] = time.perf_counter() - t0
row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(row))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"real-size run failed:\n{res.stderr[-3000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    n_out = int(np.prod(row["out_shape"]))
    return {"shape_in": list(shape), **row, "voxels_per_s": n_out / row["restore_s"]}


def markdown(rows: dict, command: str) -> str:
    mm = rows["matmul_gflops"]
    lines = [f"`{command}`", "", f"matmul 1024^2: float32 {mm['float32']:.1f} GFLOP/s, "
             f"bfloat16 {mm['bfloat16']:.1f} GFLOP/s (same run)", "",
             "| network | variant | batch (N,H,W) | GFLOP | s | GFLOP/s | / matmul | compile s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for c in rows["calls"]:
        cs = "" if c["compile_s"] is None else f"{c['compile_s']:.1f}"
        lines.append(f"| {c['network']} | {c['variant']} | {c['batch']} | {c['gflop']:.2f} | {c['seconds']:.3f} | "
                     f"{c['gflops_per_s']:.1f} | {c['gflops_per_s'] / mm[c['precision']]:.2f} | {cs} |")
    lines += ["", "Where one msdsr denoiser forward spends its time, by operator group (torch.profiler, "
              "self CPU time):", "", "| batch (N,H,W) | precision | " + " | ".join(rows["op_profile"][0]["share"]) + " |",
              "|---|---|" + "---:|" * len(rows["op_profile"][0]["share"])]
    for op in rows["op_profile"]:
        lines.append(f"| {op['batch']} | {op['precision']} | "
                     + " | ".join(f"{v:.0%}" for v in op["share"].values()) + " |")
    for r in rows["ratios"]:
        lines += _ratio_lines(r)
    if rows.get("real"):
        q = rows["real"]
        total = q["fit_s"] + q["restore_s"]
        lines += ["", f"Real size, `volsr.restore` with every default (self-supervised fit, then restore): "
                  f"{q['shape_in']} -> {q['out_shape']}: fit {q['fit_s'] / 60:.1f} min + restore "
                  f"{q['restore_s'] / 60:.1f} min = **{total / 60:.1f} min**; restore {q['voxels_per_s'] / 1e3:.0f} k "
                  f"output voxels/s; peak RSS {q['peak_rss_gib']:.2f} GiB; TIFF write+read of the output "
                  f"{q['tiff_io_s']:.1f} s."]
    return "\n".join(lines) + "\n"


def _ratio_lines(r: dict) -> list[str]:
    p = r["profile"]
    planes = "both directions" if r["planes"] == "both" else f"{r['planes'].upper()} planes only"
    lines = ["", f"Landed vs default, msdsr (preset {r['preset']}), input {r['shape_in']} -> 4x z, {planes}, "
             f"{len(r['seconds']['landed'])} alternating runs each:", "",
             "| setting | steps | precision | median s | runs s |", "|---|---:|---|---:|---|"]
    for k, s in (("landed", r["landed"]), ("default", r["default"]), ("one_at_a_time", r["one_at_a_time"])):
        prec = s["precision"] if s["precision"] != "auto" else f"auto ({r['resolved_precision']})"
        lines.append(f"| {k} | {s['sampling_steps']} | {prec} | {r['median_s'][k]:.1f} | "
                     f"{', '.join(f'{v:.1f}' for v in r['seconds'][k])} |")
    lines += ["", f"**Speed-up (median landed / median default): {r['speedup']:.2f}x**; running the sampler's "
              f"chunks side by side (default vs one_at_a_time): {r['side_by_side_gain']:.2f}x", "",
              f"Profile of one restore with chunks one at a time ({p['seconds']:.1f} s): network forwards "
              f"{p['network_s']:.1f} s ({p['network_s'] / p['seconds']:.0%}), rest of the engine "
              f"{p['engine_other_s']:.1f} s ({p['engine_other_s'] / p['seconds']:.0%}), volume pipeline (slicing, "
              f"pasting, fusion) {p['pipeline_s']:.1f} s ({p['pipeline_s'] / p['seconds']:.0%})."]
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="64,512,512", help="real-size input stack Z,Y,X (restored 4x in z); "
                    "'none' skips it")
    ap.add_argument("--ratio-shape", default="64,96,96", help="stack for the landed-vs-default ratio (both directions)")
    ap.add_argument("--ratio-real-planes", default="64,16,512",
                    help="stack for the ratio at real plane size, restored along X only; 'none' skips it")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd forwards")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "results_speed.md"))
    args = ap.parse_args(argv)
    shape = None if args.shape == "none" else [int(v) for v in args.shape.split(",")]
    rows = {"matmul_gflops": {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)},
            "calls": []}
    for name in ("msdsr", "msunet"):
        eng = _perturbed(create_engine(name))
        for label, (module, make) in _networks(eng).items():
            for prec in ("float32", "bfloat16"):
                for cl in (False, True):
                    rows["calls"].append(network_call(label, module, make, 8, 64, 256, prec, args.repeats,
                                                      channels_last=cl))
                if label == "msdsr denoiser" and prec == "bfloat16":  # what the default restore does
                    rows["calls"].append(network_call(label, module, make, 8, 64, 256, prec, args.repeats,
                                                      channels_last=True, side_by_side=True))
                    # one real-sized plane: 2,048 tokens at the bottom, where the fused attention pays
                    for fused, side in ((False, False), (True, False), (True, True)):
                        rows["calls"].append(network_call(label, module, make, 2, 256, 512, prec, args.repeats,
                                                          channels_last=True, fused=fused, side_by_side=side))
                if args.compile and label == "msdsr denoiser":  # the hot network; compiles take minutes
                    rows["calls"].append(network_call(label, module, make, 8, 64, 256, prec, args.repeats,
                                                      compile_=True))
    eng = _perturbed(create_engine("msdsr"))
    module, make = _networks(eng)["msdsr denoiser"]
    rows["op_profile"] = [op_profile(module, make, 8, 64, 256, prec) for prec in ("float32", "bfloat16")]
    rows["op_profile"] += [op_profile(module, make, 1, 256, 512, "bfloat16", fused=f, channels_last=True)
                           for f in (False, True)]
    rows["ratios"] = [landed_vs_default([int(v) for v in args.ratio_shape.split(",")], args.repeats)]
    if args.ratio_real_planes != "none":
        rows["ratios"].append(landed_vs_default([int(v) for v in args.ratio_real_planes.split(",")], args.repeats,
                                                planes="xz"))
    rows["real"] = real_size(shape) if shape else None
    rows["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    text = markdown(rows, "python benchmarks/bench_speed.py" + ("" if not argv else " " + " ".join(argv)))
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    print(text)
    return 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        raise SystemExit(main())
