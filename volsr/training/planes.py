"""Training planes: random 2D crops from stacks' XY planes and from folders of 2D images.

The premise of MSDSR is that tissue has no preferred orientation, so a model that learns
XY planes also restores XZ/YZ planes. Training data are therefore plain 2D crops of XY
planes, with flips and 90-degree rotations (orientation invariance is the premise, so the
augmentations are free and exact on the pixel grid).

Augmentation and cropping are plain NumPy driven by one :class:`numpy.random.Generator`:
MONAI's ``RandSpatialCrop``/``RandFlip``/``RandRotate90`` each keep their own
``RandomState``, which makes one seed -> one batch harder to guarantee across the
fitting loop and the resume logic, and the operations are one line each in NumPy.

Default crop: 48 px, the paper's crop. All networks are fully convolutional, so inference
planes of any height (an XZ plane has ``round((Z - 1) * f) + 1`` rows, 61 for 16 planes at
4x) are processed whole. Measured (msunet small, self-supervised fit on a 4x-subsampled
61x128x128 synthetic stack, equal pixels processed: 400 steps at 48 vs 225 at 64): PSNR of
the restored planes 28.6 vs 28.3 dB (cells) and 31.0 vs 30.6 dB (fibers), linear
interpolation 25.5 / 28.0 dB; and 48 px runs 13 vs 8.3 steps/s at batch 16 on 2 idle CPU
cores. 48 px still holds 6+ known rows at 8x.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, VolsrError
from ..io import IMAGE_SUFFIXES, read_image_2d  # noqa: F401  (read_image_2d: re-exported for compatibility)
from ..io import PLAIN_2D_SUFFIXES as _PLAIN_2D_SUFFIXES
from ..normalize import PercentileNormalizer

__all__ = ["PlaneData", "PlaneTriplets", "as_plane_data", "as_triplet_data", "read_image_2d", "DEFAULT_CROP"]

DEFAULT_CROP = 48


# -- reading --------------------------------------------------------------------------------
def _read_volume(path: Path) -> np.ndarray:
    from ..io import read_stack  # lazy: io pulls optional readers

    stack = read_stack(path)
    return np.asarray(stack.canonical())


def _as_czyx(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    elif arr.ndim != 4:
        raise InputError(
            f"{what} has shape {arr.shape}; arrays must be (Y, X), (Z, Y, X) or (C, Z, Y, X) — "
            "read other layouts with volsr.read_stack(path, axes=...).canonical()"
        )
    if arr.size == 0:
        raise InputError(f"{what} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise InputError(f"{what} has non-numeric dtype {arr.dtype}")
    return arr


@dataclass
class _Source:
    name: str
    planes: list  # list of normalised float32 arrays (C, Z, H, W); Z = 1 for 2D images
    kind: str  # 'volume' or 'image'


# -- the dataset ----------------------------------------------------------------------------
@dataclass
class PlaneData:
    """Random augmented 2D crops of normalised training planes.

    Parameters
    ----------
    sources : sequence
        Each item is a (C, Z, Y, X) array (also (Z, Y, X) or (Y, X), single channel), a
        path to a stack file (read with :func:`volsr.io.read_stack`; PNG/JPEG/BMP files
        are read as 2D images), or a folder of 2D images (TIFF/PNG/JPEG/BMP, grayscale or
        multi-channel). The XY planes of volumes are used.
    crop : int
        Square crop size in pixels (>= 8; default 48, the paper's — see the module docstring).
    pmin, pmax : float
        Percentiles for :class:`volsr.normalize.PercentileNormalizer`, fitted per volume and
        per 2D image (each acquisition has its own intensity scale, as at inference).
    augment : bool
        Random flips of both axes and random 90-degree rotations.
    min_std : float
        Background rejection: crops whose standard deviation (normalised units, over all
        channels) is below this are redrawn. 0.02 is ~2% of the robust intensity range:
        flat background and camera offset regions, not dim structure.
    min_foreground : float
        Background rejection: crops whose fraction of pixels above ``foreground_level``
        (in any channel) is below this are redrawn. Default 0.01 (1% of the crop).
    foreground_level : float
        Normalised intensity above which a pixel counts as foreground (default 0.2).
    max_retries : int
        Redraws per crop before a background crop is accepted anyway (so training never
        stalls on an almost empty data set; see :attr:`rejected`).
    names : sequence of str, optional
        Names for array sources (provenance); paths use their file names.

    Notes
    -----
    Planes smaller than the crop are reflect-padded up to the crop; planes smaller than
    half the crop in either dimension are refused (mostly mirrored content would be learnt).

    Examples
    --------
    >>> vol = np.random.default_rng(0).random((1, 4, 64, 64)).astype(np.float32)
    >>> data = PlaneData([vol], crop=32)
    >>> data.batch(np.random.default_rng(0), 8).shape
    torch.Size([8, 1, 32, 32])
    """

    sources: Sequence = ()
    crop: int = DEFAULT_CROP
    pmin: float = 0.1
    pmax: float = 99.9
    augment: bool = True
    min_std: float = 0.02
    min_foreground: float = 0.01
    foreground_level: float = 0.2
    max_retries: int = 20
    names: Sequence[str] | None = None
    _sources: list = field(default_factory=list, init=False, repr=False)
    rejected: int = field(default=0, init=False)
    drawn: int = field(default=0, init=False)

    def __post_init__(self):
        if int(self.crop) != self.crop or int(self.crop) < 8:
            raise VolsrError(f"crop must be an integer >= 8 pixels, got {self.crop!r}")
        self.crop = int(self.crop)
        if int(self.max_retries) < 0:
            raise VolsrError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if isinstance(self.sources, (str, Path, np.ndarray)):
            self.sources = [self.sources]
        self.sources = list(self.sources)
        if not self.sources:
            raise InputError("no training data given: pass stack files, image folders or arrays")
        names = list(self.names) if self.names is not None else []
        for i, src in enumerate(self.sources):
            name = names[i] if i < len(names) else None
            self._sources.extend(self._load(src, name, i))
        chans = {s.planes[0].shape[0] for s in self._sources}
        if len(chans) > 1:
            detail = ", ".join(f"{s.name}: {s.planes[0].shape[0]}" for s in self._sources[:8])
            raise InputError(
                f"training data mix channel counts ({detail}); a model has one channel count — "
                "train separate models or convert the images to the same channels"
            )
        self.channels = chans.pop()
        self._index = self._build_index()

    # -- loading ---------------------------------------------------------------------------
    def _normalise(self, arr: np.ndarray) -> np.ndarray:
        return PercentileNormalizer(self.pmin, self.pmax).fit(arr).forward(arr)

    def _prepare(self, czyx: np.ndarray, what: str) -> np.ndarray:
        czyx = self._normalise(czyx)
        h, w = czyx.shape[-2:]
        if min(h, w) < self.crop:
            if min(h, w) < self.crop // 2:
                raise InputError(
                    f"{what} has XY size {h}x{w}, less than half the crop ({self.crop} px); "
                    f"use a smaller crop (e.g. --crop {max(8, (min(h, w) // 8) * 8)}) or larger images"
                )
            ph, pw = max(0, self.crop - h), max(0, self.crop - w)
            czyx = np.pad(czyx, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
        return np.ascontiguousarray(czyx, dtype=np.float32)

    def _load(self, src, name, i) -> list[_Source]:
        if isinstance(src, (str, Path)):
            path = Path(src)
            if not path.exists():
                raise InputError(f"training data {path} does not exist; check the path")
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise InputError(
                        f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                        "point to a folder of 2D images or to stack files"
                    )
                out = []
                for f in files:
                    img = read_image_2d(f)[:, None]  # (C, 1, H, W)
                    out.append(_Source(f"{path.name}/{f.name}", [self._prepare(img, str(f))], "image"))
                return out
            if path.suffix.lower() in _PLAIN_2D_SUFFIXES:
                img = read_image_2d(path)[:, None]
                return [_Source(path.name, [self._prepare(img, str(path))], "image")]
            arr = _as_czyx(_read_volume(path), str(path))
            kind = "volume" if arr.shape[1] > 1 else "image"
            return [_Source(path.name, [self._prepare(arr, str(path))], kind)]
        if isinstance(src, torch.Tensor):
            src = src.detach().cpu().numpy()
        if isinstance(src, np.ndarray):
            what = name or f"array {i}"
            arr = _as_czyx(src, what)
            kind = "volume" if arr.shape[1] > 1 else "image"
            return [_Source(what, [self._prepare(arr, what)], kind)]
        raise InputError(
            f"cannot use {type(src).__name__} as training data; pass arrays, stack files or image folders"
        )

    def _build_index(self):
        entries, weights = [], []
        for si, s in enumerate(self._sources):
            arr = s.planes[0]
            for z in range(arr.shape[1]):
                entries.append((si, z))
                weights.append(arr.shape[2] * arr.shape[3])
        w = np.asarray(weights, dtype=np.float64)
        return entries, w / w.sum()

    # -- description -----------------------------------------------------------------------
    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self._sources]

    @property
    def n_planes(self) -> int:
        return len(self._index[0])

    def describe(self) -> str:
        """One line for logs and model provenance."""
        nv = sum(s.kind == "volume" for s in self._sources)
        ni = len(self._sources) - nv
        return (f"{self.n_planes} planes ({nv} volume(s), {ni} 2D image(s)), {self.channels} channel(s), "
                f"crops {self.crop}x{self.crop}")

    # -- sampling --------------------------------------------------------------------------
    def _is_background(self, crop: np.ndarray) -> bool:
        if self.min_std > 0 and float(crop.std()) < self.min_std:
            return True
        if self.min_foreground > 0:
            fg = float((crop > self.foreground_level).any(axis=0).mean())
            if fg < self.min_foreground:
                return True
        return False

    def _draw_window(self, rng: np.random.Generator, depth: int = 1):
        """Pick (source, z, y, x) for a crop of ``depth`` consecutive planes, rejecting background."""
        entries, p = self._index
        for attempt in range(int(self.max_retries) + 1):
            si, z = entries[int(rng.choice(len(entries), p=p))]
            arr = self._sources[si].planes[0]
            if depth > 1:
                z = int(rng.integers(0, arr.shape[1] - depth + 1))
            y = int(rng.integers(0, arr.shape[2] - self.crop + 1))
            x = int(rng.integers(0, arr.shape[3] - self.crop + 1))
            window = arr[:, z:z + depth, y:y + self.crop, x:x + self.crop]
            self.drawn += 1
            if attempt < self.max_retries and self._is_background(window):
                self.rejected += 1
                continue
            return window

    def _augment(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flips and rot90 of the last two (Y, X) axes, drawn from ``rng``."""
        if not self.augment:
            return window
        if rng.random() < 0.5:
            window = window[..., ::-1, :]
        if rng.random() < 0.5:
            window = window[..., :, ::-1]
        k = int(rng.integers(0, 4))
        if k:
            window = np.rot90(window, k=k, axes=(-2, -1))
        return window

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One augmented crop (C, crop, crop) float32."""
        window = self._draw_window(rng)[:, 0]
        return np.ascontiguousarray(self._augment(window, rng))

    def batch(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        """A batch of crops, float32 tensor (B, C, crop, crop) on the CPU."""
        if int(batch_size) < 1:
            raise VolsrError(f"batch_size must be >= 1, got {batch_size!r}")
        return torch.from_numpy(np.stack([self.sample(rng) for _ in range(int(batch_size))]))

    @property
    def volumes(self) -> list[_Source]:
        return [s for s in self._sources if s.kind == "volume"]


class PlaneTriplets(PlaneData):
    """Three consecutive XY planes (z-1, z, z+1) of volumes, cropped and augmented jointly.

    For the E2E-UNet baseline, which predicts the middle plane from its two neighbours.
    Flips and 90-degree rotations act on (Y, X) of all three planes alike; the order of the
    three planes is also reversed with probability 1/2 (the middle of a pair does not depend
    on which plane comes first). Only volumes with at least 3 planes are used; 2D images
    raise :class:`volsr.errors.VolsrError`.

    ``batch`` returns (B, 3, C, crop, crop).
    """

    def __post_init__(self):
        super().__post_init__()
        usable = [s for s in self._sources if s.kind == "volume" and s.planes[0].shape[1] >= 3]
        if not usable:
            raise VolsrError(
                "the e2e-unet engine needs volumetric training data (z-stacks with at least 3 planes): "
                "it learns to predict an XY plane from its two z neighbours, which 2D images do not have; "
                "pass stack files, or use the msdsr / msunet engines for 2D images"
            )
        self._sources = usable
        self._index = self._build_index()

    def _build_index(self):
        entries, weights = [], []
        for si, s in enumerate(self._sources):
            arr = s.planes[0]
            if arr.shape[1] >= 3:
                entries.append((si, 0))
                weights.append((arr.shape[1] - 2) * arr.shape[2] * arr.shape[3])
        if not entries:  # before the volume check in __post_init__ has run
            return [(0, 0)], np.ones(1)
        w = np.asarray(weights, dtype=np.float64)
        return entries, w / w.sum()

    @property
    def n_planes(self) -> int:
        return int(sum(s.planes[0].shape[1] - 2 for s in self._sources))

    def describe(self) -> str:
        return (f"{self.n_planes} plane triplets from {len(self._sources)} volume(s), {self.channels} channel(s), "
                f"crops {self.crop}x{self.crop}")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One triplet (3, C, crop, crop)."""
        window = self._draw_window(rng, depth=3)  # (C, 3, h, w)
        window = self._augment(window, rng)
        if self.augment and rng.random() < 0.5:
            window = window[:, ::-1]
        return np.ascontiguousarray(np.moveaxis(window, 1, 0))

    def batch(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        """A batch of triplets, float32 tensor (B, 3, C, crop, crop)."""
        return super().batch(rng, batch_size)


def _listify(obj) -> list:
    if isinstance(obj, (str, Path, np.ndarray, torch.Tensor)):
        return [obj]
    if isinstance(obj, Iterable):
        return list(obj)
    return [obj]


def as_plane_data(obj, **kw) -> PlaneData:
    """Training planes from a :class:`PlaneData`, an array, a path or a list of those.

    Keyword arguments go to :class:`PlaneData` (ignored when ``obj`` already is one, except
    that a different ``crop`` is refused with a clear message).
    """
    if isinstance(obj, PlaneTriplets):  # a triplet set used for a plane engine: same sources
        obj = PlaneData(obj.sources, crop=obj.crop, pmin=obj.pmin, pmax=obj.pmax, augment=obj.augment,
                        min_std=obj.min_std, min_foreground=obj.min_foreground,
                        foreground_level=obj.foreground_level, max_retries=obj.max_retries, names=obj.names)
    if isinstance(obj, PlaneData):
        if kw.get("crop") is not None and int(kw["crop"]) != obj.crop:
            raise VolsrError(
                f"the PlaneData was built with crop {obj.crop} but crop {kw['crop']} was asked for; "
                "build it with the crop you want"
            )
        return obj
    kw = {k: v for k, v in kw.items() if v is not None}
    return PlaneData(_listify(obj), **kw)


def as_triplet_data(obj, **kw) -> PlaneTriplets:
    """Like :func:`as_plane_data` but for :class:`PlaneTriplets` (reuses a PlaneData's sources)."""
    if isinstance(obj, PlaneTriplets):
        return obj
    if isinstance(obj, PlaneData):
        kw = {"crop": obj.crop, "pmin": obj.pmin, "pmax": obj.pmax, "augment": obj.augment,
              "min_std": obj.min_std, "min_foreground": obj.min_foreground,
              "foreground_level": obj.foreground_level, "max_retries": obj.max_retries,
              "names": obj.names, **{k: v for k, v in kw.items() if v is not None}}
        return PlaneTriplets(obj.sources, **kw)
    kw = {k: v for k, v in kw.items() if v is not None}
    return PlaneTriplets(_listify(obj), **kw)
