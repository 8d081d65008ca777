"""Deterministic synthetic volumes for demos, tests and benchmarks, and the bundled sample stack.

No real microscopy data may ship with volsr, yet a new user needs something to run on and every
score needs a ground truth. These generators make *statistically isotropic* 3D structure (no
preferred axis, the premise of masked-slice diffusion: a model of XY planes also describes XZ
and YZ planes), then :func:`subsample_z` keeps every f-th plane to make the anisotropic stack a
microscope would record. Same arguments, same seed -> the same array, on every machine.

Kinds
-----
``cells``
    Randomly oriented ellipsoidal nuclei of varied sizes with a soft edge and chromatin-like
    texture inside, on a weak uneven background.
``fibers``
    Persistent random-walk tubes of two thicknesses (filaments, neurites).
``texture``
    Band-pass filtered 3D noise (a structure at every orientation, one dominant scale).

These three are blurred by a small isotropic Gaussian (a PSF with the same width along every
axis) and get mild Poisson (shot) noise: clean data, easy to restore.

Acquisition-like kinds (:data:`ACQUISITION_KINDS`)
-------------------------------------------------
Defaults tuned on the clean kinds failed on real fluorescence and EM, so three kinds add the
imaging model of a real instrument. The *structure* is still statistically isotropic and the
grid is still isotropic (one voxel = the same length on every axis), but the image carries
what a real detector adds:

``fluo``
    Fluorescence: sparse textured nuclei, diffraction-limited puncta and thin processes on a
    faint haze, convolved with an **anisotropic** Gaussian PSF (axial sigma
    :data:`FLUO_AXIAL_RATIO` = 2.5 x the lateral, default 1.0 / 2.5 voxels), then imaged at
    **low photon counts** (default 45 expected photons at the brightest structures): Poisson
    shot noise, Gaussian read noise (:data:`FLUO_READ_NOISE` ADU) and a camera offset
    (:data:`FLUO_OFFSET` ADU, so the background is not 0). ADU / (offset + 2 x peak photons)
    gives [0, 1]: the brightest structures sit near 0.55, the background near 0.12.
``mri``
    MRI-like (T1 contrast): a slab through a head phantom, scalp, skull, CSF, folded grey
    matter over white matter, deep grey nuclei and ventricles with smooth (partial-volume,
    sigma 1 voxel) boundaries and a mild coil bias field, then **Rician** noise: the
    magnitude of a complex signal with Gaussian noise in both channels (default sigma 4 % of
    white matter), so air reads ``sigma * sqrt(pi / 2)`` on average, not 0. Magnitude /
    :data:`MRI_FULL_SCALE` gives [0, 1] (white matter ~0.8). One object, not a stationary
    texture: as in a real head scan, XZ sections show other anatomy than XY sections.
``em``
    Electron-microscopy-like neuropil, dense everywhere: a 3D Voronoi tessellation (cells
    ~17 voxels across) with thin dark membranes on grey cytoplasm (per-cell grey level and
    fine texture), clusters of small dark vesicles, mild blur (sigma 0.8) and Gaussian noise
    (default sigma 9 % of the cytoplasm grey).

**What is ground truth for these kinds.** The array :func:`isotropic_volume` returns is the
acquisition itself: what this instrument records when it samples z as finely as x and y,
PSF and noise included. The benchmark protocol keeps every f-th plane of it
(:func:`subsample_z`) and scores the restored planes against the dropped ones, exactly like
the real-data protocol (volumes acquired isotropically, then subsampled). So the planes
engines are scored against carry the PSF and the noise too, as on real data: no engine can
predict the noise of a dropped plane, which caps PSNR (an engine that returned the
noise-free planes would still score below infinity), and ``fluo`` planes are blurrier along
z than in x/y. ``photons=None`` gives the same structure with the same PSF and no noise,
e.g. to measure that cap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError

__all__ = [
    "KINDS",
    "ACQUISITION_KINDS",
    "isotropic_volume",
    "subsample_z",
    "make_sample_stack",
    "write_sample_stack",
    "sample_stack",
    "sample_ground_truth",
    "SAMPLE_PATH",
    "FLUO_AXIAL_RATIO",
    "FLUO_OFFSET",
    "FLUO_READ_NOISE",
    "FLUO_BACKGROUND",
    "MRI_FULL_SCALE",
]

ACQUISITION_KINDS = ("fluo", "mri", "em")
"""Kinds that mimic a real acquisition (anisotropic PSF, detector noise models, dense texture)."""
KINDS = ("cells", "fibers", "texture") + ACQUISITION_KINDS
"""Every kind :func:`isotropic_volume` makes (the order fixes each kind's random stream)."""

SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "sample_stack.tif"
"""The bundled anisotropic sample (regenerate with ``python -m volsr.samples``)."""

SAMPLE_SEED = 2026
SAMPLE_FACTOR = 4
SAMPLE_XY_SPACING = 0.25  # µm
SAMPLE_GT_SHAPE = (61, 128, 128)  # (16 - 1) * 4 + 1 planes: the measured planes sit on the output grid exactly


# ---------------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------------
def _check_shape(shape) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise InputError(f"shape must be a (Z, Y, X) tuple of ints, got {shape!r}") from None
    if len(out) != 3 or min(out) < 4:
        raise InputError(f"shape must be (Z, Y, X) with every size >= 4, got {shape!r}")
    return out  # type: ignore[return-value]


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """n rotation matrices, uniformly distributed (QR of Gaussian matrices with sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    return q


def _bandpass_noise(rng: np.random.Generator, shape, small: float, large: float) -> np.ndarray:
    """Isotropic noise with structure between ``small`` and ``large`` voxels, unit variance.

    Coarse structure (``small`` >= 4 voxels) is made on a grid 4x coarser and upsampled
    linearly: the same statistics, ~60x less filtering work.
    """
    shape = tuple(shape)
    coarse = 4 if small >= 4 else 1
    grid = shape if coarse == 1 else tuple(max(2, -(-s // coarse) + 1) for s in shape)
    noise = rng.standard_normal(grid, dtype=np.float32)
    lo = ndi.gaussian_filter(noise, small / coarse, mode="wrap", truncate=3.0)
    hi = ndi.gaussian_filter(noise, large / coarse, mode="wrap", truncate=3.0)
    bp = lo - hi
    if coarse > 1:
        bp = ndi.zoom(bp, [s / g for s, g in zip(shape, grid)], order=1, mode="nearest", grid_mode=False)
        bp = bp[tuple(slice(0, s) for s in shape)]
    return bp / max(float(bp.std()), 1e-12)


def _paint_ellipsoids(shape, centres, forms, axes_len, reach, brightness) -> np.ndarray:
    """Anti-aliased solid ellipsoids (quadratic forms ``forms``), overlaps keep the brighter."""
    out = np.zeros(shape, np.float32)
    for c, m, a, rr, b in zip(centres, forms, axes_len, reach, brightness):
        box_lo = np.maximum(np.floor(c - rr).astype(int), 0)
        box_hi = np.minimum(np.ceil(c + rr).astype(int) + 1, shape)
        if np.any(box_hi <= box_lo):
            continue
        dz, dy, dx = np.ogrid[box_lo[0]:box_hi[0], box_lo[1]:box_hi[1], box_lo[2]:box_hi[2]]
        dz, dy, dx = dz - c[0], dy - c[1], dx - c[2]
        q = (
            m[0, 0] * dz * dz + m[1, 1] * dy * dy + m[2, 2] * dx * dx
            + 2.0 * (m[0, 1] * dz * dy + m[0, 2] * dz * dx + m[1, 2] * dy * dx)
        )
        # Anti-aliased edge about one voxel wide: coverage ramps from 1 inside to 0 outside.
        inside = np.clip((1.0 - np.sqrt(q)) * a.mean() + 0.5, 0.0, 1.0).astype(np.float32) * np.float32(b)
        view = out[box_lo[0]:box_hi[0], box_lo[1]:box_hi[1], box_lo[2]:box_hi[2]]
        np.maximum(view, inside, out=view)
    return out


def _walk(rng: np.random.Generator, shape, pos, direction, lengths, step: float, turn: float):
    """Persistent random walks: the flat index of every in-volume step and its walker's index.

    ``pos`` and ``direction`` (n, 3) are updated in place.
    """
    dims = np.array(shape)
    walkers = np.arange(len(lengths))
    flat_parts, id_parts = [], []
    for k in range(int(np.ceil(lengths.max() / step))):
        alive = k * step < lengths
        idx = np.rint(pos).astype(np.int64)
        ok = alive & np.all((idx >= 0) & (idx < dims), axis=1)
        if ok.any():
            flat_parts.append(np.ravel_multi_index(idx[ok].T, shape))
            id_parts.append(walkers[ok])
        # Small isotropic turns, renormalised.
        direction += rng.normal(0.0, turn, size=direction.shape)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        pos += step * direction
    flat = np.concatenate(flat_parts) if flat_parts else np.zeros(0, np.int64)
    ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int64)
    return flat, ids


def _cells(rng: np.random.Generator, shape) -> np.ndarray:
    nz, ny, nx = shape
    r_min, r_max, fill = 3.0, 9.0, 0.22
    radii = rng.uniform(r_min, r_max, size=100_000)
    mean_volume = float(np.mean(4.0 / 3.0 * np.pi * radii**3))
    n = max(3, int(round(fill * nz * ny * nx / mean_volume)))
    centres, forms, axes_len, reach = _ellipsoids_of_radii(rng, shape, radii[:n])
    brightness = rng.uniform(0.45, 1.0, size=n)

    nuclei = _paint_ellipsoids(shape, centres, forms, axes_len, reach, brightness)
    chromatin = 0.75 + 0.12 * _bandpass_noise(rng, shape, 0.8, 2.5)
    background = 0.06 + 0.03 * _bandpass_noise(rng, shape, 6.0, 16.0)
    return nuclei * np.clip(chromatin, 0.3, 1.2) + np.clip(background, 0.0, None)


def _fibers(rng: np.random.Generator, shape) -> np.ndarray:
    nz, ny, nx = shape
    step, mean_length, density = 0.5, 120.0, 0.04
    n = max(2, int(round(density * nz * ny * nx / mean_length)))
    lengths = rng.uniform(0.4, 1.6, size=n) * mean_length
    margin = 0.5 * mean_length
    lo = np.array([-margin] * 3)
    hi = np.array(shape, float) + margin
    pos = lo + rng.random((n, 3)) * (hi - lo)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    thick = rng.random(n) < 0.35
    weight = rng.uniform(0.5, 1.0, size=n)

    flat, ids = _walk(rng, shape, pos, direction, lengths, step, 0.06)
    size = nz * ny * nx
    wts = weight[ids] * step
    grp = thick[ids]
    lines = [np.bincount(flat[grp == g], weights=wts[grp == g], minlength=size) for g in (False, True)]

    out = np.zeros(shape, np.float32)
    for line, sigma in zip(lines, (0.9, 1.8)):
        tube = ndi.gaussian_filter(line.reshape(shape).astype(np.float32), sigma)
        out += tube * np.float32(2.0 * np.pi * sigma**2)  # same peak brightness for thin and thick tubes
    background = 0.03 + 0.015 * _bandpass_noise(rng, shape, 6.0, 16.0)
    return out + np.clip(background, 0.0, None)


def _texture(rng: np.random.Generator, shape) -> np.ndarray:
    bp = _bandpass_noise(rng, shape, 1.2, 3.5)
    # A soft threshold turns the Gaussian field into bright blobs and ridges on a dark background.
    return np.log1p(np.exp(2.0 * (bp - 0.5))).astype(np.float32)


_GENERATORS = {"cells": _cells, "fibers": _fibers, "texture": _texture}


# ---------------------------------------------------------------------------------------------
# acquisition-like kinds: structure + an explicit imaging model (PSF, detector noise)
# ---------------------------------------------------------------------------------------------
FLUO_AXIAL_RATIO = 2.5
"""Axial / lateral Gaussian PSF width of ``fluo`` (a widefield or confocal PSF is elongated in z)."""
FLUO_OFFSET = 10.0
"""``fluo`` camera offset (ADU, gain 1 ADU per photon)."""
FLUO_READ_NOISE = 1.6
"""``fluo`` Gaussian read noise (ADU rms), an sCMOS-like camera."""
FLUO_BACKGROUND = 1.0
"""``fluo`` expected background photons per voxel (autofluorescence, out-of-focus haze)."""
MRI_FULL_SCALE = 1.25
"""``mri`` magnitude that maps to 1.0: white matter (magnitude 1) sits at 0.8."""

_DEFAULT_PSF = {"cells": 0.7, "fibers": 0.7, "texture": 0.7, "fluo": 1.0, "mri": 1.0, "em": 0.8}
_DEFAULT_PHOTONS = {"cells": 300.0, "fibers": 300.0, "texture": 300.0, "fluo": 45.0, "mri": 625.0, "em": 120.0}


def _point_response(sigmas) -> float:
    """Peak of the discrete Gaussian filter's response to a unit impulse (what a point source becomes)."""
    size = [2 * int(np.ceil(4.0 * s)) + 1 for s in sigmas]
    delta = np.zeros(size, np.float32)
    delta[tuple(n // 2 for n in size)] = 1.0
    return float(ndi.gaussian_filter(delta, sigmas).max())


def _ellipsoids_of_radii(rng, shape, radii, elongation=0.25):
    """Randomly oriented ellipsoids of the given radii: centres, quadratic forms, semi-axes, reaches.

    Centres lie in the volume extended by each reach, so the boundary planes see as many cut
    objects along z as along y and x (no axis is special).
    """
    n = len(radii)
    axes_len = radii[:, None] * rng.uniform(1.0 - elongation, 1.0 + elongation, size=(n, 3))
    rot = _random_rotations(rng, n)
    # M = R diag(1/a^2) R^T: the ellipsoid's quadratic form in (z, y, x) coordinates.
    forms = np.einsum("nij,nj,nkj->nik", rot, 1.0 / axes_len**2, rot)
    reach = axes_len.max(axis=1) + 1.0
    lo = -reach[:, None]
    hi = np.array(shape, float)[None, :] + reach[:, None]
    centres = lo + rng.random((n, 3)) * (hi - lo)
    return centres, forms, axes_len, reach


def _random_ellipsoids(rng, shape, n, r_min, r_max, elongation=0.25):
    """``n`` ellipsoids with radii uniform in [r_min, r_max] (see :func:`_ellipsoids_of_radii`)."""
    return _ellipsoids_of_radii(rng, shape, rng.uniform(r_min, r_max, size=n), elongation)


def _fluo(rng: np.random.Generator, shape, psf_sigma: float, photons: float | None, peak: float) -> np.ndarray:
    """Sparse fluorescent objects -> anisotropic PSF -> camera (Poisson + read noise + offset)."""
    nz, ny, nx = shape
    size = nz * ny * nx
    # Objects, in units of the brightness they should have after the PSF (1 = the brightest).
    n_nuc = max(1, int(round(0.04 * size / (4.0 / 3.0 * np.pi * 5.5**3))))
    centres, forms, axes_len, reach = _random_ellipsoids(rng, shape, n_nuc, 3.5, 7.5)
    nuclei = _paint_ellipsoids(shape, centres, forms, axes_len, reach, rng.uniform(0.35, 0.8, size=n_nuc))
    nuclei *= np.clip(0.85 + 0.2 * _bandpass_noise(rng, shape, 0.8, 2.5), 0.3, 1.4)

    sig = (FLUO_AXIAL_RATIO * psf_sigma, psf_sigma, psf_sigma)
    tube = 0.5  # process radius (Gaussian sigma, voxels): below the PSF, as for most neurites
    eff_lat, eff_ax = np.hypot(tube, psf_sigma), np.hypot(tube, sig[0])
    # Line density (length per voxel) -> peak after a tube + PSF blur ~ 1 / (2 pi s_a s_b): take the
    # mean cross-section of a randomly oriented line so brightness is right on average.
    line_gain = 2.0 * np.pi * eff_lat * np.sqrt(eff_lat * eff_ax)
    n_proc = max(1, int(round(0.0015 * size / 80.0)))
    lengths = rng.uniform(0.4, 1.6, size=n_proc) * 80.0
    margin = 40.0
    pos = -margin + rng.random((n_proc, 3)) * (np.array(shape, float) + 2 * margin)
    direction = rng.standard_normal((n_proc, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    flat, ids = _walk(rng, shape, pos, direction, lengths, 0.5, 0.08)
    lines = np.bincount(flat, weights=rng.uniform(0.4, 0.9, size=n_proc)[ids] * 0.5, minlength=size)
    processes = ndi.gaussian_filter(lines.reshape(shape).astype(np.float32), tube) * np.float32(line_gain)

    n_punct = max(1, int(round(size / 2500.0)))
    puncta = np.zeros(size, np.float32)
    gain = 1.0 / _point_response(sig) if psf_sigma > 0 else 1.0
    np.add.at(puncta, rng.integers(0, size, n_punct), rng.uniform(0.3, 1.0, size=n_punct) * gain)

    obj = nuclei + processes + puncta.reshape(shape)
    if psf_sigma > 0:
        obj = ndi.gaussian_filter(obj, sig)
    haze = np.clip(0.03 + 0.02 * _bandpass_noise(rng, shape, 6.0, 16.0), 0.0, None)
    signal = np.clip(obj + haze, 0.0, None) * peak + FLUO_BACKGROUND  # expected photons per voxel
    if photons is None:
        adu = signal + FLUO_OFFSET
    else:
        adu = rng.poisson(signal) + FLUO_OFFSET + rng.normal(0.0, FLUO_READ_NOISE, size=shape)
    return np.clip(adu / (FLUO_OFFSET + 2.0 * peak), 0.0, 1.0).astype(np.float32)


def _mri(rng: np.random.Generator, shape, psf_sigma: float, photons: float | None, peak: float) -> np.ndarray:
    """A head-like slab: scalp, skull, CSF, folded grey/white matter, ventricles; Rician noise."""
    nz, ny, nx = shape
    size = float(min(ny, nx))
    centre = np.array([nz / 2.0 + rng.uniform(-0.1, 0.1) * size, ny / 2.0, nx / 2.0])
    # Physically round head: the z semi-axis is in-plane sized, so a shallow volume is a slab through it.
    semi = size * np.array([0.44, 0.44, 0.37]) * rng.uniform(0.95, 1.05, size=3)
    z, y, x = np.ogrid[:nz, :ny, :nx]
    q = np.sqrt(((z - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2
                + ((x - centre[2]) / semi[2]) ** 2).astype(np.float32)
    q = q + 0.015 * _bandpass_noise(rng, shape, max(4.0, size / 12.0), size / 4.0)  # a not-quite ellipsoid
    fold_scale = max(1.0, size / 40.0)
    folds = _bandpass_noise(rng, shape, fold_scale, 3.0 * fold_scale)
    t = q / 0.82  # 0 at the centre, 1 at the brain surface

    # Tissue classes (T1-like contrast, white matter = 1), outermost first; later ones overwrite.
    vol = np.zeros(shape, np.float32)
    vol[q < 1.0] = 0.75  # scalp / fat
    vol[q < 0.93] = 0.06  # skull
    vol[q < 0.87] = 0.18  # CSF
    # Folded cortex: a grey band of constant depth below a wrinkled surface; CSF fills the sulci.
    depth = t + 0.1 * folds
    brain = t < 1.0
    vol[brain & (depth < 1.0)] = 0.62  # grey matter
    vol[depth < 0.86] = 1.0  # white matter
    # Deep grey nuclei and the lateral ventricles (mirror pairs about the midline).
    for offset, semi_r, value in ((0.18, (0.16, 0.10, 0.06), 0.78), (0.07, (0.12, 0.16, 0.045), 0.18)):
        for side in (-1.0, 1.0):
            c = centre + np.array([0.0, 0.02, side * offset]) * semi * 2.0
            r = np.array(semi_r) * size
            inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1.0
            vol[inside] = value
    vol *= (1.0 + 0.08 * _bandpass_noise(rng, shape, size / 6.0, size / 2.0)).astype(np.float32)  # coil bias
    if psf_sigma > 0:
        vol = ndi.gaussian_filter(vol, psf_sigma)  # partial-volume effect
    if photons is not None:
        # Rician: magnitude of a complex signal with Gaussian noise in both channels.
        noise_sigma = 1.0 / np.sqrt(photons)
        re = vol + rng.normal(0.0, noise_sigma, size=shape).astype(np.float32)
        im = rng.normal(0.0, noise_sigma, size=shape).astype(np.float32)
        vol = np.sqrt(re * re + im * im)
    return np.clip(vol / MRI_FULL_SCALE, 0.0, 1.0).astype(np.float32)


def _em(rng: np.random.Generator, shape, psf_sigma: float, photons: float | None, peak: float) -> np.ndarray:
    """Dense EM-like neuropil: a 3D Voronoi tessellation with dark membranes, vesicle clusters."""
    pad = 6  # seeds around the volume too, so cells at the faces are not larger than inside
    padded = tuple(s + 2 * pad for s in shape)
    n_cells = max(4, int(round(np.prod(padded) / 2500.0)))
    seeds = np.zeros(padded, np.int32)
    seeds[tuple(rng.integers(0, s, n_cells) for s in padded)] = np.arange(1, n_cells + 1, dtype=np.int32)
    nearest = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    labels = seeds[tuple(nearest)]
    del nearest
    # Membrane: voxels whose +1 neighbour along any axis is another cell, thickened by a profile.
    edge = np.zeros(padded, bool)
    for axis in range(3):
        lo = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        edge[tuple(lo)] |= np.diff(labels, axis=axis) != 0
    crop = tuple(slice(pad, pad + s) for s in shape)
    dist = ndi.distance_transform_edt(~edge)[crop].astype(np.float32)
    labels = labels[crop]
    membrane = np.exp(-0.5 * (dist / 0.7) ** 2)

    cyto = (0.62 + 0.05 * rng.standard_normal(n_cells + 1)).astype(np.float32)[labels]
    cyto += 0.03 * _bandpass_noise(rng, shape, 0.7, 2.0)
    # Vesicles in clusters (synapse-like), each a small dark blob about 2 voxels across.
    size = int(np.prod(shape))
    n_clusters = max(1, int(round(size / 40_000.0)))
    members = 25
    where = rng.random((n_clusters, 3)) * np.array(shape, float)
    pts = np.rint(where[:, None, :] + rng.normal(0.0, 3.0, size=(n_clusters, members, 3))).reshape(-1, 3)
    pts = pts[np.all((pts >= 0) & (pts < np.array(shape)), axis=1)].astype(np.int64)
    dots = np.zeros(size, np.float32)
    np.add.at(dots, np.ravel_multi_index(pts.T, shape), 1.0)
    vesicles = ndi.gaussian_filter(dots.reshape(shape), 0.9) / np.float32(_point_response((0.9, 0.9, 0.9)))
    vol = cyto * (1.0 - 0.7 * membrane) * (1.0 - 0.5 * np.clip(vesicles, 0.0, 1.0))
    if psf_sigma > 0:
        vol = ndi.gaussian_filter(vol, psf_sigma)
    if photons is not None:
        vol = vol + rng.normal(0.0, 0.62 / np.sqrt(photons), size=shape).astype(np.float32)
    return np.clip(vol, 0.0, 1.0).astype(np.float32)


_ACQUISITIONS = {"fluo": _fluo, "mri": _mri, "em": _em}


def isotropic_volume(
    shape: tuple[int, int, int] = (64, 256, 256),
    seed: int = 0,
    kind: str = "cells",
    dtype: str = "float32",
    psf_sigma: float | None = None,
    photons: float | str | None = "auto",
) -> np.ndarray:
    """A deterministic 3D volume (Z, Y, X) sampled on an isotropic grid.

    ``cells``, ``fibers`` and ``texture`` are clean and statistically isotropic; ``fluo``,
    ``mri`` and ``em`` (:data:`ACQUISITION_KINDS`) imitate real acquisitions, including their
    PSF and detector noise (see the module docstring). Either way the returned array is the
    ground truth of the benchmark protocol: keep every f-th plane (:func:`subsample_z`) as
    the input, score the restored planes against the dropped ones.

    Parameters
    ----------
    shape : (int, int, int)
        (Z, Y, X) size, each >= 4.
    seed : int
        Random seed; the same seed gives the same volume.
    kind : {'cells', 'fibers', 'texture', 'fluo', 'mri', 'em'}
        The kind of structure (see the module docstring).
    dtype : {'float32', 'uint16'}
        float32 in [0, 1], or uint16 scaled to [0, 65535].
    psf_sigma : float, optional
        Width (voxels) of the Gaussian blur standing in for the PSF; 0 for none. Default
        (None): the kind's own, 0.7 for cells/fibers/texture, 0.8 for ``em``, 1.0 for ``mri``
        (partial-volume blur) and 1.0 for ``fluo``, where it is the *lateral* width and the
        axial width is :data:`FLUO_AXIAL_RATIO` (2.5) times larger.
    photons : float, 'auto' or None
        Noise level, as a photon count: the signal-to-noise ratio at the kind's reference
        intensity is ``sqrt(photons)``. cells/fibers/texture: Poisson noise with ``photons``
        expected photons at intensity 1 (default 300). ``fluo``: expected photons at the
        brightest structures (default 45), Poisson, plus read noise and a camera offset.
        ``mri``: Rician noise, Gaussian sigma ``1 / sqrt(photons)`` of the white-matter
        magnitude in each of the real and imaginary channels (default 625: 4 %). ``em``:
        Gaussian noise, sigma ``1 / sqrt(photons)`` of the cytoplasm grey (default 120: 9 %).
        ``'auto'``: the kind's default. None: noise-free (the same structure, same PSF).

    Returns
    -------
    numpy.ndarray
        Shape ``shape``.

    Examples
    --------
    >>> vol = isotropic_volume((16, 32, 32), seed=1, kind="texture")
    >>> vol.shape, vol.dtype, float(vol.min()) >= 0, float(vol.max()) <= 1
    ((16, 32, 32), dtype('float32'), True, True)
    >>> em = isotropic_volume((16, 32, 32), seed=1, kind="em")
    >>> bool(np.array_equal(em, isotropic_volume((16, 32, 32), seed=1, kind="em")))
    True
    """
    shape = _check_shape(shape)
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if str(np.dtype(dtype)) not in ("float32", "uint16"):
        raise InputError(f"dtype must be 'float32' or 'uint16', got {dtype!r}")
    if psf_sigma is None:
        psf_sigma = _DEFAULT_PSF[kind]
    if not (isinstance(psf_sigma, (int, float, np.integer, np.floating)) and np.isfinite(psf_sigma)
            and psf_sigma >= 0):
        raise InputError(f"psf_sigma must be >= 0 voxels or None, got {psf_sigma!r}")
    if isinstance(photons, str):
        if photons != "auto":
            raise InputError(f"photons must be a positive number, 'auto' or None, got {photons!r}")
        photons = _DEFAULT_PHOTONS[kind]
    if photons is not None and not (
        isinstance(photons, (int, float, np.integer, np.floating)) and np.isfinite(photons) and photons > 0
    ):
        raise InputError(f"photons must be a positive number, 'auto' or None, got {photons!r}")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"seed must be an integer, got {seed!r}") from None
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    if kind in _ACQUISITIONS:
        peak = float(photons) if photons is not None else _DEFAULT_PHOTONS[kind]
        vol = _ACQUISITIONS[kind](rng, shape, float(psf_sigma), photons, peak)
    else:
        vol = _GENERATORS[kind](rng, shape).astype(np.float32, copy=False)
        if psf_sigma > 0:
            vol = ndi.gaussian_filter(vol, psf_sigma)
        # Scale so the brightest structures (not single outliers) reach 1.
        top = float(np.percentile(vol, 99.9))
        vol = np.clip(vol / max(top, 1e-12), 0.0, 1.0).astype(np.float32)
        if photons is not None:
            vol = (rng.poisson(vol * photons) / photons).astype(np.float32)
            np.clip(vol, 0.0, 1.0, out=vol)
    if str(np.dtype(dtype)) == "uint16":
        return np.rint(vol * 65535.0).astype(np.uint16)
    return vol


def subsample_z(volume: np.ndarray, factor: int, axial_sigma: float | None = None, offset: int = 0) -> np.ndarray:
    """Keep every ``factor``-th z plane, optionally after an axial blur (a thick PSF).

    Parameters
    ----------
    volume : numpy.ndarray
        (Z, Y, X), or (..., Z, Y, X) with z third from last.
    factor : int
        Keep one plane in ``factor`` (>= 1).
    axial_sigma : float, optional
        Gaussian blur along z (voxels) before subsampling: the light a thick optical section
        collects from neighbouring planes. None or 0 for a plain subset of planes (the MSDSR
        paper's setting).
    offset : int
        Index of the first kept plane, ``0 <= offset < factor``.

    Returns
    -------
    numpy.ndarray
        Planes ``offset, offset + factor, ...``; same dtype (blurred integers are rounded).

    Examples
    --------
    >>> import numpy as np
    >>> subsample_z(np.arange(9 * 2 * 2).reshape(9, 2, 2), 4)[:, 0, 0]
    array([ 0, 16, 32])
    """
    vol = np.asarray(volume)
    if vol.ndim < 3:
        raise InputError(f"volume must be (Z, Y, X) or (..., Z, Y, X), got shape {vol.shape}")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"factor must be an integer >= 1, got {factor!r}")
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or not 0 <= offset < factor:
        raise InputError(f"offset must be an integer in [0, {factor}), got {offset!r}")
    if axial_sigma is not None and not (np.isfinite(axial_sigma) and axial_sigma >= 0):
        raise InputError(f"axial_sigma must be >= 0 voxels or None, got {axial_sigma!r}")
    if axial_sigma:
        blurred = ndi.gaussian_filter1d(vol.astype(np.float32), float(axial_sigma), axis=-3, mode="nearest")
        if np.issubdtype(vol.dtype, np.integer):
            info = np.iinfo(vol.dtype)
            blurred = np.clip(np.rint(blurred), info.min, info.max)
        vol = blurred.astype(volume.dtype)
    return np.ascontiguousarray(vol[..., offset::factor, :, :])


# ---------------------------------------------------------------------------------------------
# the bundled sample
# ---------------------------------------------------------------------------------------------
def sample_ground_truth() -> np.ndarray:
    """The isotropic volume the bundled sample was cut from: (61, 128, 128) uint16, 0.25 µm voxels.

    Regenerated deterministically (not shipped). Its planes 0, 4, 8, ... are the sample's 16
    measured planes, and its 61 planes are exactly the output grid of a 4x restoration, so a
    restored sample can be scored against it directly.
    """
    return isotropic_volume(SAMPLE_GT_SHAPE, seed=SAMPLE_SEED, kind="cells", dtype="uint16")


def make_sample_stack():
    """Build the bundled anisotropic sample in memory.

    Returns
    -------
    volsr.io.Stack
        (16, 128, 128) uint16, axes ``ZYX``, spacing (1.0, 0.25, 0.25) µm, so ``z_factor`` = 4:
        every 4th plane of :func:`sample_ground_truth`.
    """
    from .io import Stack

    data = subsample_z(sample_ground_truth(), SAMPLE_FACTOR)
    spacing = (SAMPLE_XY_SPACING * SAMPLE_FACTOR, SAMPLE_XY_SPACING, SAMPLE_XY_SPACING)
    return Stack(data=data, axes="ZYX", spacing=spacing, unit="µm", path=None)


def write_sample_stack(path=None, overwrite: bool = True) -> Path:
    """(Re)write the sample as OME-TIFF (default: the bundled ``volsr/data/sample_stack.tif``)."""
    from .io import write_stack

    stack = make_sample_stack()
    target = Path(path) if path is not None else SAMPLE_PATH
    return write_stack(
        target, stack.data, stack.axes, spacing=stack.spacing, unit=stack.unit, overwrite=overwrite,
        metadata={"Name": "volsr synthetic sample (cells, 4x z-subsampled)"},
    )


def sample_stack():
    """The bundled anisotropic sample as a :class:`volsr.io.Stack` (read from the shipped file).

    Falls back to :func:`make_sample_stack` (identical data) if the file is missing from the
    installation.

    Examples
    --------
    >>> s = sample_stack()
    >>> s.data.shape, s.axes, s.z_factor
    ((16, 128, 128), 'ZYX', 4.0)
    """
    from .io import read_stack

    if SAMPLE_PATH.exists():
        return read_stack(SAMPLE_PATH)
    return make_sample_stack()


if __name__ == "__main__":  # python -m volsr.samples  -> regenerate the bundled file
    print(write_sample_stack())
