"""The one interface every engine speaks.

The volume pipeline, CLI, napari widget and notebooks only ever call what is defined here,
so a new engine (MSDSR, a baseline UNet, a published 2D model) plugs in without touching
them.

Plane convention: ``planes`` is a float32 tensor (N, C, H, W) of *normalised* intensities
(see :mod:`volsr.normalize`), the rows (H) are the sparse axis, and ``known`` is a bool
tensor (H,) or (N, H) that is True on measured rows. Values on unknown rows are undefined
(the pipeline puts zeros there). ``restore`` returns a tensor of the same shape whose known
rows equal the input exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InputError, VolsrError
from ..runtime.hardware import resolve_device
from ..training.masks import row_mask

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``; may raise :class:`volsr.errors.Cancelled` to stop."""


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; callers ask this instead of probing attributes.

    Attributes
    ----------
    rows : bool
        Restores the unknown rows of planes (:meth:`Engine.restore`): z restoration through the
        sliced XZ/YZ pipeline.
    upscale : bool
        Upscales images in-plane by an integer scale (:meth:`Engine.upscale`).
    volume : bool
        Restores a whole volume on the output z grid itself (:meth:`Engine.restore_volume`);
        the pipeline hands it the volume instead of planes.
    learned : bool
        Has weights: fits on data, saves/loads a model file.
    stochastic : bool
        Results are samples: seeds matter and ``n_samples > 1`` gives an uncertainty map.
    options : frozenset of str
        Per-call options (fields of :class:`RestoreOptions`) it takes beyond the common ones
        (``seed``, ``batch_size``); any other option is refused.
    training_data : {'planes', 'triplets'}
        What the trainer feeds it: 2D crops with row masks, or XY plane triplets (E2E-UNet).
    autoencoder : bool
        Works in the latent space of an image autoencoder: :meth:`Engine.autoencode` passes
        images through it (encode, decode). Latent-diffusion SR can at best reproduce what the
        autoencoder keeps, so its output is the spectral reference ("HR-latent") of the 2D
        evaluation.
    distil : bool
        Has a one-step sampler that trains on a fitted model (:meth:`distil`, ``volsr distil``).
    """

    rows: bool = True
    upscale: bool = False
    volume: bool = False
    learned: bool = False
    stochastic: bool = False
    options: frozenset[str] = frozenset()
    training_data: str = "planes"
    autoencoder: bool = False
    distil: bool = False


def check_batch_size(batch_size, name: str = "batch size") -> None:
    """The one check of a planes-per-call count: None (default) or a whole number >= 1."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise InputError(f"{name} must be a whole number of planes >= 1, got {batch_size!r}")


@dataclass(frozen=True)
class RestoreOptions:
    """Per-call restoration options, one object for every engine.

    ``None`` means "the model's / engine's default". An engine that does not declare an
    option in :attr:`Capabilities.options` refuses it when it is set (:func:`check_options`).
    """

    seed: int | None = None
    batch_size: int | None = None
    sampling_steps: int | None = None
    sampler: str | None = None
    eta: float | None = None
    inference_mode: str | None = None
    noise_match: float | None = None
    timestep_spacing: str | None = None
    realism: float | None = None

    def __post_init__(self):
        check_batch_size(self.batch_size, "batch_size")
        if self.realism is not None and not (0.0 <= float(self.realism) <= 1.0):
            raise VolsrError(f"realism must be a number in [0, 1], got {self.realism!r}")

    def set_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def replace(self, **changes) -> RestoreOptions:
        return dataclasses.replace(self, **changes)


COMMON_OPTIONS = frozenset({"seed", "batch_size"})
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(RestoreOptions))


def make_options(options: RestoreOptions | None = None, **kwargs: Any) -> RestoreOptions:
    """Merge keyword options into a :class:`RestoreOptions`; unknown names are refused."""
    unknown = sorted(set(kwargs) - OPTION_NAMES)
    if unknown:
        raise VolsrError(f"unknown restore option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(OPTION_NAMES))}")
    base = options or RestoreOptions()
    return base.replace(**{k: v for k, v in kwargs.items() if v is not None}) if kwargs else base


def check_options(engine_name: str, caps: Capabilities, options: RestoreOptions) -> None:
    """Refuse an option the engine does not take, the same way for every engine."""
    taken = COMMON_OPTIONS | caps.options
    extra = sorted(k for k in options.set_fields() if k not in taken)
    if extra:
        raise VolsrError(
            f"engine '{engine_name}' does not take the option(s) {', '.join(extra)}; "
            f"it takes: {', '.join(sorted(taken))}"
        )


def paste_known(restored: torch.Tensor, planes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Return ``restored`` with the known rows replaced by the measured values."""
    n, _, h, _ = planes.shape
    return torch.where(row_mask(known, n, h, planes.device), planes, restored)


class Engine:
    """Restores 2D planes whose rows are partly measured (and/or upscales images).

    Subclasses set ``name``, ``capabilities`` and implement :meth:`_restore` (rows),
    :meth:`_upscale` (upscale) or :meth:`restore_volume` (volume). Engines that learn derive
    from :class:`volsr.engines.learned.LearnedEngine`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, device: str | torch.device | None = "cpu", **options: Any):
        if options:
            raise VolsrError(f"engine '{self.name}' has no settings; got {', '.join(sorted(options))}")
        self.device = resolve_device(device)

    @property
    def learned(self) -> bool:
        return self.capabilities.learned

    @property
    def channels_last_network(self) -> torch.nn.Module | None:
        """The network the fast precisions hold channels-last (:mod:`volsr.runtime.precision`): only where it
        was measured to pay (the MSDSR denoiser); None elsewhere."""
        return None

    @property
    def supports_uncertainty(self) -> bool:
        return self.capabilities.stochastic

    # -- the interface -------------------------------------------------------------------
    def restore(self, planes: torch.Tensor, known: torch.Tensor, options: RestoreOptions | None = None, *,
                progress: Callable | None = None, cancel: Callable[[], bool] | None = None,
                generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        """Fill the unknown rows of ``planes`` (N, C, H, W); known rows come back unchanged.

        ``options`` (or the same names as keywords) are checked against the engine's
        declared :attr:`Capabilities.options`.
        """
        opts = self._prepare(planes, known, options, kwargs)
        known = torch.as_tensor(known, dtype=torch.bool)
        out = self._restore(planes, known, opts, progress=progress, cancel=cancel, generator=generator)
        return paste_known(out, planes, known)

    def _prepare(self, planes, known, options, kwargs) -> RestoreOptions:
        if not self.capabilities.rows:
            raise VolsrError(f"engine '{self.name}' does not restore planes row by row; "
                             "use the volume pipeline (volsr.restore / volsr infer)")
        opts = make_options(options, **kwargs)
        check_options(self.name, self.capabilities, opts)
        if planes.ndim != 4:
            raise VolsrError(f"planes must be (N, C, H, W), got shape {tuple(planes.shape)}")
        known = torch.as_tensor(known, dtype=torch.bool)
        n, _, h, _ = planes.shape
        row_mask(known, n, h)  # validates the shape
        if not bool(known.any()):
            raise VolsrError("no known rows: nothing to restore from")
        return opts

    def restore_with_std(
        self, planes: torch.Tensor, known: torch.Tensor, n_samples: int, options: RestoreOptions | None = None, *,
        progress: Callable | None = None, cancel: Callable[[], bool] | None = None, **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and per-pixel std (Bessel-corrected) of ``n_samples`` restorations.

        Deterministic engines: one restoration, std 0. Stochastic engines draw all samples
        from one generator seeded by ``seed`` (independent noise); the std is an uncertainty
        map, 0 on measured rows. ``n_samples = 1`` gives a zero std.
        """
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or int(n_samples) < 1:
            raise VolsrError(f"n_samples must be a whole number >= 1, got {n_samples!r}")
        if not self.capabilities.stochastic:
            out = self.restore(planes, known, options, progress=progress, cancel=cancel, **kwargs)
            return out, torch.zeros_like(out)
        n_samples = int(n_samples)
        opts = make_options(options, **kwargs)
        gen = self._generator_for(opts.seed)
        opts = opts.replace(seed=None)
        mean = m2 = None
        for k in range(n_samples):
            def prog(stage, done, total, _k=k):  # one count over all samples: the bar never runs backwards
                progress(stage, _k * total + done, n_samples * total)
            s = self.restore(planes, known, opts, generator=gen, progress=prog if progress else None,
                             cancel=cancel).double()
            if mean is None:
                mean, m2 = s.clone(), torch.zeros_like(s)
            else:  # Welford: numerically stable running mean/variance
                delta = s - mean
                mean += delta / (k + 1)
                m2 += delta * (s - mean)
        std = (m2 / (n_samples - 1)).sqrt() if n_samples > 1 else m2
        n, _, h, _ = planes.shape
        zero = torch.zeros((), dtype=planes.dtype, device=planes.device)
        std = torch.where(row_mask(known, n, h, planes.device), zero, std.to(planes.dtype))
        return paste_known(mean.to(planes.dtype), planes, known), std

    def _generator_for(self, seed: int | None) -> torch.Generator:
        """The noise generator of one call of a stochastic engine (``seed`` None -> 0)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed or 0))
        return gen

    def _call_generator(self, options: RestoreOptions, generator: torch.Generator | None) -> torch.Generator:
        """A caller's generator, unless this call's ``seed`` asks for a fresh one."""
        return generator if generator is not None and options.seed is None else self._generator_for(options.seed)

    def _restore(self, planes: torch.Tensor, known: torch.Tensor, options: RestoreOptions, *,
                 progress=None, cancel=None, generator=None) -> torch.Tensor:
        """Engine-specific restoration; the caller pastes the known rows afterwards."""
        raise NotImplementedError

    def restore_volume(self, volume_czyx, grid, options: RestoreOptions | None = None, *,
                       progress=None, cancel=None):
        """Whole-volume restoration (engines with ``capabilities.volume``).

        The known planes are ``grid.good_positions``: planes listed in ``grid.damaged`` are in
        the volume but must be restored like unmeasured rows (the pipeline pastes back only the
        good planes).
        """
        raise VolsrError(f"engine '{self.name}' does not restore whole volumes")

    def upscale(self, images: torch.Tensor, scale: int, options: RestoreOptions | None = None, *,
                progress=None, cancel=None, generator=None, **kwargs: Any) -> torch.Tensor:
        """Upscale (N, C, H, W) images in-plane by an integer ``scale`` -> (N, C, H*s, W*s)."""
        if not self.capabilities.upscale:
            raise VolsrError(f"engine '{self.name}' does not upscale images in-plane; choose a 2D engine")
        opts = make_options(options, **kwargs)
        check_options(self.name, self.capabilities, opts)
        if images.ndim != 4 or min(images.shape[-2:]) < 2:
            raise VolsrError(f"images must be (N, C, H, W) with H, W >= 2, got shape {tuple(images.shape)}")
        if isinstance(scale, bool) or int(scale) != scale or int(scale) < 1:
            raise VolsrError(f"the scale must be a whole number >= 1, got {scale!r}")
        out = self._upscale(images, int(scale), opts, progress=progress, cancel=cancel, generator=generator)
        n, c, h, w = images.shape
        if tuple(out.shape) != (n, c, h * int(scale), w * int(scale)):
            raise VolsrError(f"engine '{self.name}' returned shape {tuple(out.shape)} for scale {scale}")
        return out

    def _upscale(self, images, scale, options, *, progress=None, cancel=None, generator=None):
        raise NotImplementedError

    def autoencode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images through the engine's autoencoder (encode, decode), same shape.

        Only engines that declare ``capabilities.autoencoder``; deterministic (the latent mean
        is decoded, no sampling).
        """
        if not self.capabilities.autoencoder:
            raise VolsrError(f"engine '{self.name}' has no latent autoencoder")
        if images.ndim != 4 or min(images.shape[-2:]) < 2:
            raise VolsrError(f"images must be (N, C, H, W) with H, W >= 2, got shape {tuple(images.shape)}")
        out = self._autoencode(images)
        if out.shape != images.shape:
            raise VolsrError(f"engine '{self.name}' autoencoded {tuple(images.shape)} to {tuple(out.shape)}")
        return out

    def _autoencode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- memory ----------------------------------------------------------------------------------
    def bytes_per_pixel(self, height: int, width: int) -> float:
        """Peak activation memory of one network forward per input pixel, for planes of ``height`` x ``width``.

        Engines with a network override this (an estimate from their channel widths,
        :func:`volsr.runtime.hardware.unet_bytes_per_pixel`); it may grow with the plane size (attention).
        Engines without a network: 0.
        """
        return 0.0

    def planes_per_call(self, height: int, width: int, options: RestoreOptions | None = None,
                        workers: int = 1) -> int | None:
        """Planes of ``height`` x ``width`` per network call (what the pipeline logs); None: no network.

        Engines with a network return ``options.batch_size`` when set, else their default
        chunk capped by free memory (:func:`volsr.runtime.hardware.choose_batch_size`).
        """
        return None

    def chunks_side_by_side(self, height: int, width: int, n_planes: int,
                            options: RestoreOptions | None = None) -> int:
        """How many of a call's sub-batches run at once (:mod:`volsr.runtime.concurrency`); 1: one at a time."""
        return 1

    def to(self, device: str | torch.device) -> Engine:
        self.device = resolve_device(device)
        return self

    def config(self) -> dict:
        """JSON-serialisable description (engine name + settings)."""
        return {"engine": self.name}

    def save(self, path, **kwargs) -> None:
        """Interpolation engines have no weights: saving is refused with a clear message."""
        raise VolsrError(f"engine '{self.name}' has no learned weights; there is nothing to save")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"
