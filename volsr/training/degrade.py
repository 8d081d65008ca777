"""How training pairs are made: the one place that says what "low resolution" means.

Every learned engine learns to undo a *degradation* of high-resolution 2D planes. Two kinds:

``rows`` (:class:`RowDegradation`)
    What a z-stack's XZ/YZ planes look like: only some rows are measured. Optionally the plane
    is first blurred along the rows with the axial PSF, because real stacks are blurred in z
    as well as subsampled (confocal, widefield and light-sheet axial PSFs are 2-4x the
    lateral; an MRI slice profile likewise). A model trained this way deconvolves as well as
    fills in (the IsotropicCARE arrangement). Default: no PSF (pure subsampling, as MSDSR).
``isotropic`` (:class:`IsotropicDegradation`)
    In-plane super-resolution (the 2D papers): Gaussian blur, then downsample by ``scale``.

The degradation is part of an engine's config (stored in its model file), and the trainer,
the evaluation protocols and the benchmarks all use these objects, so training and
evaluation degrade data the same way.

PSF units: ``psf_sigma`` and ``psf_profile`` are in *output rows* (the restored grid, whose z
spacing equals the xy spacing). The sigma to give is the axial blur beyond the lateral one,
``sqrt(sigma_z**2 - sigma_xy**2)``: the XY training planes already carry the lateral blur.
:func:`psf_sigma_rows` converts physical units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, VolsrError

__all__ = [
    "Degradation", "RowDegradation", "IsotropicDegradation", "degradation_from_dict",
    "gaussian_kernel", "psf_sigma_rows", "profile_from_psf_file", "blur_rows",
]


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1D Gaussian taps, radius ``ceil(truncate * sigma)`` (as scipy.ndimage)."""
    radius = max(1, int(math.ceil(truncate * float(sigma))))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def blur_rows(planes: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolve (N, C, H, W) along H with a 1D kernel (odd length, reflect borders)."""
    n, c, h, w = planes.shape
    k = torch.as_tensor(np.asarray(kernel, dtype=np.float64), dtype=planes.dtype, device=planes.device)
    r = (k.numel() - 1) // 2
    x = planes.permute(0, 1, 3, 2).reshape(n * c * w, 1, h)  # rows last for conv1d
    mode = "reflect" if r < h else "replicate"
    x = F.conv1d(F.pad(x, (r, r), mode=mode), k.flip(0)[None, None])
    return x.reshape(n, c, w, h).permute(0, 1, 3, 2).contiguous()


class Degradation:
    """Base: ``kind`` names the family; ``to_dict``/``degradation_from_dict`` round-trip it."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)  # type: ignore[call-overload]
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}


@dataclass(frozen=True)
class RowDegradation(Degradation):
    """Keep some rows of a plane, after an optional blur along the rows (the axial PSF).

    Parameters
    ----------
    psf_sigma : float
        Gaussian sigma of the extra axial blur in output rows (0 = none).
    psf_profile : tuple of float
        A measured axial profile sampled at the output row spacing (odd length, peak in the
        middle; normalised here). Used instead of ``psf_sigma`` when given.

    Examples
    --------
    >>> d = RowDegradation(psf_sigma=2.0)
    >>> x = torch.zeros(1, 1, 21, 1); x[0, 0, 10] = 1
    >>> y = d.blur(x)[0, 0, :, 0]
    >>> round(float(y.sum()), 6), int(y.argmax())
    (1.0, 10)
    """

    kind: ClassVar[str] = "rows"
    psf_sigma: float = 0.0
    psf_profile: tuple[float, ...] = ()

    def __post_init__(self):
        s = self.psf_sigma
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and 0 <= s <= 64):
            raise VolsrError(f"the axial PSF sigma must be a number in [0, 64] output rows, got {s!r}")
        prof = tuple(float(v) for v in self.psf_profile)
        if prof:
            if len(prof) % 2 == 0 or min(prof) < 0 or sum(prof) <= 0 or not all(map(math.isfinite, prof)):
                raise VolsrError("a measured PSF profile needs an odd number of non-negative values with a "
                                 "positive sum (peak in the middle)")
        object.__setattr__(self, "psf_profile", prof)
        object.__setattr__(self, "psf_sigma", float(s))

    @property
    def has_psf(self) -> bool:
        return bool(self.psf_profile) or self.psf_sigma > 0

    def kernel(self) -> np.ndarray | None:
        """The 1D axial kernel (normalised), or None without a PSF."""
        if self.psf_profile:
            k = np.asarray(self.psf_profile, dtype=np.float64)
            return k / k.sum()
        if self.psf_sigma > 0:
            return gaussian_kernel(self.psf_sigma)
        return None

    def blur(self, planes: torch.Tensor) -> torch.Tensor:
        """The planes as the microscope would see them along the rows (identity without a PSF)."""
        k = self.kernel()
        return planes if k is None else blur_rows(planes, k)

    def measured(self, hr: torch.Tensor) -> torch.Tensor:
        """What the known rows of a training plane hold: the (blurred) HR plane.

        Only the rows a mask marks as known are read from the result; the target of the
        unknown rows stays the sharp HR plane.
        """
        return self.blur(hr)


@dataclass(frozen=True)
class IsotropicDegradation(Degradation):
    """Gaussian blur, then downsample by ``scale`` in both axes (the 2D papers' setting).

    ``sigma`` defaults to ``(scale - 1) / 2`` (scikit-image's anti-aliasing choice).

    Examples
    --------
    >>> IsotropicDegradation(scale=2)(torch.ones(1, 1, 8, 6)).shape
    torch.Size([1, 1, 4, 3])
    """

    kind: ClassVar[str] = "isotropic"
    scale: int = 4
    sigma: float | None = None

    def __post_init__(self):
        if isinstance(self.scale, bool) or int(self.scale) != self.scale or int(self.scale) < 1:
            raise VolsrError(f"the upscaling factor must be a whole number >= 1, got {self.scale!r}")
        object.__setattr__(self, "scale", int(self.scale))
        if self.sigma is not None and not (math.isfinite(float(self.sigma)) and float(self.sigma) >= 0):
            raise VolsrError(f"the degradation blur sigma must be >= 0, got {self.sigma!r}")

    @property
    def blur_sigma(self) -> float:
        return float(self.sigma) if self.sigma is not None else max(0.0, (self.scale - 1) / 2)

    def __call__(self, hr: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H // scale, W // scale)."""
        h, w = hr.shape[-2:]
        if min(h, w) < self.scale:
            raise InputError(f"a {h}x{w} image is smaller than the scale {self.scale}")
        x = hr
        if self.blur_sigma > 0:
            k = gaussian_kernel(self.blur_sigma)
            x = blur_rows(x, k)
            x = blur_rows(x.transpose(-1, -2), k).transpose(-1, -2)
        s = self.scale
        return x[..., s // 2::s, s // 2::s][..., : h // s, : w // s].contiguous()


_KINDS = {"rows": RowDegradation, "isotropic": IsotropicDegradation}


def degradation_from_dict(data: dict | Degradation | None) -> Degradation:
    """Inverse of ``Degradation.to_dict`` (``None`` -> pure row decimation)."""
    if data is None:
        return RowDegradation()
    if isinstance(data, Degradation):
        return data
    d = dict(data)
    kind = d.pop("kind", "rows")
    if kind not in _KINDS:
        raise VolsrError(f"unknown degradation kind {kind!r}; accepted: {', '.join(_KINDS)}")
    try:
        return _KINDS[kind](**d)
    except TypeError as err:
        raise VolsrError(f"bad settings for the {kind!r} degradation: {err}") from None


def psf_sigma_rows(value: str | float, xy_spacing: float | None) -> float:
    """``'2'`` (output rows) or ``'0.8um'`` / ``'800nm'`` (physical) -> sigma in output rows.

    The output grid's z spacing equals the xy spacing, so physical sigma / xy spacing.
    """
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower().replace("µ", "u")
    units = {"um": 1.0, "nm": 1e-3, "mm": 1e3}
    for suffix, mult in units.items():
        if text.endswith(suffix):
            if not xy_spacing:
                raise InputError(
                    f"--psf-sigma-z {value} is in physical units but the stack has no xy spacing; "
                    "give it in output pixels (a plain number) or pass --spacing"
                )
            return float(text[: -len(suffix)]) * mult / float(xy_spacing)
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--psf-sigma-z {value!r} is not a number (output pixels) or a length like 0.8um") from None


def profile_from_psf_file(path, z_spacing: float, xy_spacing: float) -> tuple[float, ...]:
    """The axial profile of a measured PSF stack (ZYX TIFF), resampled to output rows.

    The profile is the sum over each z plane (robust to a PSF off the lateral centre),
    background-subtracted, centred on its peak and resampled from ``z_spacing`` to
    ``xy_spacing`` (the output row spacing) by linear interpolation.
    """
    import tifffile

    try:
        psf = np.asarray(tifffile.imread(str(path)), dtype=np.float64)
    except Exception as err:
        raise InputError(f"cannot read the PSF file {path}: {err}") from None
    if psf.ndim != 3 or psf.shape[0] < 3:
        raise InputError(f"the PSF file {path} must be a ZYX stack with >= 3 planes, got shape {psf.shape}")
    prof = psf.sum(axis=(1, 2))
    prof = np.clip(prof - prof.min(), 0, None)
    if prof.sum() <= 0:
        raise InputError(f"the PSF file {path} is constant; it holds no PSF")
    peak = int(prof.argmax())
    z = (np.arange(prof.size) - peak) * float(z_spacing) / float(xy_spacing)  # in output rows
    half = int(np.floor(min(-z[0], z[-1])))
    if half < 1:
        raise InputError(f"the PSF in {path} is not sampled on both sides of its peak")
    rows = np.arange(-half, half + 1, dtype=np.float64)
    out = np.interp(rows, z, prof)
    return tuple(float(v) for v in out / out.sum())
