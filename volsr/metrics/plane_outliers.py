"""Damaged z planes: per-plane statistics that are outliers against their neighbours.

Serial-section EM has folds, knife chatter and lost sections; long light-sheet and confocal
runs have dropped, bleached or misregistered frames. :func:`check_planes` *reports* such
planes (it never changes the data) so that a user can pass them to
``volsr infer --damaged-planes`` and have them restored as unmeasured rows.

**Statistics** (one value per input z plane, channels averaged first; one pass over z, so a
dask / zarr / memmap volume is read plane by plane and memory stays at two planes):

``mean``
    The plane's mean, measured against its neighbours' and expressed in units of the
    neighbours' typical std (so a bright stack and a dim one score alike). Catches zeroed,
    lost or blank sections, dropped frames and sudden exposure or laser jumps.
``std``
    ``log`` of the plane's std (contrast): a relative measure. Catches flat / saturated
    frames, a sudden loss of contrast (a fold over the whole field) and pure-noise frames
    whose contrast differs from the tissue's.
``high-frequency energy``
    ``mean |Laplacian| / std`` of the plane, in ``log``: the share of the plane's contrast
    in the finest scales, independent of its brightness. Rises for a noise frame or knife
    chatter, drops for a defocused or motion-blurred frame.
``correlation``
    Pearson correlation of the plane with its neighbours, ``max(r(i-1, i), r(i, i+1))``: a
    damaged plane breaks both of its links, its healthy neighbours keep one. Catches noise
    frames, folds and tears, and planes from elsewhere in the sample. Only a drop counts.
``offset`` (shift against neighbours)
    The lateral shift (peak of the plain cross-correlation, within +-:data:`MAX_SHIFT` px,
    sub-pixel, on a central crop of at most :data:`SHIFT_CROP` px) that best aligns each
    plane onto the next, minus the median shift of the nearby links (a slow stage drift
    cancels), and per plane the smaller of its two links. Catches misregistered frames and
    sections: with planes several pixels apart, neighbours already differ about as much as a
    few-pixel shift makes them, so the zero-shift correlation barely drops for a shifted
    plane, while its alignment to *both* neighbours jumps by the shift. Not used when the
    stack's median neighbour correlation is below :data:`MIN_SHIFT_CORRELATION` (planes
    share too little structure for a shift to be measured). Only a rise counts.

At an end a plane has one link; the correlation and offset count against the end plane
only when the next plane's other link is fine (otherwise the next plane is the damaged one).

**Rule.** For each statistic ``s``: the residual ``r_i`` of ``s_i`` against the median of
its neighbours ``0 < |j - i| <= 3`` (the plane itself left out, so it cannot hide itself;
one-sided at the ends) or against the straight line through its two nearest neighbours
(their mean inside, an extrapolation at the ends), whichever is closer. A smooth trend
along z (bleaching, a slow focus or exposure drift) is almost linear over a few planes, so
its residuals stay near zero, at the ends too; a one-plane jump differs from both. The
residuals are scaled by one robust spread for the whole stack, ``1.4826 * median_i |r_i|``
(floored per statistic, :data:`SPREAD_FLOOR`, so a very regular stack does not turn tiny
differences into large z): a robust z-score. A plane is flagged when ``|z| > threshold``
for mean, std or high-frequency energy, ``z < -threshold`` for correlation or
``z > threshold`` for offset. Two passes: the planes flagged by the first are left out of
every neighbour reference in the second (a zeroed plane would otherwise drag the medians
of the planes next to it). Each reason names the statistic, the plane's value, the
neighbours' (or typical) value and z. A plane with std 0 is also reported as constant.

**Calibration** (:func:`volsr.samples.isotropic_volume`, every 4th plane of 41 x 96 x 96
(seeds 0-3) and 81 x 160 x 160 (seeds 0-1) truths, all six kinds, with and without
``exp(-0.05 i)`` bleaching): the largest clean ``|z|`` was 6.8 (the mean of a fibers stack;
std 6.2, high-frequency energy 4.3, correlation -5.2, offset 6.4), while a zeroed plane
scored >= 87 (at an end) and >= 189 (inside), a uniform-noise plane >= 24 and a plane
rolled by 4 px 12.7-16 (cells, fluo, mri), 6.9-12 (em) and 2.9-7.6 (fibers); the default
threshold :data:`DEFAULT_THRESHOLD` (8) sits above every clean plane. A shift is not
detectable in ``texture`` (its planes 4 px apart are uncorrelated, r ~ 0.03) and only partly
in fibers and em; a noise plane with the tissue's own mean and std is caught by its
high-frequency energy in most kinds but not in every fluo stack (whose clean planes are
already dominated by shot noise). Fewer than
:data:`MIN_PLANES` (5) planes give too few neighbours to judge: :func:`check_planes`
returns ``[]`` and logs a note.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

logger = logging.getLogger("volsr")

DEFAULT_THRESHOLD = 8.0
"""Robust z beyond which a plane's statistic counts as damaged (see the module docstring)."""
MIN_PLANES = 5
"""Fewer planes than this are not checked."""
HALF_WINDOW = 3
"""Neighbours on each side that make a plane's reference."""
SPREAD_FLOOR = {"mean": 0.02, "std": 0.04, "hf": 0.02, "correlation": 0.03, "offset": 0.25}
"""Least robust spread per statistic (mean: in neighbour stds; std, hf: in log units)."""
STATISTICS = ("mean", "std", "hf", "correlation", "offset")
SHIFT_CROP = 512
"""The shift search looks at the central crop of at most this size (pixels, square)."""
MAX_SHIFT = 8
MIN_SHIFT_CORRELATION = 0.1
"""Below this median neighbour correlation the shift statistic is not used (no shared structure)."""
"""Largest shift between neighbouring planes searched for (pixels)."""


@dataclass(frozen=True)
class PlaneFlag:
    """One plane that looks damaged: its 0-based input index, why, and every statistic's z."""

    index: int
    reasons: tuple[str, ...]
    scores: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PlaneStats:
    """Per-plane raw statistics (length Z each); ``link[i]`` is r(i, i+1), length Z - 1."""

    mean: np.ndarray
    std: np.ndarray
    hf: np.ndarray
    link: np.ndarray
    shift: np.ndarray
    """``shift[i]``: (dy, dx) in pixels that best aligns plane i + 1 onto plane i, shape (Z - 1, 2)."""


def _plane(volume, i: int, channels: bool) -> np.ndarray:
    p = np.asarray(volume[:, i] if channels else volume[i], dtype=np.float32)
    return p.mean(axis=0) if channels else p


def plane_statistics(volume_czyx) -> PlaneStats:
    """Mean, std, high-frequency energy and neighbour links of every plane, in one pass over z."""
    shape = tuple(volume_czyx.shape)
    if len(shape) not in (3, 4):
        raise InputError(f"expected a (C, Z, Y, X) or (Z, Y, X) volume, got shape {shape}")
    channels = len(shape) == 4
    n = shape[-3]
    mean, std, hf = (np.zeros(n) for _ in range(3))
    link = np.zeros(max(n - 1, 0))
    shift = np.zeros((max(n - 1, 0), 2))
    prev = prev_std = prev_f = None
    for i in range(n):
        p = _plane(volume_czyx, i, channels)
        m = float(p.mean(dtype=np.float64))
        c = p - np.float32(m)
        s = float(np.sqrt(np.mean(np.square(c, dtype=np.float32), dtype=np.float64)))
        mean[i], std[i] = m, s
        hf[i] = float(np.mean(np.abs(ndi.laplace(c)), dtype=np.float64)) / s if s > 0 else np.nan
        f = _spectrum(c)
        if prev is not None:
            den = s * prev_std
            link[i - 1] = float(np.mean(c * prev, dtype=np.float64)) / den if den > 0 else 0.0
            shift[i - 1] = _best_shift(prev_f, f)
        prev, prev_std, prev_f = c, s, f
    return PlaneStats(mean, std, hf, link, shift)


def _spectrum(centred: np.ndarray) -> np.ndarray:
    """FFT of a central crop (at most :data:`SHIFT_CROP` square) for the shift search."""
    h, w = centred.shape
    ch, cw = min(h, SHIFT_CROP), min(w, SHIFT_CROP)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.fft.rfft2(centred[y0:y0 + ch, x0:x0 + cw].astype(np.float64))


def _best_shift(fa: np.ndarray, fb: np.ndarray) -> tuple[float, float]:
    """Peak of the plain cross-correlation of two crops within +-:data:`MAX_SHIFT` px (sub-pixel)."""
    h = fa.shape[0]
    w = 2 * (fa.shape[1] - 1) if fa.shape[1] > 1 else 1
    xc = np.fft.irfft2(fa * np.conj(fb), s=(h, w))
    m = min(MAX_SHIFT, h // 4, w // 4)
    ys = np.r_[0:m + 1, -m:0] % h
    xs = np.r_[0:m + 1, -m:0] % w
    win = xc[np.ix_(ys, xs)]
    if not np.any(win):
        return 0.0, 0.0
    ky, kx = np.unravel_index(int(np.argmax(win)), win.shape)
    out = []
    for k, line in ((ky, win[:, kx]), (kx, win[ky, :])):
        d = float(k if k <= m else k - len(line))
        lo, hi = line[k - 1], line[(k + 1) % len(line)]
        den = lo - 2 * line[k] + hi
        if den < 0 and k not in (m, m + 1):
            d += 0.5 * (lo - hi) / den
        out.append(d)
    return out[0], out[1]


def _neighbour_median(values: np.ndarray, half: int = HALF_WINDOW) -> np.ndarray:
    """Median of each plane's neighbours ``0 < |j - i| <= half`` (itself left out; NaNs skipped)."""
    n = len(values)
    out = np.full(n, np.nan)
    for i in range(n):
        v = np.concatenate([values[max(0, i - half):i], values[i + 1:i + half + 1]])
        v = v[np.isfinite(v)]
        if len(v):
            out[i] = np.median(v)
    return out


def _linear_prediction(values: np.ndarray) -> np.ndarray:
    """Each plane predicted from its nearest neighbours: their mean inside, a straight line at the ends."""
    out = np.empty(len(values))
    out[1:-1] = 0.5 * (values[:-2] + values[2:])
    out[0] = 2 * values[1] - values[2]
    out[-1] = 2 * values[-2] - values[-3]
    return out


def _residual(values: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(residual, reference): against the neighbours' median or the local line, whichever is closer."""
    kept = _masked(values, exclude)
    med = _neighbour_median(kept)
    lin = _linear_prediction(kept)
    r_med, r_lin = values - med, values - lin
    use_lin = np.isfinite(r_lin) & (np.abs(r_lin) < np.abs(r_med))
    return np.where(use_lin, r_lin, r_med), np.where(use_lin, lin, med)


def _robust_z(residual: np.ndarray, floor: float, exclude: np.ndarray) -> np.ndarray:
    """Residual over a robust spread: the larger of the whole stack's and the plane's neighbours'."""
    mag = np.abs(residual)
    finite = mag[np.isfinite(mag)]
    spread = 1.4826 * float(np.median(finite)) if len(finite) else 0.0
    local = 1.4826 * _neighbour_median(_masked(mag, exclude))
    return residual / np.maximum(np.fmax(local, spread), floor)


def _per_plane_links(link: np.ndarray, better) -> np.ndarray:
    """Per plane, the better of its two links (``better`` = max or min); the ends have one."""
    n = len(link) + 1
    out = np.empty(n)
    out[0], out[-1] = link[0], link[-1]
    out[1:-1] = better(link[:-1], link[1:])
    return out


def _link_offsets(shift: np.ndarray) -> np.ndarray:
    """Each link's shift minus the neighbouring links' median shift (a slow lateral drift cancels), in px."""
    ref = np.stack([_neighbour_median(shift[:, 0]), _neighbour_median(shift[:, 1])], axis=1)
    return np.hypot(*(shift - np.nan_to_num(ref)).T)


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else (f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}")


def _masked(values: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    return np.where(exclude, np.nan, values)


def _scores(st: PlaneStats, exclude: np.ndarray, threshold: float):
    """(z, value, reference) per statistic; planes in ``exclude`` are left out of every reference."""
    ref_std = _neighbour_median(_masked(st.std, exclude))
    finite = ref_std[np.isfinite(ref_std)]
    unit = float(np.median(finite)) if len(finite) and np.median(finite) > 0 else 1.0
    r_mean, ref_mean = _residual(st.mean, exclude)
    log_std = np.log(np.maximum(st.std, 1e-12 * max(float(np.nanmax(st.std)), 1e-30)))
    r_std, ref_log_std = _residual(log_std, exclude)
    log_hf = np.log(np.where(st.hf > 0, st.hf, np.nan))
    r_hf, ref_log_hf = _residual(log_hf, exclude)
    corr = _per_plane_links(st.link, np.maximum)
    ref_corr = _neighbour_median(_masked(corr, exclude))
    r_corr = corr - ref_corr
    offset = _per_plane_links(_link_offsets(st.shift), np.minimum)
    if float(np.median(st.link)) < MIN_SHIFT_CORRELATION:
        offset[:] = np.nan  # neighbours share too little structure for a shift to be measured
    ref = {"mean": ref_mean, "std": np.exp(ref_log_std), "hf": np.exp(ref_log_hf),
           "correlation": ref_corr, "offset": _neighbour_median(_masked(offset, exclude))}
    value = {"mean": st.mean, "std": st.std, "hf": st.hf, "correlation": corr, "offset": offset}
    z = {
        "mean": _robust_z(r_mean / unit, SPREAD_FLOOR["mean"], exclude),
        "std": _robust_z(r_std, SPREAD_FLOOR["std"], exclude),
        "hf": _robust_z(r_hf, SPREAD_FLOOR["hf"], exclude),
        "correlation": _robust_z(r_corr, SPREAD_FLOOR["correlation"], exclude),
        "offset": _robust_z(offset - ref["offset"], SPREAD_FLOOR["offset"], exclude),
    }
    # an end plane's single link also breaks when its neighbour is the damaged one: blame the end
    # only when the neighbour's other link is fine
    n = len(st.mean)
    for key, sign in (("correlation", -1), ("offset", 1)):
        zk = z[key]
        for end, nxt in ((0, 1), (n - 1, n - 2)):
            if sign * zk[end] > threshold and sign * zk[nxt] > threshold:
                zk[end] = np.nan

    return z, value, ref


def _hits(z: dict, i: int, threshold: float) -> list[str]:
    """The statistics of plane ``i`` beyond the threshold (only a drop counts for correlation, a rise for offset)."""
    out = []
    for key in STATISTICS:
        zi = z[key][i]
        hit = {"correlation": zi < -threshold, "offset": zi > threshold}.get(key, abs(zi) > threshold)
        if np.isfinite(zi) and hit:
            out.append(key)
    return out


def _two_pass(st: PlaneStats, threshold: float):
    """Pass 1 finds the obvious outliers; pass 2 scores every plane again with those left out of
    the neighbours' references (a zeroed plane would otherwise pull its neighbours' medians)."""
    n = len(st.mean)
    z, value, ref = _scores(st, np.zeros(n, dtype=bool), threshold)
    suspect = np.array([bool(_hits(z, i, threshold)) for i in range(n)])
    if suspect.any():
        z, value, ref = _scores(st, suspect, threshold)
    return z, value, ref


def plane_scores(volume_czyx, *, threshold: float = DEFAULT_THRESHOLD) -> dict[str, np.ndarray]:
    """The robust z of every statistic for every plane (length Z each), as :func:`check_planes` sees them."""
    return _two_pass(plane_statistics(volume_czyx), threshold)[0]


def check_planes(volume_czyx, *, threshold: float = DEFAULT_THRESHOLD) -> list[PlaneFlag]:
    """The z planes whose statistics are outliers against their neighbours (see the module docstring).

    Parameters
    ----------
    volume_czyx : array-like
        (C, Z, Y, X) or (Z, Y, X); numpy, memmap, dask or zarr (read one plane at a time).
    threshold : float
        Robust z beyond which a statistic counts as damaged (default :data:`DEFAULT_THRESHOLD`, 8).

    Returns
    -------
    list of PlaneFlag
        Sorted by index; ``[]`` for a clean stack or for fewer than :data:`MIN_PLANES` planes.
    """
    if not (np.isfinite(threshold) and threshold > 0):
        raise InputError(f"threshold must be > 0, got {threshold!r}")
    n = tuple(volume_czyx.shape)[-3] if len(volume_czyx.shape) >= 3 else 0
    if n < MIN_PLANES:
        logger.info("too few planes to check (need >= %d, got %d)", MIN_PLANES, n)
        return []
    st = plane_statistics(volume_czyx)
    z, value, ref = _two_pass(st, threshold)

    labels = {"mean": "mean", "std": "std", "hf": "high-frequency energy",
              "correlation": "correlation with neighbours", "offset": "shift against neighbours"}
    flags = []
    for i in range(n):
        reasons = []
        for key in _hits(z, i, threshold):
            other = "neighbours" if key in ("mean", "std", "hf") else "typical"
            px = " px" if key == "offset" else ""
            reasons.append(f"{labels[key]} {_fmt(value[key][i])}{px} vs {other} {_fmt(ref[key][i])}{px} "
                           f"(z={z[key][i]:+.1f})")
        if not np.isfinite(st.hf[i]):
            reasons.append("constant plane (std 0)")
        if reasons:
            scores = {key: float(z[key][i]) for key in STATISTICS}
            flags.append(PlaneFlag(i, tuple(reasons), scores))
    return flags
