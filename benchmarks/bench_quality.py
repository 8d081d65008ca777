"""Benchmark: restoration quality per synthetic kind, clean and acquisition-like (issue 11, item 5).

Not a test. For each kind (default: the clean ``cells``, ``fibers``, ``texture`` and the
acquisition-like ``fluo``, ``mri``, ``em`` of :mod:`volsr.samples`), generate an isotropic
float32 volume (``--shape``, default 64x256x256, ``--seed``), keep every 4th z plane
(:func:`volsr.samples.subsample_z`), restore it with each engine through the public API
(:func:`volsr.restore`, ``z_factor=4``, ``output_dtype='float32'``; learned engines fit
self-supervised on the input's XY planes for ``--fit-minutes``), and score it against the
ground truth, the first ``(Z_in - 1) * 4 + 1`` planes of the isotropic volume.

Scores (all in the ground truth's units: no re-normalisation, so every engine is scored on
the same scale)

* **PSNR** over the restored (non-measured) planes only (:func:`volsr.metrics.psnr`), with
  ``data_range`` = the ground truth's ``max - min`` (over the scored planes).
* **SSIM** of XZ slices over the restored rows only (:func:`volsr.metrics.paired_metrics`,
  Wang et al. Gaussian-window settings, same ``data_range``); YZ goes to the JSON.
* **Spectrum error**: RMS distance (decades) between the mean log radial power spectra of
  XZ tiles of the result and of the ground truth (:func:`volsr.metrics.spectrum_error`);
  texture, not pixel fidelity. Whole XZ slices, so measured rows are included.
* **SliceFID** (:func:`volsr.metrics.slice_fid`, ``features='lowlevel'``): mean of the
  Frechet distances of XY, XZ and YZ crops of the result to crops of the ground truth's XY
  planes, intensities mapped with the fixed window [truth min, truth max]. Crops are
  ``min(48, restored z extent)`` px; the lowlevel features need >= 24 px, so volumes with a
  shallower restored z extent report ``n/a``. Not comparable with published (Inception) FID.
* **fit s / restore s**: from :attr:`volsr.RestoreResult.timings` (``fit_s`` includes
  normalisation and engine set-up, i.e. about 0 for interpolation engines).

A ``ground truth`` row scores the truth itself: its SliceFID is the floor (for ``fluo`` it is
not small: its XZ slices are blurrier than XY, by the anisotropic PSF); its PSNR is inf.

For the acquisition-like kinds the truth planes carry PSF and noise (see
:mod:`volsr.samples`), as on real data, so PSNR has a ceiling no engine can pass.

Engine specs: ``NAME`` or ``NAME:KEY=VALUE[:KEY=VALUE...]``; each ``KEY`` must be a keyword
of :func:`volsr.restore` (e.g. ``msdsr:sampling_steps=20:fusion=median``,
``msdsr:engine_options={"preset":"small"}``). Values are read as JSON when they parse
(numbers, true/false/null, objects), else as strings; ``{kind}`` in a string value is replaced
by the kind, so a spec can reuse per-kind model files saved by an earlier run
(``msdsr:model=models/{kind}/msdsr.volsr:sampling_steps=2``: no fit, ``fit s`` is 0) -
``--save-models models`` keeps them in that layout.

Usage::

    python benchmarks/bench_quality.py                       # all kinds, linear,cubic,msunet,msdsr
    python benchmarks/bench_quality.py --kinds fluo,em --engines linear,cubic --shape 16,64,64 --out /tmp/q.md

Writes ``--out`` (Markdown, default ``benchmarks/results/results_quality.md``) and the same name with
``.json``; the Markdown also goes to stdout.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import shlex
import sys
import time
from pathlib import Path

DEFAULT_KINDS = ("cells", "fibers", "texture", "fluo", "mri", "em")
DEFAULT_ENGINES = "linear,cubic,msunet,msdsr"
FACTOR = 4
# set by this script; a spec may not override them
RESERVED = ("source", "engine", "z_factor", "output_dtype")
CALLBACKS = ("progress", "cancel")  # functions: not settable from a command line


def split_specs(text: str) -> list[str]:
    """Split the ``--engines`` list on commas that are not inside {...} or [...]."""
    specs, depth, cur = [], 0, []
    for ch in text:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            specs.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    specs.append("".join(cur))
    return [s.strip() for s in specs if s.strip()]


def parse_spec(spec: str) -> tuple[str, dict]:
    """``'msdsr:sampling_steps=20'`` -> ``('msdsr', {'sampling_steps': 20})``; checks names."""
    import volsr
    from volsr.engines import list_engines

    name, *parts = spec.split(":")
    name = name.strip()
    engines = list_engines()
    if name not in engines:
        raise SystemExit(f"engine spec {spec!r}: unknown engine {name!r}; available: {', '.join(engines)}")
    accepted = [p for p in inspect.signature(volsr.restore).parameters if p not in RESERVED + CALLBACKS]
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SystemExit(f"engine spec {spec!r}: option {part!r} is not KEY=VALUE")
        if key not in accepted:
            raise SystemExit(
                f"engine spec {spec!r}: volsr.restore() has no keyword {key!r}"
                + (" (set by this script)" if key in RESERVED else "")
                + (" (a callback, not settable here)" if key in CALLBACKS else "")
                + f"; accepted: {', '.join(accepted)}"
            )
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def _json_safe(obj):
    """inf / NaN -> None (strict JSON has neither; the ground truth's PSNR is inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def score(restored, truth, known, *, data_range, ref, n_crops, seed) -> dict:
    """PSNR (restored planes), SSIM (XZ and YZ, restored rows), spectrum error (XZ), SliceFID."""
    from volsr.metrics import paired_metrics, psnr, slice_fid, spectrum_error

    row = {"psnr": psnr(restored, truth, data_range=data_range, mask=~known[:, None, None])}
    for m in paired_metrics(restored, truth, known, data_range=data_range, axes=("xz", "yz")):
        if m["rows"] == "restored":
            row[f"ssim_{m['axis']}"] = float(m["ssim"])
    row["spectrum_error_xz"] = float(spectrum_error(restored, truth, axis="xz", seed=seed))
    if ref is not None:
        fid = slice_fid(restored, ref, n_crops=n_crops, seed=seed)
        row.update({"slice_fid": fid.slice_fid, "fid_xy": fid.fid_xy, "fid_xz": fid.fid_xz, "fid_yz": fid.fid_yz})
    else:
        row["slice_fid"] = None
    return row


#: volsr.restore keywords that act at restoration time: specs differing only in these share one fit.
RESTORE_TIME_OPTIONS = frozenset({"realism", "noise_match", "sampling_steps", "n_samples", "planes", "fusion",
                                  "blur_sigma", "batch_size"})


def run_kind(kind: str, specs: list[tuple[str, str, dict]], args) -> dict:
    import numpy as np

    import volsr
    from volsr.engines import get_engine_class
    from volsr.grid import OutputGrid
    from volsr.metrics import reference_stats
    from volsr.samples import isotropic_volume, subsample_z

    shape = tuple(args.shape)
    t0 = time.perf_counter()
    gt = isotropic_volume(shape, seed=args.seed, kind=kind, dtype="float32")
    gen_s = time.perf_counter() - t0
    low = subsample_z(gt, FACTOR)
    grid = OutputGrid(low.shape[0], FACTOR)
    truth = gt[: grid.n_out]
    known = np.asarray(grid.known_mask, dtype=bool)
    lo, hi = float(truth.min()), float(truth.max())
    data_range = hi - lo
    crop = min(48, grid.n_out, shape[1], shape[2])
    ref, fid_note = None, None
    if crop >= 24:
        ref = reference_stats(list(truth), extractor="lowlevel", crop=crop, n_crops=args.n_crops, seed=args.seed,
                              intensity=(lo, hi))
    else:
        fid_note = f"restored z extent {grid.n_out} < 24 px (lowlevel features need 24x24 crops)"
    out = {"kind": kind, "truth_shape": list(truth.shape), "input_shape": list(low.shape), "generate_s": gen_s,
           "data_range": data_range, "truth_min": lo, "truth_max": hi, "fid_crop": crop if ref else None,
           "slice_fid_note": fid_note, "rows": []}
    kw = dict(data_range=data_range, ref=ref, n_crops=args.n_crops, seed=args.seed)
    gt_row = {"engine": "ground truth", **score(truth, truth, known, **kw), "fit_s": None, "restore_s": None}
    out["rows"].append(gt_row)
    import tempfile

    fitted: dict[str, str] = {}  # one fit per (engine, fit settings): restore-time options reuse it
    tmp = tempfile.mkdtemp(prefix="bench_quality_") if args.save_models is None else Path(args.save_models) / kind
    Path(tmp).mkdir(parents=True, exist_ok=True)
    for label, name, options in specs:
        print(f"# {kind}: {label} ...", file=sys.stderr, flush=True)
        options = {k: v.replace("{kind}", kind) if isinstance(v, str) else v for k, v in options.items()}
        fit_opts = {k: v for k, v in options.items() if k not in RESTORE_TIME_OPTIONS}
        key = json.dumps([name, fit_opts], sort_keys=True, default=str)
        call = {"engine": name, "z_factor": FACTOR, "seed": args.seed, "fit_minutes": args.fit_minutes,
                "output_dtype": "float32", "device": args.device, **options}
        if key in fitted:
            call = {k: v for k, v in call.items() if k not in ("fit_minutes", "engine_options")}
            call["model"] = fitted[key]
        elif get_engine_class(name).capabilities.learned and "model" not in options:
            same = sum(json.loads(k)[0] == name for k in fitted)  # a second fit of one engine: name-1.volsr
            call["model_out"] = str(Path(tmp) / f"{name}{f'-{same}' if same else ''}.volsr")
        row = {"engine": label + (" (same fit)" if "model" in call and "model" not in options else "")}
        try:
            res = volsr.restore(low, **call)
        except Exception as exc:  # one failing engine should not lose the others' numbers
            row["error"] = f"{type(exc).__name__}: {exc}"
            out["rows"].append(row)
            continue
        if res.data.shape != truth.shape:
            row["error"] = f"restored shape {res.data.shape} != truth {truth.shape}"
            out["rows"].append(row)
            continue
        if "model_out" in call:
            fitted[key] = call["model_out"]
        row.update(score(res.data, truth, known, **kw))
        row["fit_s"] = float(res.timings.get("fit_s", float("nan")))
        row["restore_s"] = float(res.timings.get("restore_s", float("nan")))
        report = getattr(res.engine, "provenance", {}).get("fit_report", {})
        if "steps" in report:
            row["fit_steps"] = int(report["steps"])
        out["rows"].append(row)
    return out


def _fmt(v, digits: int) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return str(v)


def markdown(results: list[dict], command: str, args) -> str:
    lines = [
        "# Restoration quality per synthetic kind",
        "",
        "```",
        command,
        "```",
        "",
        f"Isotropic float32 volumes {'x'.join(map(str, args.shape))} (`volsr.samples.isotropic_volume`, seed "
        f"{args.seed}), every {FACTOR}th z plane kept, restored with `volsr.restore(..., z_factor={FACTOR}, "
        f"fit_minutes={args.fit_minutes:g}, output_dtype='float32')`. PSNR over restored planes only, "
        "data range = truth max - min; SSIM over restored rows of XZ slices; spectrum error = RMS of mean log "
        "radial XZ spectra vs truth (decades); SliceFID with `features='lowlevel'` against the truth's XY "
        "planes (not comparable with Inception FID). Acquisition-like kinds (fluo, mri, em) carry PSF and "
        "noise in the truth planes too, so PSNR has a ceiling. See `benchmarks/bench_quality.py`.",
    ]
    cols = [("psnr", 2), ("ssim_xz", 3), ("spectrum_error_xz", 3), ("slice_fid", 3), ("fit_s", 1),
            ("restore_s", 1)]
    header = "| engine | PSNR dB | SSIM XZ | spectrum error | SliceFID | fit s | restore s |"
    for res in results:
        lines += ["", f"## {res['kind']}", "",
                  f"truth {'x'.join(map(str, res['truth_shape']))}, input {'x'.join(map(str, res['input_shape']))}, "
                  f"data range {res['data_range']:.3f}"
                  + (f"; SliceFID n/a: {res['slice_fid_note']}" if res["slice_fid_note"] else ""), "",
                  header, "|---|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            if "error" in r:
                lines.append(f"| {r['engine']} | error: {r['error']} | | | | | |")
                continue
            lines.append(f"| {r['engine']} | " + " | ".join(_fmt(r.get(c), d) for c, d in cols) + " |")
    return "\n".join(lines) + "\n"


def _shape(text: str) -> list[int]:
    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be Z,Y,X integers, got {text!r}") from None
    if len(shape) != 3 or shape[0] < 2 * FACTOR or min(shape[1:]) < 16:
        raise argparse.ArgumentTypeError(f"shape must be Z,Y,X with Z >= {2 * FACTOR} and Y, X >= 16, got {text!r}")
    return shape


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="comma-separated volsr.samples kinds")
    ap.add_argument("--engines", default=DEFAULT_ENGINES,
                    help="comma-separated engine specs NAME[:KEY=VALUE...] (KEY: a volsr.restore keyword)")
    ap.add_argument("--fit-minutes", type=float, default=4.0, help="self-supervised fit budget per learned engine")
    ap.add_argument("--shape", type=_shape, default=[64, 256, 256], help="isotropic volume Z,Y,X")
    ap.add_argument("--seed", type=int, default=0, help="volume and restore seed")
    ap.add_argument("--n-crops", type=int, default=1000, help="SliceFID crops per set")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--save-models", metavar="DIR", help="keep each fit as DIR/<kind>/<engine>.volsr (reuse them "
                    "with model=DIR/{kind}/<engine>.volsr in a spec); default: a temporary folder")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "results_quality.md"),
                    help="Markdown output; the JSON goes next to it (.json)")
    args = ap.parse_args(argv)
    if not args.fit_minutes > 0:
        ap.error(f"--fit-minutes must be > 0, got {args.fit_minutes:g}")

    from volsr.samples import KINDS

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        ap.error(f"--kinds: unknown {', '.join(bad) or '(none given)'}; available: {', '.join(KINDS)}")
    specs = [(s, *parse_spec(s)) for s in split_specs(args.engines)]  # fail on a bad spec before any work
    if not specs:
        ap.error("--engines: no engine given")
    out_md = Path(args.out)
    if not out_md.parent.is_dir():
        ap.error(f"--out: folder {out_md.parent} does not exist")
    command = "python benchmarks/bench_quality.py" + ("" if not argv else " " + shlex.join(argv))

    results = [run_kind(kind, specs, args) for kind in kinds]
    text = markdown(results, command, args)
    print(text)
    out_md.write_text(text)
    payload = {"command": command, "settings": vars(args), "factor": FACTOR,
               "engines": [{"spec": s, "engine": n, "options": o} for s, n, o in specs], "kinds": results}
    out_md.with_suffix(".json").write_text(json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
