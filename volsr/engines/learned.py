"""Base class of engines with weights: fit on planes, save/load one model file.

A learned engine provides three things: its default config, its network, and its training
loss on a batch of high-resolution planes with a known-row mask. Fitting (the loop, EMA,
checkpoints, budget) lives in :mod:`volsr.train`; the model file in :mod:`volsr.checkpoint`.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch

from .base import Engine


class LearnedEngine(Engine):
    learned = True

    def __init__(self, device="cpu", config: dict | None = None, **overrides: Any):
        super().__init__(device=device)
        cfg = self.default_config()
        cfg.update(config or {})
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        self.cfg = cfg
        self.network = self.build_network().to(self.device)
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        self.provenance: dict = {}
        self.trained = False

    # -- to implement ----------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def default_config(cls) -> dict:
        """Everything needed to rebuild the network and reproduce training (JSON types only)."""

    @abstractmethod
    def build_network(self) -> torch.nn.Module:
        """A fresh network for ``self.cfg``."""

    @abstractmethod
    def training_loss(self, hr: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar loss for HR planes (B, C, H, W) in normalised units, known rows (B, H) bool."""

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
        return {"engine": self.name, **self.cfg}

    def fit(self, data, **kwargs) -> dict:
        """Train on planes (see :func:`volsr.train.fit_engine` for the arguments)."""
        from ..train import fit_engine

        report = fit_engine(self, data, **kwargs)
        self.trained = True
        return report

    def save(self, path: str | Path, overwrite: bool = True, **provenance: Any) -> Path:
        from ..checkpoint import save_model

        prov = {**self.provenance, **provenance}
        return save_model(
            path, engine=self.name, config=self.cfg, state_dict=self.ema.state_dict(),
            provenance=prov, overwrite=overwrite,
        )

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> LearnedEngine:
        from ..checkpoint import load_model

        info, state = load_model(path)
        if info["engine"] != cls.name:
            from ..errors import ModelFileError

            raise ModelFileError(f"{path} is a '{info['engine']}' model, not '{cls.name}'")
        eng = cls(device=device, config=info["config"])
        eng.network.load_state_dict(state)
        eng.ema.load_state_dict(state)
        eng.provenance = info.get("provenance", {})
        eng.trained = True
        return eng
