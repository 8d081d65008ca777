"""Paired metrics (PSNR, SSIM) of a restoration against its ground truth, per axis.

Both are computed with scikit-image (``skimage.metrics``) and an explicit ``data_range``
(for volumes normalised with :class:`volsr.normalize.PercentileNormalizer` the natural
choice is 1.0, the width of the normalisation window).

"Restored only" means: only the rows that were *not* measured (``known`` False on the z
grid) count. Measured planes are copied into the output unchanged, so including them
inflates every score by a factor that depends on the z factor; both variants are
reported.

* **PSNR** pools the squared error over all selected voxels of all slices of an axis:
  ``10 log10(data_range^2 / MSE)``. The XY, XZ and YZ slices of one volume cover the same
  voxels, so per-axis PSNR values are equal by construction; they are still reported per
  axis so tables have the same shape for every metric.
* **SSIM** is computed per slice with the Gaussian-window settings of Wang et al. (2004)
  (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``, 11x11 window) and
  averaged over slices. Including measured rows, a slice's SSIM equals
  ``skimage.metrics.structural_similarity`` with these settings (tested); restored-only
  averages the local SSIM map over the restored rows (same border crop as scikit-image),
  then over slices. Multi-channel data: the SSIM map is averaged over channels, as
  scikit-image's ``channel_axis`` does. The maps are computed for a batch of slices at once
  (the same Gaussian-filter formulas as scikit-image, vectorised over slices): calling
  scikit-image once per slice made SSIM the slowest part of ``volsr eval``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import InputError, VolsrError
from .slicing import AXES, as_czyx, axis_slices

__all__ = ["psnr", "ssim_planes", "paired_metrics", "SSIM_SETTINGS"]

SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def _check_range(data_range) -> float:
    try:
        r = float(data_range)
    except (TypeError, ValueError):
        raise VolsrError(f"data_range must be a positive number, got {data_range!r}") from None
    if not (np.isfinite(r) and r > 0):
        raise VolsrError(f"data_range must be a positive number, got {data_range!r}")
    return r


def psnr(restored, truth, *, data_range: float, mask=None) -> float:
    """PSNR in dB over the voxels where ``mask`` is True (all voxels when None).

    Returns ``inf`` for a perfect match.
    """
    a = np.asarray(restored, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"restored {a.shape} and truth {b.shape} differ in shape")
    r = _check_range(data_range)
    err = (a - b) ** 2
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), a.shape)
        if not mask.any():
            raise VolsrError("mask selects no voxels; nothing to compare")
        err = err[mask]
    mse = float(err.mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(r * r / mse))


def ssim_planes(restored, truth, *, data_range: float, row_mask=None) -> float:
    """Mean SSIM over planes (N, C, H, W), optionally over selected rows only.

    Parameters
    ----------
    restored, truth : arrays (N, C, H, W)
    data_range : float
    row_mask : bool array (H,), optional
        Average the SSIM map over these rows only (None: scikit-image's mean SSIM).
    """
    return float(_ssim_per_plane(restored, truth, data_range, [row_mask])[0].mean())


def _ssim_per_plane(restored, truth, data_range, row_masks) -> np.ndarray:
    """SSIM of every plane for several row selections at once: (len(row_masks), N).

    The SSIM maps are computed once and averaged over each selection (None = all rows).
    """
    a = np.asarray(restored, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(f"restored {a.shape} and truth {b.shape} must be equal (N, C, H, W) shapes")
    r = _check_range(data_range)
    if min(a.shape[2:]) < 7:
        raise InputError(f"SSIM needs planes of at least 7x7 px, got {a.shape[2:]}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError("restored or truth holds NaN/inf values; SSIM is undefined")
    n, c, h, w = a.shape
    win = 11 if min(h, w) >= 11 else 7
    pad = (win - 1) // 2
    sels = []
    for row_mask in row_masks:
        if row_mask is None:
            sels.append(None)
            continue
        row_mask = np.asarray(row_mask, dtype=bool)
        if row_mask.shape != (h,):
            raise InputError(f"row_mask must have shape ({h},), got {row_mask.shape}")
        sel = row_mask[pad : h - pad]
        if not sel.any():
            raise VolsrError("row_mask selects no rows away from the border; nothing to compare")
        sels.append(sel)
    values = np.empty((len(sels), n))
    chunk = max(1, 2**22 // (c * h * w))  # bounded memory for large volumes
    for i in range(0, n, chunk):
        smap = _ssim_maps(a[i : i + chunk].reshape(-1, h, w), b[i : i + chunk].reshape(-1, h, w), r, win)
        smap = smap.reshape(-1, c, h, w).mean(axis=1)[:, pad : h - pad, pad : w - pad]
        for k, sel in enumerate(sels):
            values[k, i : i + chunk] = smap.mean(axis=(1, 2)) if sel is None else smap[:, sel, :].mean(axis=(1, 2))
    return values


def _ssim_maps(x: np.ndarray, y: np.ndarray, data_range: float, win: int) -> np.ndarray:
    """Local SSIM maps of (N, H, W) image pairs with Gaussian weights (sigma 1.5, population
    covariance), K1 = 0.01, K2 = 0.03, reflect borders: scikit-image's formulas, batched."""
    sigma = SSIM_SETTINGS["sigma"]
    truncate = ((win - 1) // 2) / sigma  # the window size fixes the Gaussian's support, as in skimage

    def filt(v):
        return gaussian_filter(v, sigma=(0.0, sigma, sigma), truncate=truncate, mode="reflect")

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def paired_metrics(restored, truth, known=None, *, data_range: float = 1.0, axes=AXES) -> list[dict]:
    """PSNR and SSIM of a restored volume against its ground truth, per axis.

    Parameters
    ----------
    restored, truth : arrays (Z, Y, X) or (C, Z, Y, X) of equal shape
    known : bool array (Z,), optional
        True on measured planes (``volsr.grid.OutputGrid.known_mask``). Without it only
        the "all" variant is computed.
    data_range : float
        Passed to PSNR/SSIM explicitly.

    Returns
    -------
    list of dict
        One row per (axis, rows) with keys ``axis``, ``rows`` ("restored" or "all"),
        ``psnr``, ``ssim``.
    """
    a, b = as_czyx(restored, "restored"), as_czyx(truth, "truth")
    if a.shape != b.shape:
        raise InputError(f"restored {a.shape} and truth {b.shape} differ in shape")
    variants = [("all", None)]
    if known is not None:
        known = np.asarray(known, dtype=bool)
        if known.shape != (a.shape[1],):
            raise InputError(f"known mask must have shape ({a.shape[1]},), got {known.shape}")
        if (~known).any():
            variants.insert(0, ("restored", ~known))
    names = [name for name, _ in variants]
    psnrs = {
        name: psnr(a, b, data_range=data_range, mask=None if unknown is None else unknown[None, :, None, None])
        for name, unknown in variants
    }
    ssims = {}
    for axis in axes:
        if axis == "xy":
            # whole planes: one SSIM per z plane, then average over the selected planes
            per_plane = _ssim_per_plane(axis_slices(a, "xy"), axis_slices(b, "xy"), data_range, [None])[0]
            for name, unknown in variants:
                ssims[(axis, name)] = float(per_plane.mean() if unknown is None else per_plane[unknown].mean())
        else:
            vals = _ssim_per_plane(axis_slices(a, axis), axis_slices(b, axis), data_range,
                                   [unknown for _, unknown in variants])
            for k, name in enumerate(names):
                ssims[(axis, name)] = float(vals[k].mean())
    return [
        {"axis": axis, "rows": name, "psnr": psnrs[name], "ssim": ssims[(axis, name)]}
        for name in names
        for axis in axes
    ]
