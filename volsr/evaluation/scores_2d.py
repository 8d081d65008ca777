"""Scores of 2D super-resolution: PSNR/SSIM on the luma channel, radial power spectra, spectrum error.

The conventions are those of the SR papers, so numbers compare with theirs:

* **Images** are channel-first arrays with intensities in [0, 1]: ``(H, W)``, ``(C, H, W)`` or a
  batch ``(N, C, H, W)``, with C = 1 (grey) or 3 (RGB). :func:`unit_range` maps integer images
  to [0, 1] by their dtype's maximum (uint8 / 255).
* **Y channel.** RGB is scored on its ITU-R BT.601 luma, ``Y = (16 + 65.481 R + 128.553 G +
  24.966 B) / 255`` (MATLAB's ``rgb2ycbcr`` on [0, 1] RGB, range [16/255, 235/255]); grey images
  as they are. ``data_range`` is 1.
* **PSNR** (:func:`volsr.metrics.psnr`) and **SSIM** (:func:`volsr.metrics.ssim_planes`: Wang et
  al.'s 11x11 Gaussian window, sigma 1.5) per image; a batch reports the mean over its images,
  as papers average over a test set.
* **Border.** ``crop_border`` pixels are cut from every side before any score (papers shave
  ``scale`` pixels, where bicubic and learned models both see padding). The default is 0:
  every pixel counts; pass the scale for papers' numbers.
* **Radial power spectrum** (RPS, :func:`rps`): the Y image z-scored (mean 0, std 1), times a
  2D Hann window, ``|FFT|^2`` with the orthonormal FFT (``norm='ortho'``), averaged in
  ``min(H, W) // 2`` equal radial bins over (0, 0.5] cycles/pixel
  (:func:`volsr.metrics.radial_power_spectrum` with ``normalization='zscore'``); ``log10``
  (floored at :data:`SPECTRUM_FLOOR`), averaged over the images of a batch.
* **Spectrum error** (:func:`spectrum_error_2d`): RMS over the bins of the difference of the
  log10 RPS curves of SR and HR, in decades of power; 0 for a perfect texture match, large when
  fine detail is missing (bicubic) or invented in excess.
* **Curves** (:func:`rps_curves`): HR, LR, SR, and "HR-latent", the HR image passed through a
  latent engine's autoencoder (engines that declare ``capabilities.autoencoder``): what a
  latent-diffusion model can at best give back, the paper's spectral reference. The LR curve
  is that of the LR image upsampled bicubically to the HR grid (the input a latent SR model
  encodes), so every curve shares the HR frequency axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, VolsrError
from ..metrics.paired import psnr, ssim_planes
from ..metrics.spectra import radial_power_spectrum

__all__ = [
    "SPECTRUM_FLOOR",
    "RPSCurves",
    "as_batch",
    "autoencoded",
    "plot_rps",
    "psnr_y",
    "rps",
    "rps_curves",
    "score_2d",
    "spectrum_error_2d",
    "ssim_y",
    "to_y",
    "unit_range",
    "upsample_lr",
]

Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
Y_OFFSET = 16.0 / 255.0
SPECTRUM_FLOOR = 1e-6
"""Lower bound of the z-scored power before the log. 8-bit quantisation alone puts ~1e-5.5 into
every frequency of an image of ordinary contrast; below the floor a spectrum holds no visible
structure, and without it the near-empty tail of a smooth float result (bicubic reaches 1e-8)
would dominate the error and make it depend on the output's dtype."""
MIN_SIDE = 8


def unit_range(image) -> np.ndarray:
    """Intensities in [0, 1] as float64: integer dtypes divided by their maximum, floats as they are."""
    a = np.asarray(image)
    if a.dtype == bool:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"image has non-numeric dtype {a.dtype}")
    return a.astype(np.float64)


def as_batch(images, name: str = "image") -> np.ndarray:
    """``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` (channel-first, C 1 or 3) -> float64 (N, C, H, W)."""
    a = np.asarray(images, dtype=np.float64)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise InputError(f"{name} has shape {np.shape(images)}; expected channel-first (H, W), (C, H, W) or "
                         "(N, C, H, W) with 1 (grey) or 3 (RGB) channels (for H x W x 3 arrays use "
                         "np.moveaxis(a, -1, 0))")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} holds NaN or infinite values; scores are undefined")
    return a


def to_y(images) -> np.ndarray:
    """(N, 1, H, W): the BT.601 luma of RGB images (module docstring), grey images unchanged."""
    a = as_batch(images)
    if a.shape[1] == 1:
        return a
    return (Y_OFFSET + np.tensordot(Y_WEIGHTS, a, axes=([0], [1])))[:, None]


def _shave(a: np.ndarray, border: int, name: str) -> np.ndarray:
    if isinstance(border, bool) or int(border) != border or int(border) < 0:
        raise InputError(f"crop_border must be a whole number of pixels >= 0, got {border!r}")
    b = int(border)
    h, w = a.shape[-2:]
    if min(h, w) - 2 * b < MIN_SIDE:
        raise InputError(f"{name} is {h}x{w} px: cropping {b} px from each border leaves less than "
                         f"{MIN_SIDE} px; use a smaller --crop-border")
    return a[..., b:h - b, b:w - b] if b else a


def _check_same(s: np.ndarray, h: np.ndarray, what: str = "the SR image") -> None:
    if s.shape != h.shape:
        raise InputError(f"{what} {_describe(s)} and the HR reference {_describe(h)} differ: they must have "
                         "the same size and channels (upscale to the reference's size, or crop both alike)")


def _pair(sr, hr, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    """SR and HR as shaved Y batches of the same shape."""
    s, h = as_batch(sr, "SR image"), as_batch(hr, "HR reference")
    _check_same(s, h)
    return _shave(to_y(s), crop_border, "SR image"), _shave(to_y(h), crop_border, "HR reference")


def _describe(a: np.ndarray) -> str:
    n, c, h, w = a.shape
    return f"({h}x{w} px, {c} channel{'s' if c > 1 else ''}" + (f", {n} images)" if n > 1 else ")")


def psnr_y(sr, hr, *, data_range: float = 1.0, crop_border: int = 0) -> float:
    """PSNR (dB) on the Y channel (RGB) or the grey values; the mean over the images of a batch.

    Examples
    --------
    >>> hr = np.full((16, 16), 0.5)
    >>> round(psnr_y(hr + 0.1, hr), 6)  # 10 log10(1 / 0.1^2)
    20.0
    """
    s, h = _pair(sr, hr, crop_border)
    return float(np.mean([psnr(a, b, data_range=data_range) for a, b in zip(s, h)]))


def ssim_y(sr, hr, *, data_range: float = 1.0, crop_border: int = 0) -> float:
    """SSIM (Wang et al. Gaussian window) on the Y channel or grey values; mean over a batch."""
    s, h = _pair(sr, hr, crop_border)
    return ssim_planes(s, h, data_range=data_range)


def rps(images, *, crop_border: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean log10 radial power spectrum of the Y channel (module docstring).

    Returns
    -------
    frequency : array (min(H, W) // 2,)
        Bin centres in cycles/pixel.
    log_power : array (min(H, W) // 2,)
        Mean over the images of ``log10(max(power, SPECTRUM_FLOOR))``.
    """
    y = _shave(to_y(images), crop_border, "image")
    p, k = radial_power_spectrum(y[:, 0], normalization="zscore", return_frequency=True)
    return k, np.log10(np.maximum(p, SPECTRUM_FLOOR)).mean(axis=0)


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def spectrum_error_2d(sr, hr, *, crop_border: int = 0) -> float:
    """RMS difference (decades of power) of the log10 RPS curves of SR and HR; 0 when they match.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> hr = np.random.default_rng(0).random((64, 64))
    >>> spectrum_error_2d(hr, hr), spectrum_error_2d(gaussian_filter(hr, 2), hr) > 0.5
    (0.0, True)
    """
    s, h = _pair(sr, hr, crop_border)
    return _rms(rps(s)[1], rps(h)[1])


def score_2d(sr, hr, *, data_range: float = 1.0, crop_border: int = 0) -> dict:
    """PSNR, SSIM and spectrum error of an SR result against its HR reference (module docstring).

    Returns
    -------
    dict
        ``psnr`` (dB), ``ssim``, ``spectrum_error`` (decades), ``channel`` ('Y' for RGB, 'grey'),
        ``crop_border``, ``images`` (how many were averaged).
    """
    s, h = _pair(sr, hr, crop_border)
    return {"psnr": float(np.mean([psnr(a, b, data_range=data_range) for a, b in zip(s, h)])),
            "ssim": ssim_planes(s, h, data_range=data_range),
            "spectrum_error": _rms(rps(s)[1], rps(h)[1]),
            "channel": "Y" if as_batch(sr).shape[1] == 3 else "grey",
            "crop_border": int(crop_border), "images": int(s.shape[0])}


def upsample_lr(lr, hr_shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Bicubic upsampling of LR images onto the HR grid (the 2D baseline, as ``volsr upscale``).

    The scale is ``H_hr // H_lr``; it must be a whole number >= 1, the same on both axes, and
    ``H_lr = H_hr // scale`` (how :class:`volsr.training.degrade.IsotropicDegradation` makes LR images).
    HR sides that are not a multiple of the scale get the last row/column repeated.

    Returns
    -------
    up : array (N, C, H_hr, W_hr)
    scale : int
    """
    a = as_batch(lr, "LR image")
    (hh, hw), (lh, lw) = hr_shape, a.shape[-2:]
    s = hh // lh if lh else 0
    if s < 1 or hw // lw != s or hh // s != lh or hw // s != lw:
        raise InputError(f"the LR image is {lh}x{lw} px and the HR reference {hh}x{hw} px: not one whole scale "
                         "on both axes (the LR sides must be the HR sides divided by the scale, rounded down)")
    up = F.interpolate(torch.from_numpy(a), scale_factor=s, mode="bicubic", align_corners=False).numpy()
    pad = ((0, 0), (0, 0), (0, hh - lh * s), (0, hw - lw * s))
    return np.pad(up, pad, mode="edge"), s


def autoencoded(engine, images) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] through ``engine``'s autoencoder, in the same units.

    Each image is normalised with the engine's own normaliser (as :func:`volsr.upscale` does),
    passed through :meth:`volsr.engines.base.Engine.autoencode`, and mapped back.
    """
    if not engine.capabilities.autoencoder:
        raise VolsrError(f"engine '{engine.name}' has no latent autoencoder, so there is no HR-latent curve")
    if engine.learned and not engine.trained:
        raise VolsrError(f"the '{engine.name}' engine is untrained; its autoencoder would give noise: train or "
                         "load a model first")
    out = []
    for img in as_batch(images):
        czyx = img[:, None].astype(np.float32)
        norm = engine.cfg.normalizer().fit(czyx)
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(norm.forward(czyx), 1, 0), dtype=np.float32))
        y = engine.autoencode(x.to(engine.device)).float().cpu().numpy()
        out.append(norm.inverse(np.moveaxis(y, 0, 1))[:, 0])
    return np.stack(out).astype(np.float64)


@dataclass
class RPSCurves:
    """Mean log10 RPS curves on one frequency axis: 'HR', 'LR', 'HR-latent' and SR curve(s), those given."""

    frequency: np.ndarray
    log_power: dict

    def error(self, name: str, reference: str = "HR") -> float:
        """Spectrum error (decades) of curve ``name`` against ``reference``."""
        for n in (name, reference):
            if n not in self.log_power:
                raise VolsrError(f"no {n!r} curve; there are {', '.join(self.log_power)}")
        return _rms(self.log_power[name], self.log_power[reference])

    def to_dict(self) -> dict:
        """JSON-ready: ``frequency`` (cycles/pixel) and ``log10_power`` per curve."""
        return {"frequency": [float(f) for f in self.frequency],
                "log10_power": {k: [float(v) for v in c] for k, c in self.log_power.items()}}


def rps_curves(hr, *, sr=None, lr=None, engine=None, crop_border: int = 0) -> RPSCurves:
    """RPS curves of HR and, when given, SR, LR (upsampled to the HR grid) and HR-latent.

    Parameters
    ----------
    hr : array (H, W), (C, H, W) or (N, C, H, W) in [0, 1]
    sr : array like ``hr``, or dict of them, optional
        One SR result (curve 'SR') or several by name (e.g. per engine).
    lr : array (..., H // s, W // s), optional
    engine : volsr.engines.base.Engine, optional
        Adds 'HR-latent' (``hr`` through :func:`autoencoded`) when the engine declares
        ``capabilities.autoencoder``; other engines add nothing.
    crop_border : int
        Pixels cut from every side of every image first.

    Examples
    --------
    >>> hr = np.random.default_rng(0).random((32, 32))
    >>> c = rps_curves(hr, lr=hr[::2, ::2])
    >>> sorted(c.log_power), len(c.frequency), c.error("LR") > 0
    (['HR', 'LR'], 16, True)
    """
    h = as_batch(hr, "HR reference")
    images = {"HR": h}
    if lr is not None:
        images["LR"] = upsample_lr(lr, h.shape[-2:])[0]
    named = sr if isinstance(sr, dict) else ({} if sr is None else {"SR": sr})
    for name, img in named.items():
        images[str(name)] = as_batch(img, f"SR image {name!r}")
        _check_same(images[str(name)], h, f"SR image {name!r}")
    if engine is not None and engine.capabilities.autoencoder:
        images["HR-latent"] = autoencoded(engine, h)
    freq, curves = None, {}
    for name, a in images.items():
        freq, curves[name] = rps(a, crop_border=crop_border)
    return RPSCurves(freq, curves)


def plot_rps(curves: RPSCurves, ax=None, title: str | None = None):
    """Plot the curves (power vs cycles/pixel, log scale) on a matplotlib axis; returns the axis.

    HR is a thick black line, LR dotted grey, HR-latent curves (names starting so) dashed.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=(5, 3.5))[1]
    styles = {"HR": dict(color="black", lw=2), "LR": dict(color="grey", ls=":", lw=2)}
    for name, lp in curves.log_power.items():
        style = styles.get(name, dict(ls="--") if name.startswith("HR-latent") else {})
        ax.semilogy(curves.frequency, 10.0 ** lp, label=name, **style)
    ax.set_xlabel("cycles / pixel")
    ax.set_ylabel("power (z-scored image)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax
