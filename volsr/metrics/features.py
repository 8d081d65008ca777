"""Feature extractors for Frechet distances, pluggable by name.

Every extractor maps a batch of 2D images ``(N, C, H, W)`` with intensities already mapped
to ``[0, 1]`` (see :mod:`volsr.metrics.slicefid` for how planes get there) to an
``(N, D)`` float64 array. ``C`` is 1 (grayscale) or 3 (RGB).

``inception``
    Inception-v3 pool features (2048-d), the standard FID embedding. The network is the
    torchvision architecture; two weight files are accepted and told apart by their
    classifier size:

    * ``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow FID network ported by
      pytorch-fid, 1008 classes). With this file the three pooling quirks of the TF graph
      are reproduced (average pools that do not count padding in Mixed_5b-7b, a max pool
      in Mixed_7c), so values are comparable with published FID numbers. **This is the
      file volsr looks for by default.**
    * torchvision's ``IMAGENET1K_V1`` file (``inception_v3_google-0cc3c7bd.pth``, 1000
      classes). Usable, but its FID values are *not* comparable with published numbers.

    Preprocessing (both files): grayscale replicated to 3 channels; bilinear resize to
    299x299 (``align_corners=False``, no antialiasing, as pytorch-fid does); ``x -> 2x - 1``
    (what both ports of the Google weights expect). Inputs outside [0, 1] are clipped.
    Weights come from (first found): the ``weights`` argument / ``--inception-weights``,
    the ``VOLSR_INCEPTION_WEIGHTS`` environment variable, the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``), or a download when ``download=True`` and online.

``lowlevel``
    A fixed, deterministic, download-free vector of 51 multi-scale statistics: intensity
    quantiles and moments, and at four scales the log energies of horizontal, vertical and
    diagonal first differences, of second differences, their kurtosis, and how unevenly
    gradient energy is spread over rows and columns (the signature of stretched or jittery
    z interpolation). Sensitive to blur and to axis-dependent texture, cheap on CPU.
    **Not comparable with published FID** (different embedding, different scale); use it
    for offline smoke runs, CI and relative comparisons within one run only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelFileError, VolsrError

__all__ = [
    "FeatureExtractor",
    "InceptionExtractor",
    "LowLevelExtractor",
    "get_extractor",
    "list_extractors",
    "find_inception_weights",
    "FID_WEIGHTS_URL",
    "FID_WEIGHTS_FILE",
]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
TORCHVISION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
ENV_WEIGHTS = "VOLSR_INCEPTION_WEIGHTS"


class FeatureExtractor:
    """Base class: ``extractor(images (N, C, H, W) in [0, 1]) -> (N, D) float64``."""

    name: ClassVar[str] = ""
    comparable_to_published: ClassVar[bool] = False
    dim: int = 0

    def __init__(self, batch_size: int = 64):
        if int(batch_size) < 1:
            raise VolsrError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def __call__(self, images) -> np.ndarray:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise VolsrError(
                f"images must be (N, C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float64)
        out = [self._features(x[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        return np.concatenate(out, axis=0).astype(np.float64)

    def _features(self, x: torch.Tensor) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance for result tables: name, dim, whether numbers match published FID."""
        return {"features": self.name, "dim": self.dim, "comparable_to_published": self.comparable_to_published}


# ----------------------------------------------------------------------------- lowlevel
def _kurtosis(v: np.ndarray) -> np.ndarray:
    """log1p of the kurtosis E[(v-m)^4] / E[(v-m)^2]^2 over the last axis."""
    c = v - v.mean(axis=-1, keepdims=True)
    c2 = c * c
    m2 = c2.mean(axis=-1)
    m4 = (c2 * c2).mean(axis=-1)
    return np.log1p(m4 / (m2 * m2 + 1e-12))


def _halve(x: np.ndarray) -> np.ndarray:
    """2x2 mean pooling of (N, H, W) (odd trailing row/column dropped)."""
    n, h, w = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


class LowLevelExtractor(FeatureExtractor):
    """Deterministic multi-scale gradient statistics (51 numbers per channel).

    NOT comparable with published FID; see the module docstring. Needs images of at least
    24x24 pixels (four scales, each halving the size; the coarsest needs 3x3 for second
    differences). Pure NumPy (float64): tiny
    per-image operations are many times faster single-threaded than through torch's
    thread pool on a busy CPU.
    """

    name = "lowlevel"
    comparable_to_published = False
    n_scales = 4
    min_size = 24
    _eps = 1e-8

    def __init__(self, batch_size: int = 512, n_channels: int = 1):
        super().__init__(batch_size)
        self.n_channels = n_channels
        self.dim = 51 * n_channels

    def _one_channel(self, x: np.ndarray) -> np.ndarray:
        # x: (N, H, W) float64 in [0, 1]
        n = x.shape[0]
        flat = x.reshape(n, -1)
        q = np.quantile(flat, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1).T
        feats = [q, flat.mean(axis=1, keepdims=True), flat.std(axis=1, ddof=1, keepdims=True)]
        level = x
        for s in range(self.n_scales):
            if s > 0:
                level = _halve(level)
            gx = np.diff(level, axis=2)  # along columns (x)
            gy = np.diff(level, axis=1)  # along rows (z in XZ/YZ slices)
            d1 = level[:, 1:, 1:] - level[:, :-1, :-1]
            d2 = level[:, 1:, :-1] - level[:, :-1, 1:]
            gxx = np.diff(gx, axis=2)
            gyy = np.diff(gy, axis=1)
            gxy = np.diff(gx, axis=1)
            energies = [np.square(g).reshape(n, -1).mean(axis=1) for g in (gx, gy, d1, d2, gxx, gyy, gxy)]
            feats.append(np.log(np.stack(energies, axis=1) + self._eps))
            feats.append(np.stack([_kurtosis(gx.reshape(n, -1)), _kurtosis(gy.reshape(n, -1))], axis=1))
            # unevenness of vertical-gradient energy over rows, horizontal over columns:
            row_e = np.log(np.square(gy).mean(axis=2) + self._eps)
            col_e = np.log(np.square(gx).mean(axis=1) + self._eps)
            feats.append(np.stack([row_e.std(axis=1, ddof=1), col_e.std(axis=1, ddof=1)], axis=1))
        return np.concatenate(feats, axis=1)

    def _features(self, x: torch.Tensor) -> np.ndarray:
        if min(x.shape[-2:]) < self.min_size:
            raise VolsrError(
                f"lowlevel features need images of at least {self.min_size} px per side, "
                f"got {tuple(x.shape[-2:])}; use a larger --crop"
            )
        if x.shape[1] != self.n_channels:
            raise VolsrError(
                f"this lowlevel extractor was built for {self.n_channels} channel(s), got {x.shape[1]}"
            )
        a = np.clip(x.numpy().astype(np.float64), 0.0, 1.0)
        return np.concatenate([self._one_channel(a[:, c]) for c in range(a.shape[1])], axis=1)


# ----------------------------------------------------------------------------- inception
def _torchvision():
    try:
        import torchvision  # noqa: F401
        from torchvision.models import inception as tv_inception
    except ImportError:
        raise VolsrError(
            "the 'inception' features need torchvision, which is not installed; "
            "install it with: pip install 'volsr[metrics]' (or use --features lowlevel for offline runs)"
        ) from None
    return tv_inception


def find_inception_weights(weights: str | os.PathLike | None = None) -> Path | None:
    """Where the Inception weights would be loaded from, or None if no file is found.

    Order: ``weights`` argument, ``$VOLSR_INCEPTION_WEIGHTS``, the torch hub cache
    (pytorch-fid file first, then torchvision's). An explicitly given path that does not
    exist is an error (a typo should not silently fall back to another file).
    """
    for given, origin in ((weights, "--inception-weights"), (os.environ.get(ENV_WEIGHTS), ENV_WEIGHTS)):
        if given:
            p = Path(given).expanduser()
            if not p.is_file():
                raise ModelFileError(
                    f"Inception weights file given by {origin} does not exist: {p}; "
                    f"download {FID_WEIGHTS_URL} and pass its path"
                )
            return p
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    for pattern in ("pt_inception-2015-12-05*.pth", "inception_v3_google-*.pth"):
        found = sorted(ckpt.glob(pattern))
        if found:
            return found[0]
    return None


def _missing_weights_error() -> ModelFileError:
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    return ModelFileError(
        "Inception-v3 FID weights not found (no internet here, nothing in the cache). "
        f"On a machine with internet download {FID_WEIGHTS_URL} (~92 MB), copy it here and either "
        f"pass --inception-weights /path/to/{FID_WEIGHTS_FILE}, set {ENV_WEIGHTS}=/path/to/{FID_WEIGHTS_FILE}, "
        f"or put it into {ckpt}/. For offline smoke runs use --features lowlevel "
        "(not comparable with published FID)."
    )


def _fid_blocks(tv_inception):
    """Subclasses of torchvision's Inception blocks with the TF-graph pooling of FID."""

    def avg_no_pad(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    def max_pool(x):
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)

    def make(base, pool):
        class Block(base):
            def _forward(self, x):
                # all branches as torchvision computes them; only the pooled branch differs
                outputs = super()._forward(x)
                outputs[-1] = self.branch_pool(pool(x))
                return outputs

        Block.__name__ = "FID" + base.__name__
        return Block

    return {
        "A": make(tv_inception.InceptionA, avg_no_pad),
        "C": make(tv_inception.InceptionC, avg_no_pad),
        "E1": make(tv_inception.InceptionE, avg_no_pad),
        "E2": make(tv_inception.InceptionE, max_pool),
    }


def _build_inception(num_classes: int, fid_variant: bool):
    tv = _torchvision()
    model = tv.Inception3(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=False)
    if fid_variant:
        b = _fid_blocks(tv)
        model.Mixed_5b = b["A"](192, pool_features=32)
        model.Mixed_5c = b["A"](256, pool_features=64)
        model.Mixed_5d = b["A"](288, pool_features=64)
        model.Mixed_6b = b["C"](768, channels_7x7=128)
        model.Mixed_6c = b["C"](768, channels_7x7=160)
        model.Mixed_6d = b["C"](768, channels_7x7=160)
        model.Mixed_6e = b["C"](768, channels_7x7=192)
        model.Mixed_7b = b["E1"](1280)
        model.Mixed_7c = b["E2"](2048)
    return model


class InceptionExtractor(FeatureExtractor):
    """Inception-v3 2048-d pool features (standard FID embedding). See the module docstring.

    Parameters
    ----------
    weights : path, "random" or None
        Weight file; None searches ``$VOLSR_INCEPTION_WEIGHTS`` and the torch hub cache.
        ``"random"`` builds the network with seeded random weights — only for testing the
        pipeline; its numbers mean nothing.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    download : bool
        Try to download the pytorch-fid weights into the hub cache when none are found.
    seed : int
        Seed for ``weights="random"``.
    """

    name = "inception"
    dim = 2048

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        batch_size: int = 32,
        download: bool = False,
        seed: int = 0,
    ):
        super().__init__(batch_size)
        from ..runtime.hardware import resolve_device

        self.device = resolve_device(device)
        if isinstance(weights, str) and weights == "random":
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            try:
                model = _build_inception(1008, fid_variant=True)
                for m in model.modules():  # variance-preserving, so features are O(1)
                    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            finally:
                torch.random.set_rng_state(gen_state)
            self.weights_path = None
            self.variant = "random"
        else:
            path = find_inception_weights(weights)
            if path is None and download:
                try:
                    torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, progress=True)
                except Exception:  # noqa: BLE001 - any network failure means "not available"
                    raise _missing_weights_error() from None
                path = find_inception_weights(None)
            if path is None:
                raise _missing_weights_error()
            model, self.variant = self._load(path)
            self.weights_path = path
        self.comparable_to_published = self.variant == "pytorch-fid"
        model.fc = torch.nn.Identity()
        self.model = model.eval().to(self.device)

    @staticmethod
    def _load(path: Path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"cannot read Inception weights {path}: {err}; re-download {FID_WEIGHTS_URL}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        fc = state.get("fc.weight") if isinstance(state, dict) else None
        if fc is None or fc.shape[0] not in (1000, 1008):
            raise ModelFileError(
                f"{path} is not an Inception-v3 weight file (pytorch-fid {FID_WEIGHTS_FILE} or torchvision "
                f"{TORCHVISION_WEIGHTS_FILE}); download {FID_WEIGHTS_URL}"
            )
        fid_variant = fc.shape[0] == 1008
        model = _build_inception(int(fc.shape[0]), fid_variant=fid_variant)
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFileError(f"Inception weights {path} do not fit the network: {err}") from None
        return model, ("pytorch-fid" if fid_variant else "torchvision-imagenet")

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, torch.float32).clamp(0.0, 1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=False)
        x = 2.0 * x - 1.0
        return self.model(x).reshape(x.shape[0], -1).double().cpu().numpy()

    def describe(self) -> dict:
        d = super().describe()
        d["inception_weights"] = self.variant if self.weights_path is None else f"{self.variant}:{self.weights_path.name}"
        return d


_EXTRACTORS = {"inception": InceptionExtractor, "lowlevel": LowLevelExtractor}


def list_extractors() -> list[str]:
    """Names accepted by :func:`get_extractor` (``--features``)."""
    return sorted(_EXTRACTORS)


def get_extractor(
    name: str,
    *,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    n_channels: int = 1,
    batch_size: int | None = None,
    download: bool = False,
) -> FeatureExtractor:
    """Create a feature extractor by name.

    Parameters
    ----------
    name : {"inception", "lowlevel"}
    device : str
        Only used by ``inception``.
    weights : path, "random" or None
        Only used by ``inception`` (see :class:`InceptionExtractor`).
    n_channels : int
        Channels per image the extractor will see (1 or 3); ``lowlevel`` builds its
        per-channel vector accordingly, ``inception`` accepts both.
    batch_size : int, optional
    download : bool
        ``inception`` only: try the standard download when no weight file is found.

    Examples
    --------
    >>> ex = get_extractor("lowlevel")
    >>> ex(np.random.default_rng(0).random((2, 1, 32, 32))).shape
    (2, 51)
    """
    if name not in _EXTRACTORS:
        raise VolsrError(f"unknown feature extractor '{name}'; choose one of: {', '.join(list_extractors())}")
    if n_channels not in (1, 3):
        raise VolsrError(f"n_channels must be 1 or 3, got {n_channels}")
    if name == "lowlevel":
        return LowLevelExtractor(batch_size=batch_size or 512, n_channels=n_channels)
    return InceptionExtractor(weights, device=device, batch_size=batch_size or 32, download=download)
