"""Radial power spectra of XY / XZ / YZ slices and a spectral isotropy gap.

Needs no reference images and no network weights, so it also works on real anisotropic
data for which no ground truth exists: in an isotropic volume the three slice
orientations have the same spectrum; a z-interpolated volume lacks high frequencies along
z, which shows up as a drop of the XZ/YZ spectra below the XY spectrum.

Definition (all constants fixed, so numbers are comparable across runs and volumes):

1. From every axis, ``n_tiles`` random square ``tile x tile`` crops (seeded; XZ/YZ tiles
   have z as rows). Square tiles give the same frequency grid in rows and columns, so
   XZ/YZ planes having fewer rows than columns does not matter.
2. Per tile and channel: subtract the mean, multiply by a 2D Hann window, take
   ``|FFT|^2``, and divide by the total power (contrast and brightness drop out).
3. Radial average over ``tile // 2`` equal-width bins of normalised radial frequency
   ``k = sqrt(fy^2 + fx^2)`` in ``(0, 0.5]`` cycles/pixel (bin centres are the
   ``frequency`` column; the DC bin is left out).
4. ``log10`` of the bin power, floored at ``floor`` (default 1e-7 of the tile's total
   power: below that a spectrum holds no visible structure, and without a floor the
   near-empty high-frequency tail of smooth data would dominate the distance), averaged
   over tiles (and channels): the *mean log spectrum* ``S_axis(k)``.
5. **Isotropy gap** = ``(d(XZ, XY) + d(YZ, XY)) / 2`` with
   ``d(A, B) = sqrt(mean_k (S_A(k) - S_B(k))^2)``, in decades of power. 0 for perfectly
   isotropic statistics; small positive values (~0.01-0.03 with the defaults) come from
   the finite number of tiles.

**Which XY planes are the reference.** In a restored volume most XY planes were generated
by the engine. If the XY reference is drawn from all planes, an engine that smooths its
generated planes also smooths its own reference and looks more isotropic than it is. Give
``measured_planes`` (the z indices of the measured planes, e.g. ``OutputGrid.positions``,
the ``volsr_measured_planes`` record of a volsr output, or
:func:`volsr.grid.measured_positions` from the factor) and the XY tiles come from those
planes only: the microscope's own in-plane texture. ``AxisSpectra.reference`` says which
reference was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import VolsrError
from .slicing import AXES, as_czyx, sample_volume_crops

__all__ = ["radial_power_spectrum", "NORMALIZATIONS", "AxisSpectra", "axis_spectra", "isotropy_gap", "spectrum_error"]

_AXIS_STREAM = {"xy": 11, "xz": 12, "yz": 13}


def _radial_bins(h: int, w: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin index of every FFT frequency of an h x w image: ``min(h, w) // 2`` equal bins over (0, 0.5]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    k = np.sqrt(fy**2 + fx**2)
    n_bins = min(h, w) // 2
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    idx = np.digitize(k, edges[1:], right=True)  # bin 0 = (0, edge1], ..., values > 0.5 -> n_bins
    idx[k == 0] = -1  # leave out DC
    centres = 0.5 * (edges[:-1] + edges[1:])
    return idx, centres, n_bins


NORMALIZATIONS = ("total", "zscore")


def radial_power_spectrum(images, *, normalization: str = "total", return_frequency: bool = False):
    """Hann-windowed radial power spectra of images (N, H, W) or (H, W).

    Parameters
    ----------
    images : array (N, H, W) or (H, W)
        Square tiles (the volume spectra) or whole rectangular images (2D evaluation), at
        least 8 px on each side.
    normalization : {'total', 'zscore'}
        ``'total'`` (the volume spectra of this module): subtract the mean, window, ``|FFT|^2``
        divided by its sum, so each image's spectrum sums to 1. ``'zscore'`` (the 2D
        evaluation, as in the Brain-SR paper's RPS curves): z-score the image (mean 0, std 1;
        a constant image stays 0), window, ``|FFT|^2`` of the orthonormal FFT
        (``norm='ortho'``), so by Parseval the power sums to the windowed image's energy and
        curves of images of any size and contrast are comparable.
    return_frequency : bool
        Also return the bin centres in cycles/pixel.

    Returns
    -------
    power : array (N, min(H, W) // 2) or (min(H, W) // 2,)
        Mean power per radial bin; the bins split ``(0, 0.5]`` cycles/pixel evenly (DC left
        out, corner frequencies beyond 0.5 too). For rectangular images the radial frequency
        is ``sqrt(fy^2 + fx^2)`` on each axis' own frequency grid.
    frequency : array (min(H, W) // 2,), only with ``return_frequency``

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p, k = radial_power_spectrum(rng.normal(size=(4, 32, 32)), return_frequency=True)
    >>> p.shape, k.shape
    ((4, 16), (16,))
    """
    if normalization not in NORMALIZATIONS:
        raise VolsrError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    x = np.asarray(images, dtype=np.float64)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise VolsrError(f"images must be (N, H, W) or (H, W); got shape {np.shape(images)}")
    h, w = x.shape[1:]
    if min(h, w) < 8:
        raise VolsrError(f"spectra need images of at least 8 px on each side, got {h}x{w}")
    x = x - x.mean(axis=(1, 2), keepdims=True)
    if normalization == "zscore":
        std = x.std(axis=(1, 2), keepdims=True)
        x = x / np.where(std > 0, std, 1.0)
    x = x * (np.hanning(h)[:, None] * np.hanning(w)[None, :])
    if normalization == "zscore":
        p = np.abs(np.fft.fft2(x, norm="ortho")) ** 2
    else:
        p = np.abs(np.fft.fft2(x)) ** 2
        total = p.sum(axis=(1, 2), keepdims=True)
        p = p / np.where(total > 0, total, 1.0)
    idx, centres, n_bins = _radial_bins(h, w)
    flat_idx = idx.ravel()
    valid = (flat_idx >= 0) & (flat_idx < n_bins)
    counts = np.bincount(flat_idx[valid], minlength=n_bins).astype(np.float64)
    pf = p.reshape(p.shape[0], -1)[:, valid]
    out = np.stack([np.bincount(flat_idx[valid], weights=row, minlength=n_bins) for row in pf]) / counts
    out = out[0] if single else out
    return (out, centres) if return_frequency else out


@dataclass
class AxisSpectra:
    """Mean log10 radial spectra per axis and the isotropy gap (see module docstring)."""

    frequency: np.ndarray
    log_power: dict  # axis -> (n_bins,) mean log10 power
    gap: float
    distance: dict  # "xz", "yz" -> RMS distance to XY
    reference: str = "all planes"  # where the XY tiles came from: "all planes" or "measured planes (n of Z)"

    def to_rows(self) -> list[dict]:
        """Tidy rows: axis, frequency, log_power."""
        return [
            {"axis": a, "frequency": float(f), "log_power": float(v)}
            for a in AXES
            for f, v in zip(self.frequency, self.log_power[a])
        ]


def _rms(log_a: np.ndarray, log_b: np.ndarray) -> float:
    """RMS distance (decades of power) between two mean log radial spectra."""
    return float(np.sqrt(np.mean((log_a - log_b) ** 2)))


def axis_spectra(
    volume, *, tile: int | None = 32, n_tiles: int = 256, seed: int = 0, floor: float = 1e-7,
    measured_planes=None,
) -> AxisSpectra:
    """Mean log radial spectra of XY, XZ, YZ tiles of a volume, and its isotropy gap.

    Parameters
    ----------
    volume : array (Z, Y, X) or (C, Z, Y, X)
        Should be on an isotropic grid (after restoration), so that one pixel is the same
        physical length along z as along x/y.
    tile : int or None
        Square tile size (px, >= 8). None: the largest even size that fits all axes
        (``min(Z, Y, X)``), capped at 64.
    n_tiles : int
        Random tiles per axis.
    seed : int
    floor : float
        Lower bound of the normalised bin power before the log (see module docstring).
    measured_planes : sequence of int, optional
        z indices of the measured planes: XY tiles are drawn from these planes only (see
        module docstring). None: from all planes (``reference == "all planes"``).

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> vol = gaussian_filter(np.random.default_rng(0).normal(size=(48, 48, 48)), 1.0)
    >>> axis_spectra(vol, tile=32, n_tiles=256).gap < 0.05
    True
    """
    v = as_czyx(volume)
    if tile is None:
        tile = min(64, min(v.shape[1:]))
        tile -= tile % 2
    tile = int(tile)
    if tile < 8:
        raise VolsrError(f"tile must be >= 8 px, got {tile}")
    if not floor > 0:
        raise VolsrError(f"floor must be > 0, got {floor}")
    if int(n_tiles) < 1:
        raise VolsrError(f"n_tiles must be >= 1, got {n_tiles}")
    reference = "all planes"
    xy_source = v
    if measured_planes is not None:
        from ..io import check_measured_planes

        planes = check_measured_planes(measured_planes, v.shape[1])
        xy_source = v[:, list(planes)]
        reference = f"measured planes ({len(planes)} of {v.shape[1]})"
    logs = {}
    freq = None
    for axis in AXES:
        src = xy_source if axis == "xy" else v
        crops = sample_volume_crops(src, axis, tile, n_tiles, np.random.default_rng([seed, _AXIS_STREAM[axis]]))
        p, freq = radial_power_spectrum(crops.reshape(-1, tile, tile), return_frequency=True)
        logs[axis] = np.log10(np.maximum(p, floor)).mean(axis=0)
    dist = {a: _rms(logs[a], logs["xy"]) for a in ("xz", "yz")}
    return AxisSpectra(freq, logs, (dist["xz"] + dist["yz"]) / 2.0, dist, reference)


def isotropy_gap(
    volume, *, tile: int | None = 32, n_tiles: int = 256, seed: int = 0, floor: float = 1e-7,
    measured_planes=None,
) -> float:
    """Spectral isotropy gap of a volume (decades of power; 0 = isotropic). See module docstring.

    Pass ``measured_planes`` (z indices) for a restored volume, so the XY reference is the
    measured planes and not the engine's own generated planes.
    """
    return axis_spectra(volume, tile=tile, n_tiles=n_tiles, seed=seed, floor=floor,
                        measured_planes=measured_planes).gap


def spectrum_error(volume, truth, *, axis: str = "xz", tile: int | None = 32, n_tiles: int = 256,
                   seed: int = 0) -> float:
    """RMS distance (decades) between the mean log radial spectra of ``axis`` slices of a
    restored volume and of the ground truth: how far its texture is from the real one.

    Both volumes must have the same shape; ``tile`` is capped to the smallest even size
    that fits (short restored z extents).
    """
    if axis not in AXES:
        raise VolsrError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    v, t = as_czyx(volume), as_czyx(truth)
    if v.shape != t.shape:
        raise VolsrError(f"volume {v.shape} and ground truth {t.shape} differ in shape")
    if tile is not None:
        tile = min(int(tile), min(v.shape[1:]) - min(v.shape[1:]) % 2)
    kw = dict(tile=tile, n_tiles=n_tiles, seed=seed)
    return _rms(axis_spectra(v, **kw).log_power[axis], axis_spectra(t, **kw).log_power[axis])
