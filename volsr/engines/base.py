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

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``; may raise :class:`volsr.errors.Cancelled` to stop."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else MPS when available, else CPU."""
    from ..errors import VolsrError

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VolsrError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    return dev


def known_rows(known: torch.Tensor, n: int, h: int) -> torch.Tensor:
    """Broadcast a (H,) or (N, H) bool mask to (N, 1, H, 1) for row-wise blending."""
    known = torch.as_tensor(known, dtype=torch.bool)
    if known.ndim == 1:
        known = known.expand(n, h)
    if known.shape != (n, h):
        raise ValueError(f"known-row mask shape {tuple(known.shape)} does not fit planes with N={n}, H={h}")
    return known[:, None, :, None]


def paste_known(restored: torch.Tensor, planes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Return ``restored`` with the known rows replaced by the measured values."""
    n, _, h, _ = planes.shape
    m = known_rows(known.to(planes.device), n, h)
    return torch.where(m, planes, restored)


class Engine(ABC):
    """Restores 2D planes whose rows are partly measured.

    Subclasses set ``name`` and implement :meth:`_restore`. Engines that learn set
    ``learned = True`` and derive from :class:`volsr.engines.learned.LearnedEngine`.
    """

    name: ClassVar[str] = ""
    learned: ClassVar[bool] = False
    supports_uncertainty: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, device: str | torch.device | None = "cpu", **options: Any):
        self.device = resolve_device(device)
        self.options = dict(options)

    # -- the interface -------------------------------------------------------------------
    def restore(self, planes: torch.Tensor, known: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Fill the unknown rows of ``planes`` (N, C, H, W); known rows come back unchanged."""
        if planes.ndim != 4:
            raise ValueError(f"planes must be (N, C, H, W), got shape {tuple(planes.shape)}")
        known = torch.as_tensor(known, dtype=torch.bool)
        n, _, h, _ = planes.shape
        known_rows(known, n, h)  # validates the shape
        if not bool(known.any()):
            raise ValueError("no known rows: nothing to restore from")
        out = self._restore(planes, known, **kwargs)
        return paste_known(out, planes, known)

    def restore_with_std(
        self, planes: torch.Tensor, known: torch.Tensor, n_samples: int, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and per-pixel std of ``n_samples`` restorations (deterministic engines: std = 0)."""
        out = self.restore(planes, known, **kwargs)
        return out, torch.zeros_like(out)

    @abstractmethod
    def _restore(self, planes: torch.Tensor, known: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Engine-specific restoration; the caller pastes the known rows afterwards."""

    def to(self, device: str | torch.device) -> Engine:
        self.device = resolve_device(device)
        return self

    def config(self) -> dict:
        """JSON-serialisable description (engine name + options)."""
        return {"engine": self.name, **self.options}

    def save(self, path, **kwargs) -> None:
        """Interpolation engines have no weights: saving is refused with a clear message."""
        from ..errors import VolsrError

        raise VolsrError(f"engine '{self.name}' has no learned weights; there is nothing to save")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"
