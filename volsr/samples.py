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

All kinds are blurred by a small isotropic Gaussian (a PSF with the same width along every
axis) and get mild Poisson (shot) noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError

__all__ = [
    "KINDS",
    "isotropic_volume",
    "subsample_z",
    "make_sample_stack",
    "write_sample_stack",
    "sample_stack",
    "sample_ground_truth",
    "SAMPLE_PATH",
]

KINDS = ("cells", "fibers", "texture")

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


def _cells(rng: np.random.Generator, shape) -> np.ndarray:
    nz, ny, nx = shape
    r_min, r_max, fill = 3.0, 9.0, 0.22
    radii = rng.uniform(r_min, r_max, size=100_000)
    mean_volume = float(np.mean(4.0 / 3.0 * np.pi * radii**3))
    n = max(3, int(round(fill * nz * ny * nx / mean_volume)))
    radii = radii[:n]
    axes_len = radii[:, None] * rng.uniform(0.75, 1.25, size=(n, 3))
    rot = _random_rotations(rng, n)
    # M = R diag(1/a^2) R^T: the ellipsoid's quadratic form in (z, y, x) coordinates.
    forms = np.einsum("nij,nj,nkj->nik", rot, 1.0 / axes_len**2, rot)
    reach = axes_len.max(axis=1) + 1.0
    # Centres in the volume extended by the reach, so the boundary planes see as many cut
    # nuclei along z as along y and x (no axis is special).
    lo = -reach[:, None]
    hi = np.array(shape, float)[None, :] + reach[:, None]
    centres = lo + rng.random((n, 3)) * (hi - lo)
    brightness = rng.uniform(0.45, 1.0, size=n)

    nuclei = np.zeros(shape, np.float32)
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
        view = nuclei[box_lo[0]:box_hi[0], box_lo[1]:box_hi[1], box_lo[2]:box_hi[2]]
        np.maximum(view, inside, out=view)

    chromatin = 0.75 + 0.12 * _bandpass_noise(rng, shape, 0.8, 2.5)
    background = 0.06 + 0.03 * _bandpass_noise(rng, shape, 6.0, 16.0)
    return nuclei * np.clip(chromatin, 0.3, 1.2) + np.clip(background, 0.0, None)


def _fibers(rng: np.random.Generator, shape) -> np.ndarray:
    nz, ny, nx = shape
    step, mean_length, density = 0.5, 120.0, 0.04
    n = max(2, int(round(density * nz * ny * nx / mean_length)))
    lengths = rng.uniform(0.4, 1.6, size=n) * mean_length
    n_steps = int(np.ceil(lengths.max() / step))
    margin = 0.5 * mean_length
    lo = np.array([-margin] * 3)
    hi = np.array(shape, float) + margin
    pos = lo + rng.random((n, 3)) * (hi - lo)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    thick = rng.random(n) < 0.35
    weight = rng.uniform(0.5, 1.0, size=n)

    dims = np.array(shape)
    flat_parts, weight_parts, group_parts = [], [], []
    for k in range(n_steps):
        alive = k * step < lengths
        idx = np.rint(pos).astype(np.int64)
        ok = alive & np.all((idx >= 0) & (idx < dims), axis=1)
        if ok.any():
            flat_parts.append(np.ravel_multi_index(idx[ok].T, shape))
            weight_parts.append(weight[ok] * step)
            group_parts.append(thick[ok])
        # Persistent random walk: small isotropic turns, renormalised.
        direction += rng.normal(0.0, 0.06, size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        pos += step * direction
    size = nz * ny * nx
    flat = np.concatenate(flat_parts) if flat_parts else np.zeros(0, np.int64)
    wts = np.concatenate(weight_parts) if weight_parts else np.zeros(0)
    grp = np.concatenate(group_parts) if group_parts else np.zeros(0, bool)
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


def isotropic_volume(
    shape: tuple[int, int, int] = (64, 256, 256),
    seed: int = 0,
    kind: str = "cells",
    dtype: str = "float32",
    psf_sigma: float = 0.7,
    photons: float | None = 300.0,
) -> np.ndarray:
    """A deterministic, statistically isotropic 3D volume (Z, Y, X).

    Parameters
    ----------
    shape : (int, int, int)
        (Z, Y, X) size, each >= 4.
    seed : int
        Random seed; the same seed gives the same volume.
    kind : {'cells', 'fibers', 'texture'}
        The kind of structure (see the module docstring).
    dtype : {'float32', 'uint16'}
        float32 in [0, 1], or uint16 scaled to [0, 65535].
    psf_sigma : float
        Width (voxels) of the isotropic Gaussian blur standing in for an isotropic PSF; 0 for none.
    photons : float or None
        Expected photon count at intensity 1 for Poisson noise (smaller = noisier); None for a
        noise-free volume.

    Returns
    -------
    numpy.ndarray
        Shape ``shape``.

    Examples
    --------
    >>> vol = isotropic_volume((16, 32, 32), seed=1, kind="texture")
    >>> vol.shape, vol.dtype, float(vol.min()) >= 0, float(vol.max()) <= 1
    ((16, 32, 32), dtype('float32'), True, True)
    """
    shape = _check_shape(shape)
    if kind not in _GENERATORS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if str(np.dtype(dtype)) not in ("float32", "uint16"):
        raise InputError(f"dtype must be 'float32' or 'uint16', got {dtype!r}")
    if not (np.isfinite(psf_sigma) and psf_sigma >= 0):
        raise InputError(f"psf_sigma must be >= 0 voxels, got {psf_sigma!r}")
    if photons is not None and not (np.isfinite(photons) and photons > 0):
        raise InputError(f"photons must be a positive number or None, got {photons!r}")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"seed must be an integer, got {seed!r}") from None
    rng = np.random.default_rng([seed, KINDS.index(kind)])
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
