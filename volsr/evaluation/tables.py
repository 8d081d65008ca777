"""Paper-style views of the long results table (format: :mod:`.common`).

:func:`paper_tables` (wide tables per protocol, as in the paper), :func:`markdown_table` and
:func:`training_table` (what trained each learned model). Apart from the figures and the report
files so that both label methods the same way (``_label``) without importing each other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["paper_tables", "markdown_table", "training_table"]


def _label(df: pd.DataFrame) -> pd.Series:
    return df["engine"] + np.where(df["variant"].isin(["-", "both"]), "", " (" + df["variant"] + ")")


def paper_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Wide, paper-style views of a long table (rows: method, columns: factor x metric).

    Keys present when the data is: ``paired_2d`` (FID, SSIM, PSNR on restored rows),
    ``fid_3d`` (XY, YZ, XZ, SliceFID; Tables 2-4), ``paired_3d`` (PSNR and XY/XZ/YZ SSIM on
    restored planes), ``isotropy_3d`` (isotropy gap).
    """
    out = {}
    t = table.copy()
    t["method"] = _label(t)

    def wide(sel, key_cols, order):
        sub = t[sel].copy()
        sub["col"] = sub[key_cols].astype(str).agg(" ".join, axis=1) if len(key_cols) > 1 else sub[key_cols[0]]
        w = sub.pivot_table(index="method", columns=["factor", "col"], values="value", aggfunc="first", sort=False)
        cols = [(f, c) for f in sorted(sub["factor"].unique()) for c in order if (f, c) in w.columns]
        w = w[cols]
        w.columns = [f"{f}x {c}" for f, c in cols]
        return w

    d2 = t["protocol"] == "2d"
    if d2.any():
        sel = d2 & (((t["metric"] == "fid")) | (t["rows"] == "restored"))
        out["paired_2d"] = wide(sel, ["metric"], ["fid", "ssim", "psnr"]).rename(
            columns=lambda s: s.replace("fid", "FID").replace("ssim", "SSIM").replace("psnr", "PSNR"))
    d3 = t["protocol"] == "3d"
    if d3.any():
        sel = d3 & t["metric"].isin(["fid", "slice_fid"])
        sub = t[sel].copy()
        sub["metric"] = np.where(sub["metric"] == "slice_fid", "SliceFID", sub["axis"].str.upper())
        t.loc[sel, "metric2"] = sub["metric"]
        out["fid_3d"] = wide(sel, ["metric2"], ["XY", "YZ", "XZ", "SliceFID"])
        sel = d3 & t["metric"].isin(["psnr", "ssim"]) & (t["rows"] == "restored")
        if sel.any():
            t.loc[sel, "metric3"] = np.where(t.loc[sel, "metric"] == "psnr", "PSNR " + t.loc[sel, "axis"].str.upper(),
                                             "SSIM " + t.loc[sel, "axis"].str.upper())
            w = wide(sel, ["metric3"], ["PSNR XY", "SSIM XY", "SSIM YZ", "SSIM XZ"])
            out["paired_3d"] = w.rename(columns=lambda s: s.replace("PSNR XY", "PSNR"))
        sel = d3 & (t["metric"] == "isotropy_gap")
        t.loc[sel, "metric4"] = "gap"
        out["isotropy_3d"] = wide(sel, ["metric4"], ["gap"])
    return out


def markdown_table(df: pd.DataFrame, *, digits: int = 3, index_name: str = "method") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return "inf" if v > 0 else ("-inf" if v < 0 else "")
            return f"{v:.{digits}f}"
        return str(v)

    header = [index_name] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.tolist()]) + " |")
    return "\n".join(lines) + "\n"


def training_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per learned model and protocol/factor: what its weights were trained on."""
    if "trained_on" not in table.columns:
        return pd.DataFrame()
    t = table[table["trained_on"] != "-"]
    t = t[["engine", "protocol", "factor", "trained_on"]].drop_duplicates()
    return t.set_index("engine")
