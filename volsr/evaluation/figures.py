"""PNG figures of an evaluation: per-axis FID bars, radial spectra, example XZ slices.

matplotlib is optional (``volsr[metrics]``), so it is imported only when a figure is drawn, and
figures are made without pyplot so notebooks keep their backend. :func:`write_report` draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import VolsrError
from .tables import _label

__all__ = ["plot_fid_bars", "plot_spectra", "plot_xz_examples"]


def _subplots(nrows: int, ncols: int, figsize) -> tuple:
    """A figure without pyplot: no backend switch, so notebooks keep their inline figures."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise VolsrError("figures need matplotlib: pip install 'volsr[metrics]'") from None
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _rc_colors() -> list:
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_fid_bars(table: pd.DataFrame, path) -> Path:
    """Per-axis FID (XY, XZ, YZ) and SliceFID per method, one panel per factor."""
    t = table[(table["protocol"] == "3d") & table["metric"].isin(["fid", "slice_fid"])].copy()
    if t.empty:
        raise VolsrError("no 3D FID rows to plot")
    t["method"] = _label(t)
    t["what"] = np.where(t["metric"] == "slice_fid", "SliceFID", t["axis"].str.upper())
    factors = sorted(t["factor"].unique())
    methods = list(dict.fromkeys(t["method"]))
    whats = ["XY", "XZ", "YZ", "SliceFID"]
    fig, axes = _subplots(1, len(factors), figsize=(4.5 * len(factors), 3.6))
    width = 0.8 / len(methods)
    for ax, f in zip(axes[0], factors):
        for i, m in enumerate(methods):
            vals = [t[(t["factor"] == f) & (t["method"] == m) & (t["what"] == w)]["value"].mean() for w in whats]
            ax.bar(np.arange(len(whats)) + i * width - 0.4 + width / 2, vals, width, label=m)
        ax.set_xticks(np.arange(len(whats)), whats)
        ax.set_title(f"{f}x")
        ax.set_ylabel("FID")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_spectra(spectra: pd.DataFrame, path) -> Path:
    """Mean log radial spectra: one panel per factor, XY solid, XZ dashed, YZ dotted."""
    if spectra.empty:
        raise VolsrError("no spectra to plot")
    s = spectra.copy()
    s["method"] = _label(s)
    factors = sorted(s["factor"].unique())
    methods = list(dict.fromkeys(s["method"]))
    styles = {"xy": "-", "xz": "--", "yz": ":"}
    fig, axes = _subplots(1, len(factors), figsize=(4.5 * len(factors), 3.6))
    colors = _rc_colors()
    for ax, f in zip(axes[0], factors):
        for i, m in enumerate(methods):
            for axis, ls in styles.items():
                d = s[(s["factor"] == f) & (s["method"] == m) & (s["axis"] == axis)]
                ax.plot(d["frequency"], d["log_power"], ls, color=colors[i % len(colors)],
                        label=m if axis == "xy" else None, lw=1)
        ax.set_title(f"{f}x   (solid XY, dashed XZ, dotted YZ)", fontsize=9)
        ax.set_xlabel("radial frequency (cycles/px)")
        ax.set_ylabel("mean log10 power")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_xz_examples(examples: dict, path) -> Path:
    """The middle XZ slice (z rows) of every method side by side, one row per factor."""
    if not examples:
        raise VolsrError("no example slices to plot")
    factors = sorted({k[2] for k in examples})
    methods = list(dict.fromkeys((k[0], k[1]) for k in examples))
    fig, axes = _subplots(len(factors), len(methods), figsize=(2.6 * len(methods), 1.9 * len(factors) + 0.4))
    for r, f in enumerate(factors):
        for c, (name, variant) in enumerate(methods):
            ax = axes[r, c]
            img = examples.get((name, variant, f))
            if img is not None:
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
            title = name if variant in ("-", "both") else f"{name} ({variant})"
            ax.set_title(f"{title}, {f}x", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("z")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
