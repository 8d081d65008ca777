"""Known-row masks for training on 2D planes, and row-wise filling of unknown rows.

At inference an XZ/YZ plane has measured rows at ``round(i * f)`` (see
:class:`volsr.grid.OutputGrid`) and everything in between unknown. Training therefore
hides rows of fully known XY crops and asks the model to restore them. Two schemes:

* :func:`random_rows` — the paper's scheme (MSDSR Sec. 3): ``l ~ U[l_min, l_max]`` rows
  drawn without replacement, ``l_min, l_max = 5, 20`` of 48 rows, scaled to the crop height.
  Irregular gaps teach the model to bridge any gap length.
* :func:`strided_rows` — what inference sees: a regular (possibly non-integer) stride ``f``
  with a random phase, known rows at ``round(phase + i * f)``. With ``p_drop`` a strided mask
  also loses 1-2 consecutive interior known rows (:func:`drop_rows`): the 2f and 3f gaps of a
  stack with damaged planes (``--damaged-planes``), which a plain stride never shows.

:class:`MaskSampler` mixes the two per sample. :func:`linear_fill` fills unknown rows by
linear interpolation between the nearest known rows (used as the network input of the
regression baselines and as an interpolation reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import VolsrError

__all__ = ["MaskSampler", "random_rows", "strided_rows", "drop_rows", "linear_fill", "mask_sampler_from_config",
           "row_mask", "per_plane"]

#: The paper's 5..20 known rows of 48, as fractions of the crop height.
PAPER_LMIN_FRAC = 5 / 48
PAPER_LMAX_FRAC = 20 / 48


def per_plane(known, n: int, h: int, device=None) -> torch.Tensor:
    """A (H,) or (N, H) known-row mask as a bool tensor (N, H); refuses a shape that does not fit."""
    known = torch.as_tensor(known, dtype=torch.bool, device=device)
    if known.ndim == 1:
        known = known.expand(n, h)
    if tuple(known.shape) != (n, h):
        raise VolsrError(f"known-row mask shape {tuple(known.shape)} does not fit planes with N={n}, H={h}")
    return known


def row_mask(known, n: int, h: int, device=None) -> torch.Tensor:
    """The one broadcast of a (H,) or (N, H) known-row mask to (N, 1, H, 1) for row-wise blending."""
    return per_plane(known, n, h, device)[:, None, :, None]


def _check_h(h) -> int:
    if int(h) != h or int(h) < 3:
        raise VolsrError(f"crop height h must be an integer >= 3 to hide rows between known ones, got {h!r}")
    return int(h)


def random_rows(h: int, rng: np.random.Generator, lmin_frac: float = PAPER_LMIN_FRAC,
                lmax_frac: float = PAPER_LMAX_FRAC) -> np.ndarray:
    """The paper's irregular mask: ``l ~ U[l_min, l_max]`` known rows drawn without replacement.

    Parameters
    ----------
    h : int
        Number of rows of the crop (>= 3).
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller for reproducibility).
    lmin_frac, lmax_frac : float
        ``l_min = round(lmin_frac * h)`` and ``l_max = round(lmax_frac * h)``, clipped to
        ``[2, h - 1]`` so there are always at least 2 known and 1 unknown row. The defaults
        are the paper's 5 and 20 of 48 rows (known fraction 1/2 .. 1/8 scaled: 10%-42%).

    Returns
    -------
    numpy.ndarray of bool, shape (h,)

    Examples
    --------
    >>> m = random_rows(48, np.random.default_rng(0))
    >>> 5 <= int(m.sum()) <= 20
    True
    """
    h = _check_h(h)
    if not (0 < lmin_frac <= lmax_frac < 1):
        raise VolsrError(f"need 0 < lmin_frac <= lmax_frac < 1, got lmin_frac={lmin_frac}, lmax_frac={lmax_frac}")
    lmin = int(min(max(2, round(lmin_frac * h)), h - 1))
    lmax = int(min(max(lmin, round(lmax_frac * h)), h - 1))
    n = int(rng.integers(lmin, lmax + 1))
    mask = np.zeros(h, dtype=bool)
    mask[rng.choice(h, size=n, replace=False)] = True
    return mask


def strided_rows(h: int, rng: np.random.Generator, factor_range: tuple[float, float] = (1.5, 8.0)) -> np.ndarray:
    """A regular stride with a random factor and phase: known rows at ``round(phase + i * f)``.

    ``f`` is drawn log-uniformly from ``factor_range`` (every octave of z factor gets the same
    share of training: 2x-4x is as frequent as 4x-8x) and capped at ``h - 1`` so at least two
    rows are known; ``phase ~ U[0, f)``. Non-integer ``f`` gives the irregular 2-3-2-3 row
    gaps that :class:`volsr.grid.OutputGrid` produces for e.g. a 2.5x factor. Rounding is
    NumPy's (half to even), exactly as ``OutputGrid.positions``.

    Parameters
    ----------
    h : int
        Number of rows (>= 3).
    rng : numpy.random.Generator
    factor_range : (float, float)
        ``1 < fmin <= fmax``.

    Returns
    -------
    numpy.ndarray of bool, shape (h,)

    Examples
    --------
    >>> m = strided_rows(48, np.random.default_rng(0), factor_range=(4, 4))
    >>> np.diff(np.flatnonzero(m)).tolist() == [4] * (int(m.sum()) - 1)
    True
    """
    h = _check_h(h)
    fmin, fmax = (float(v) for v in factor_range)
    if not (1 < fmin <= fmax) or not math.isfinite(fmax):
        raise VolsrError(f"factor_range must satisfy 1 < min <= max, got {factor_range!r}")
    f = float(np.exp(rng.uniform(np.log(fmin), np.log(fmax)))) if fmax > fmin else fmin
    f = min(f, h - 1.0)
    phase = float(rng.uniform(0.0, f))
    rows = np.round(phase + np.arange(int(np.ceil(h / f)) + 1) * f).astype(np.int64)
    rows = rows[rows < h]
    if rows.size < 2:  # phase pushed the second row out: restart at row 0 (f <= h - 1 fits 2 rows)
        rows = np.round(np.arange(int(np.ceil(h / f)) + 1) * f).astype(np.int64)
        rows = rows[rows < h]
    mask = np.zeros(h, dtype=bool)
    mask[rows] = True
    return mask


def drop_rows(mask: np.ndarray, rng: np.random.Generator, max_drop: int = 2) -> np.ndarray:
    """Hide 1..``max_drop`` consecutive interior known rows of ``mask`` (a damaged plane's wider gap).

    The first and last known rows stay, so the gap is bridged from both sides and at least 2
    rows stay known; a mask with no interior known row comes back unchanged. Dropping ``k``
    consecutive known rows of a stride ``f`` leaves a gap of about ``(k + 1) * f``.

    Examples
    --------
    >>> m = np.zeros(13, bool); m[::4] = True
    >>> np.flatnonzero(drop_rows(m, np.random.default_rng(0), max_drop=1)).tolist() in ([0, 8, 12], [0, 4, 12])
    True
    """
    rows = np.flatnonzero(mask)
    interior = rows[1:-1]
    if interior.size == 0:
        return mask
    k = int(rng.integers(1, max(1, min(int(max_drop), interior.size)) + 1))
    start = int(rng.integers(0, interior.size - k + 1))
    out = mask.copy()
    out[interior[start:start + k]] = False
    return out


@dataclass
class MaskSampler:
    """Per-sample known-row masks for a training batch.

    Parameters
    ----------
    scheme : {'mixed', 'random', 'strided'}
        ``random`` is the paper's scheme; ``strided`` is what inference sees; ``mixed`` draws
        strided with probability ``p_strided`` and random otherwise.
    p_strided : float
        Share of strided masks under ``mixed``. Default 0.5: the design notes (DESIGN.md
        section 4) point out that the official code trained only on irregular masks while
        inference uses regular strides; half and half keeps the paper's irregular-gap
        training (which covers every gap length) while spending equal effort on the exact
        mask family seen at inference. Not tuned on any one data set.
    factor_range : (float, float)
        Stride range for strided masks. Default (1.5, 8): the paper evaluates 2x-8x, and
        non-integer factors down to 1.5 occur with real z spacings.
    lmin_frac, lmax_frac : float
        Known-row count range for random masks, as fractions of the crop height (paper:
        5/48 and 20/48).
    p_drop : float
        Probability that a strided mask loses 1-2 consecutive interior known rows
        (:func:`drop_rows`): gaps of 2f and 3f, as damaged planes leave at inference. Default 0:
        the sampler of earlier versions, draw for draw (engine configs: ``mask_p_drop``).

    Examples
    --------
    >>> s = MaskSampler()
    >>> s(4, 48, np.random.default_rng(0)).shape
    (4, 48)
    """

    scheme: str = "mixed"
    p_strided: float = 0.5
    factor_range: tuple[float, float] = (1.5, 8.0)
    lmin_frac: float = PAPER_LMIN_FRAC
    lmax_frac: float = PAPER_LMAX_FRAC
    p_drop: float = 0.0

    def __post_init__(self):
        if self.scheme not in ("mixed", "random", "strided"):
            raise VolsrError(f"mask scheme must be 'mixed', 'random' or 'strided', got {self.scheme!r}")
        if not (0.0 <= float(self.p_strided) <= 1.0):
            raise VolsrError(f"p_strided must be in [0, 1], got {self.p_strided!r}")
        if not (0.0 <= float(self.p_drop) <= 1.0):
            raise VolsrError(f"p_drop (mask_p_drop) must be in [0, 1], got {self.p_drop!r}")
        self.factor_range = tuple(float(v) for v in self.factor_range)
        # validate the ranges once, up front
        rng = np.random.default_rng(0)
        strided_rows(48, rng, self.factor_range)
        random_rows(48, rng, self.lmin_frac, self.lmax_frac)

    def sample(self, h: int, rng: np.random.Generator) -> np.ndarray:
        """One mask of ``h`` rows."""
        if self.scheme == "random":
            strided = False
        elif self.scheme == "strided":
            strided = True
        else:
            strided = bool(rng.random() < self.p_strided)
        if strided:
            mask = strided_rows(h, rng, self.factor_range)
            if self.p_drop > 0 and rng.random() < self.p_drop:  # no draw at 0: earlier seeds' masks unchanged
                mask = drop_rows(mask, rng)
            return mask
        return random_rows(h, rng, self.lmin_frac, self.lmax_frac)

    def __call__(self, batch: int, h: int, rng: np.random.Generator) -> np.ndarray:
        """Masks for a batch: bool array (batch, h), each row with >= 2 known entries."""
        if int(batch) < 1:
            raise VolsrError(f"batch must be >= 1, got {batch!r}")
        return np.stack([self.sample(h, rng) for _ in range(int(batch))])

    def to_config(self) -> dict:
        """JSON-serialisable settings (the keys :func:`mask_sampler_from_config` reads)."""
        return {
            "mask_scheme": self.scheme,
            "mask_p_strided": float(self.p_strided),
            "mask_factor_range": list(self.factor_range),
            "mask_lmin_frac": float(self.lmin_frac),
            "mask_lmax_frac": float(self.lmax_frac),
            "mask_p_drop": float(self.p_drop),
        }


def mask_sampler_from_config(cfg: dict | None) -> MaskSampler:
    """Build a :class:`MaskSampler` from an engine config.

    Reads the flat keys ``mask_scheme``, ``mask_p_strided``, ``mask_factor_range``,
    ``mask_lmin_frac``, ``mask_lmax_frac``, ``mask_p_drop`` (or the same names without the ``mask_`` prefix
    inside a nested ``cfg['mask']`` dict); anything missing takes the :class:`MaskSampler`
    default.
    """
    cfg = dict(cfg or {})
    nested = cfg.get("mask") if isinstance(cfg.get("mask"), dict) else {}
    kw = {}
    for key, attr in (("scheme", "scheme"), ("p_strided", "p_strided"), ("factor_range", "factor_range"),
                      ("lmin_frac", "lmin_frac"), ("lmax_frac", "lmax_frac"), ("p_drop", "p_drop")):
        if f"mask_{key}" in cfg and cfg[f"mask_{key}"] is not None:
            kw[attr] = cfg[f"mask_{key}"]
        elif key in nested and nested[key] is not None:
            kw[attr] = nested[key]
    return MaskSampler(**kw)


def linear_fill(planes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown rows by linear interpolation between the nearest known rows.

    Rows above the first / below the last known row take that row's values (constant
    extrapolation). Works for any per-sample mask, regular or not.

    Parameters
    ----------
    planes : torch.Tensor (N, C, H, W)
    known : torch.Tensor bool (H,) or (N, H), at least one True per sample

    Returns
    -------
    torch.Tensor (N, C, H, W); known rows equal the input.

    Examples
    --------
    >>> x = torch.tensor([0., 0., 0., 3.]).reshape(1, 1, 4, 1)
    >>> linear_fill(x, torch.tensor([True, False, False, True])).flatten().tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    n, _, h, _ = planes.shape
    known = per_plane(known, n, h, planes.device)
    if not bool(known.any(dim=1).all()):
        raise VolsrError("every plane needs at least one known row to fill the others from")
    idx = torch.arange(h, device=planes.device).expand(n, h)
    prev = torch.where(known, idx, torch.full_like(idx, -1)).cummax(dim=1).values
    nxt = torch.where(known, idx, torch.full_like(idx, h)).flip(1).cummin(dim=1).values.flip(1)
    prev_c = torch.where(prev < 0, nxt, prev)
    nxt_c = torch.where(nxt >= h, prev_c, nxt)
    gap = (nxt_c - prev_c).clamp(min=1).to(planes.dtype)
    w = ((idx - prev_c).to(planes.dtype) / gap).clamp(0, 1)
    w = torch.where(nxt_c == prev_c, torch.zeros_like(w), w)

    def rows(ix):
        return torch.gather(planes, 2, ix[:, None, :, None].expand(-1, planes.shape[1], -1, planes.shape[3]))

    w4 = w[:, None, :, None]
    out = rows(prev_c) * (1 - w4) + rows(nxt_c) * w4
    return torch.where(known[:, None, :, None], planes, out)
