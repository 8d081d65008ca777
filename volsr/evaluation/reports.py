"""The report files of an evaluation: :func:`write_report` writes CSV + Markdown tables + PNG
figures; :func:`check_report_destination` refuses an unusable output folder before any work.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError, VolsrError
from .common import EvalResult
from .figures import plot_fid_bars, plot_spectra, plot_xz_examples
from .tables import markdown_table, paper_tables, training_table

__all__ = ["check_report_destination", "write_report"]

_TITLES = {
    "paired_2d": "Paired 2D (paper Table 1): FID of all rows; SSIM and PSNR (dB) on restored rows only",
    "fid_3d": "3D FID per axis and SliceFID (paper Tables 2-4)",
    "paired_3d": "3D paired metrics on restored planes only: PSNR (dB, same for every axis) and SSIM per axis",
    "isotropy_3d": "Spectral isotropy gap (decades of power; 0 = isotropic)",
}


def check_report_destination(out_dir, *, has_3d: bool = True, overwrite: bool = False,
                             figures: bool = True) -> dict[str, Path]:
    """The report files :func:`write_report` would write; refuse before any work when they cannot be.

    Raises :class:`volsr.errors.OutputError` when ``out_dir`` is a file or a report file
    exists (without ``overwrite``), :class:`volsr.errors.VolsrError` when figures are asked
    for without matplotlib.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder")
    parent = next((p for p in (out, *out.parents) if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        raise OutputError(f"cannot create or write the report folder {out}: {parent} is not writable")
    paths = {"results": out / "results.csv", "tables": out / "tables.md"}
    if has_3d:
        paths["spectra"] = out / "spectra.csv"
        if figures:
            paths.update(fid_bars=out / "fid_per_axis.png", spectra_png=out / "radial_spectra.png",
                         xz_examples=out / "xz_examples.png")
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{', '.join(existing)} exist(s); pass --overwrite or choose another --out folder")
    if has_3d and figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise VolsrError("figures need matplotlib: pip install 'volsr[metrics]' (or pass --no-figures)") from None
    return paths


def write_report(result: EvalResult, out_dir, *, overwrite: bool = False, figures: bool = True) -> dict[str, Path]:
    """Write ``results.csv`` (long table), ``spectra.csv``, ``tables.md`` and PNG figures.

    ``tables.md`` ends with what trained each learned model (the ``trained_on`` column).

    Returns the written paths by name. Refuses to overwrite existing files unless
    ``overwrite``.
    """
    has3d = not result.spectra.empty
    paths = check_report_destination(out_dir, has_3d=has3d, overwrite=overwrite, figures=figures)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    result.table.to_csv(paths["results"], index=False)
    md = ["# volsr evaluation\n"]
    meta = ", ".join(f"{k}={v}" for k, v in result.meta.items())
    md.append(f"Settings: {meta}\n")
    feats = result.meta.get("features", {})
    if isinstance(feats, dict) and not feats.get("comparable_to_published", False):
        md.append(f"FID uses '{feats.get('features')}' features: NOT comparable with published FID values.\n")
    for key, df in paper_tables(result.table).items():
        md.append(f"\n## {_TITLES[key]}\n\n")
        md.append(markdown_table(df, digits=2 if key in ("fid_3d",) else 3))
    trained = training_table(result.table)
    if not trained.empty:
        md.append("\n## What trained each learned model\n\n")
        md.append(markdown_table(trained, index_name="engine"))
    paths["tables"].write_text("".join(md))
    if has3d:
        result.spectra.to_csv(paths["spectra"], index=False)
        if figures:
            plot_fid_bars(result.table, paths["fid_bars"])
            plot_spectra(result.spectra, paths["spectra_png"])
            plot_xz_examples(result.examples, paths["xz_examples"])
    return paths
