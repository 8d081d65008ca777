"""Benchmark helper: distil the one-step sampler of saved MSDSR fits (issue 13, item 3).

Not a test. For each kind, rebuild the data the fit saw (``bench_quality``'s volume: shape,
seed 0, every 4th z plane kept; :func:`volsr.api.fit_on_input` fits on that stack's XY
planes, as (C, Z, Y, X)), load ``--models/{kind}/msdsr.volsr``, run
:meth:`volsr.engines.msdsr.MSDSREngine.distil` for ``--minutes`` (or ``--steps``) and save to
``--out/{kind}/msdsr.volsr``. Score the results with ``bench_quality.py --engines
'msdsr:model=OUT/{kind}/msdsr.volsr:sampler="one-step"'``.

Usage::

    python benchmarks/bench_onestep.py --kinds texture,em --minutes 1.5 --out /work/bench_models_onestep
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="cells,fibers,texture,fluo,mri,em")
    ap.add_argument("--models", default="/work/bench_models")
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", default="48,160,160")
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--config", default="{}", help="JSON config overrides for the one-step stage (e.g. one_step_t)")
    args = ap.parse_args(argv)

    from volsr.engines.msdsr import MSDSREngine
    from volsr.samples import isotropic_volume, subsample_z

    shape = tuple(int(v) for v in args.shape.split(","))
    overrides = json.loads(args.config)
    for kind in args.kinds.split(","):
        gt = isotropic_volume(shape, seed=0, kind=kind, dtype="float32")
        low = subsample_z(gt, 4)
        eng = MSDSREngine.load(Path(args.models) / kind / "msdsr.volsr")
        if overrides:
            eng.cfg = eng.cfg.replace(**overrides)  # one-step keys only: no effect on the fitted weights
        report = eng.distil(low[None], minutes=args.minutes, steps=args.steps, seed=0)
        out = Path(args.out) / kind / "msdsr.volsr"
        out.parent.mkdir(parents=True, exist_ok=True)
        eng.save(out)
        print(f"{kind}: {report['steps']} steps in {report['minutes']:.2f} min, final loss {report['final_loss']:.4f}"
              f" -> {out}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
