"""Base class of engines with weights: a typed config, a network, a loss; fit, save, load.

A learned engine provides: its config class (a frozen :class:`TrainableConfig` subclass with
its defaults), optional named presets, its network, and its training loss on a batch of
high-resolution planes with a known-row mask. Fitting (the loop, EMA, checkpoints, budget)
lives in :mod:`volsr.training.loop`; the model file in :mod:`volsr.checkpoint`.

Two-stage engines hold several networks in one ``torch.nn.ModuleDict`` and declare them as
separate :class:`TrainablePart` s, each with its own learning rate and EMA decay.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..config import EngineConfig, check_choice, check_int, check_number
from ..errors import InputError, VolsrError
from ..training.degrade import Degradation, RowDegradation, degradation_from_dict
from .base import Capabilities, Engine

__all__ = ["LearnedEngine", "TrainableConfig", "TrainablePart", "TrainingStage", "frozen"]


@dataclasses.dataclass(frozen=True)
class TrainableConfig(EngineConfig):
    """Settings every learned engine has: network size, data, optimiser, masks, degradation.

    ``degradation`` says how training pairs are made (:mod:`volsr.training.degrade`); ``norm_pmin`` /
    ``norm_pmax`` are the percentiles of the intensity normalisation used for training *and*
    at inference (stored in the model file, so a model sees data scaled as it was trained).
    ``mask_p_drop``: share of strided training masks that lose 1-2 known rows (the 2f / 3f gaps
    damaged planes leave; :class:`volsr.training.masks.MaskSampler`). Default 0, the masks of
    earlier versions: the random-subset masks already show gaps that wide, and a non-zero
    default changes every fit, so it waits for the damaged-plane benchmark across kinds;
    ``mask_p_drop=0.25`` is the setting that benchmark will compare. Model files saved before
    the key existed load with 0 (:meth:`LearnedEngine.upgrade_config`).
    """

    preset: str = "small"
    channels: int = 1
    crop: int = 48
    lr: float = 1e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    mask_scheme: str = "mixed"
    mask_p_strided: float = 0.5
    mask_factor_range: tuple[float, float] = (1.5, 8.0)
    mask_lmin_frac: float = 5 / 48
    mask_lmax_frac: float = 20 / 48
    mask_p_drop: float = 0.0
    degradation: Degradation = dataclasses.field(default_factory=RowDegradation)
    norm_pmin: float = 0.1
    norm_pmax: float = 99.9

    PRESETS: ClassVar[tuple[str, ...]] = ("tiny", "small", "paper")

    def _coerce(self) -> None:
        object.__setattr__(self, "degradation", degradation_from_dict(self.degradation))

    def validate(self) -> None:
        check_choice("preset", self.preset, self.PRESETS)
        check_int("channels", self.channels, 1)
        check_int("crop", self.crop, 8)
        check_number("lr", self.lr, 0, lo_open=True)
        check_number("weight_decay", self.weight_decay, 0)
        check_number("ema_decay", self.ema_decay, 0, 1, hi_open=True)
        check_number("norm_pmin", self.norm_pmin, 0, 100)
        check_number("norm_pmax", self.norm_pmax, 0, 100)
        if self.norm_pmin >= self.norm_pmax:
            raise VolsrError(f"config norm_pmin ({self.norm_pmin}) must be below norm_pmax ({self.norm_pmax})")
        self.mask_sampler()  # validates the mask settings

    def mask_sampler(self):
        from ..training.masks import MaskSampler

        return MaskSampler(scheme=self.mask_scheme, p_strided=self.mask_p_strided,
                           factor_range=tuple(self.mask_factor_range), lmin_frac=self.mask_lmin_frac,
                           lmax_frac=self.mask_lmax_frac, p_drop=self.mask_p_drop)

    def normalizer(self):
        """A fresh (unfitted) normaliser with this model's percentiles."""
        from ..normalize import PercentileNormalizer

        return PercentileNormalizer(self.norm_pmin, self.norm_pmax)


@dataclass
class TrainablePart:
    """One network trained by the fit: its live module, its EMA copy, its lr and EMA decay."""

    name: str
    module: torch.nn.Module
    ema: torch.nn.Module
    lr: float
    ema_decay: float


@dataclass(frozen=True)
class TrainingStage:
    """A span of the fit budget in which only ``parts`` train (a staged fit).

    Why stages: a latent model's autoencoder must be good before a denoiser can learn its
    latents, and the denoiser before a noise map can be trained through it; trained jointly
    from scratch each chases the others' moving targets. ``end`` is the fraction of the budget
    (steps, or wall time with ``minutes`` alone) at which the stage ends; the last stage ends at 1. The fit
    (:func:`volsr.training.loop.fit_engine`) gives each stage its own learning-rate warm-up and decay and
    EMA warm-up, and when a part stops training it continues from its EMA weights, frozen.
    """

    name: str
    parts: tuple[str, ...]
    end: float


@contextlib.contextmanager
def frozen(*modules: torch.nn.Module):
    """No gradient reaches these modules' weights inside the block (gradients still pass *through*).

    For losses of one part that flow through fixed others (Brain-SR's and MSDSR's noise map
    through the denoiser): the others' weights get no gradient and no optimiser update.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class LearnedEngine(Engine):
    """Engine with weights. Subclasses set ``Config`` and implement the abstract methods."""

    capabilities: ClassVar[Capabilities] = Capabilities(learned=True)
    Config: ClassVar[type[TrainableConfig]] = TrainableConfig
    #: Named presets: partial configs merged under explicit keys.
    PRESETS: ClassVar[dict[str, dict]] = {}

    def __init__(self, device="cpu", config: dict | TrainableConfig | None = None, preset: str | None = None,
                 **overrides: Any):
        super().__init__(device=device)
        self.rebuild(self.make_config(config, preset, overrides))
        self.provenance: dict = {}
        self.trained = False

    # -- config ---------------------------------------------------------------------------------
    @classmethod
    def make_config(cls, config=None, preset: str | None = None, overrides: dict | None = None,
                    strict: bool = True) -> TrainableConfig:
        """Preset < config < overrides (``None`` overrides ignored), validated once."""
        if isinstance(config, EngineConfig):
            config = config.to_dict()
        explicit = {**dict(config or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
        base: dict = {}
        if preset is not None:
            if preset not in cls.Config.PRESETS:
                raise VolsrError(f"unknown {cls.name} preset {preset!r}; choose one of: {', '.join(cls.Config.PRESETS)}")
            base = {**cls.PRESETS.get(preset, {}), "preset": preset}
        merged = cls.implied_settings({**base, **explicit}, explicit)
        return cls.Config.from_dict(merged, strict=strict)

    @classmethod
    def implied_settings(cls, merged: dict, explicit: dict) -> dict:
        """Settings implied by others unless given explicitly (subclasses)."""
        return merged

    @classmethod
    def default_config(cls) -> dict:
        """The defaults as a dict (JSON types)."""
        return cls.Config().to_dict()

    # -- to implement ----------------------------------------------------------------------
    @abstractmethod
    def build_network(self) -> torch.nn.Module:
        """A fresh network for ``self.cfg``."""

    @abstractmethod
    def training_loss(self, hr: torch.Tensor, known: torch.Tensor | None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar loss for HR planes (B, C, H, W) in normalised units, known rows (B, H) bool."""

    # -- training seam -----------------------------------------------------------------------
    def trainable_parts(self) -> list[TrainablePart]:
        """The networks the fit optimises (one by default), each with its lr and EMA decay."""
        return [TrainablePart("network", self.network, self.ema, float(self.cfg.lr), float(self.cfg.ema_decay))]

    #: The stage the fit is in (:meth:`training_stages`); ``training_loss`` reads it.
    training_stage: str = "joint"

    def training_stages(self) -> tuple[TrainingStage, ...]:
        """The fit's stages, in order; by default one stage in which every part trains."""
        return (TrainingStage("joint", tuple(p.name for p in self.trainable_parts()), 1.0),)

    def training_data(self, data, crop: int | None = None):
        """What the trainer draws batches from (:func:`volsr.training.planes.as_plane_data` by default)."""
        from ..training.planes import PlaneData, as_plane_data

        if isinstance(data, PlaneData) and crop is None:
            return as_plane_data(data)
        return as_plane_data(data, crop=crop if crop is not None else self.cfg.crop,
                             pmin=self.cfg.norm_pmin, pmax=self.cfg.norm_pmax)

    def adopt_channels(self, channels: int) -> None:
        """An untrained engine adopts the data's channel count; a trained one must match it."""
        if int(channels) == int(self.cfg.channels):
            return
        if self.trained:
            raise VolsrError(
                f"the '{self.name}' model was trained for {self.cfg.channels} channel(s) but the training data have "
                f"{int(channels)}; fine-tune only on data with the same channels, or train a new model"
            )
        self.rebuild(self.cfg.replace(channels=int(channels)))

    def rebuild(self, cfg: TrainableConfig) -> None:
        """Replace the config and build fresh networks for it (untrained)."""
        self.cfg = cfg
        self.network = self.build_network().to(self.device)
        self.ema = copy.deepcopy(self.network).requires_grad_(False)

    def check_channels(self, channels: int) -> None:
        """The one channel check at inference: the data must have the model's channels."""
        want = int(self.cfg.channels)
        if int(channels) != want:
            raise InputError(
                f"the '{self.name}' model was trained for {want} channel(s) but the data have {int(channels)}; "
                "use a model trained on data with the same channels, or fit a new one"
            )

    # -- task (the degradation the model was trained with) ---------------------------------
    @property
    def task(self) -> str:
        """'rows' (z restoration) or 'isotropic' (in-plane upscaling): what the model was trained for."""
        return self.cfg.degradation.kind

    def _check_task(self, task: str) -> None:
        if self.task != task:
            what = {"rows": "restore z (rows of XZ/YZ planes)", "isotropic": "upscale images in-plane"}
            raise VolsrError(f"this '{self.name}' model was trained to {what[self.task]}; it cannot "
                             f"{what[task]} — train one with --task {'upscale' if task == 'isotropic' else 'rows'}")

    def _check_upscale(self, scale: int) -> None:
        """An in-plane model upscales by the scale it was trained for, nothing else."""
        self._check_task("isotropic")
        if int(scale) != self.cfg.degradation.scale:
            raise VolsrError(f"this model was trained for {self.cfg.degradation.scale}x upscaling, not {scale}x; "
                             f"use --scale {self.cfg.degradation.scale} or train a model for {scale}x")

    def fit_crop_to(self, side: int) -> None:
        """An untrained engine meets a stack narrower than half its crop: fit on crops that fit.

        Otherwise the fit refuses the stack and ``volsr infer`` has no ``--crop`` to fix it.
        """
        if not self.trained and 8 <= int(side) < self.cfg.crop // 2:
            self.rebuild(self.cfg.replace(crop=int(side) // 8 * 8))

    def call_config(self, options) -> TrainableConfig:
        """The config with this call's restore options applied (validated by the config)."""
        fields = {k: v for k, v in options.set_fields().items() if k not in ("seed", "batch_size")}
        return self.cfg.replace(**fields)

    # -- shared behaviour ------------------------------------------------------------------
    @property
    def sampling_network(self) -> torch.nn.Module:
        """EMA weights are used for inference (as in the paper's code)."""
        return self.ema

    def to(self, device):
        super().to(device)
        self.network.to(self.device)
        self.ema.to(self.device)
        return self

    def config(self) -> dict:
        return {"engine": self.name, **self.cfg.to_dict()}

    def fit(self, data, **kwargs) -> dict:
        """Train on planes (see :func:`volsr.training.loop.fit_engine` for the arguments)."""
        from ..training.loop import fit_engine

        report = fit_engine(self, data, **kwargs)
        self.trained = True
        return report

    def save(self, path: str | Path, overwrite: bool = True, **provenance: Any) -> Path:
        from ..checkpoint import save_model

        prov = {**self.provenance, **provenance}
        return save_model(
            path, engine=self.name, config=self.cfg.to_dict(), state_dict=self.ema.state_dict(),
            provenance=prov, overwrite=overwrite,
        )

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> LearnedEngine:
        from ..checkpoint import load_model
        from ..errors import ModelFileError

        info, state = load_model(path)
        if info["engine"] != cls.name:
            raise ModelFileError(f"{path} is a '{info['engine']}' model, not '{cls.name}'")
        # unknown keys of another volsr version are dropped with a warning (strict=False), then a normal engine
        eng = cls(device=device, config=cls.make_config(cls.upgrade_config(dict(info["config"])), strict=False))
        try:
            eng.network.load_state_dict(state)
            eng.ema.load_state_dict(state)
        except RuntimeError as err:
            raise ModelFileError(f"{path}: the weights do not fit the '{cls.name}' network its config describes "
                                 f"({str(err).splitlines()[0]})") from None
        eng.provenance = info.get("provenance", {})
        eng.trained = True
        return eng

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """Map a model file's config from an older volsr (subclasses extend it, calling this one).

        A file saved without ``mask_p_drop`` (before damaged planes) trained on strided masks
        that never drop a row: it keeps 0, so a resumed or fine-tuned fit draws the same masks.
        """
        return {"mask_p_drop": 0.0, **config}

