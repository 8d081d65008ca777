"""The conditional sampling loop of masked-slice diffusion (the "pipeline").

Given planes whose measured rows are known, start every unknown pixel from Gaussian noise
and run the reverse diffusion chain; before *every* network call the measured rows are
written clean into ``x_t`` (MSDSR Eq. 5, ``c = b * x_H + (1 - b) * x_t``), and after the last
step they are pasted once more so they come back exactly (the official code skipped that).

:func:`match_noise` (used by the engine after sampling, optionally) gives the unknown rows
white noise up to the noise level of the measured rows.

The three diffusers-style parts stay separate: the *scheduler* (MONAI, step math,
:mod:`volsr.diffusion.schedule`), the *model* (any network ``net(x, timesteps=t)``) and this
*pipeline*, which owns batching, padding/tiling, the noise generator, progress and cancel.

Planes of any size
------------------
``mode='full'`` (default) runs the UNet fully convolutionally on the whole plane, reflect-
padded at the bottom/right to the network's size multiple and cropped back. ``mode='tiles'``
runs it on overlapping tiles of the training crop size inside *each* step (MONAI
``sliding_window_inference``, Gaussian blending). Measured (small preset fitted on a 4x
subsampled synthetic ``cells`` stack, 16 XZ planes of 61x256, 10 DDIM steps, 2 CPU cores):
``full`` PSNR 25.44 dB / SSIM 0.854 in 9.6 s, ``tiles`` (48 px, 25 % overlap) 25.42 dB /
0.850 in 17.4 s - the whole-plane run is as good and ~1.8x faster (tiles overlap, and every
tile pays the network's border cost), so it is the default.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import Cancelled
from ..models.padding import pad_to_multiple, run_padded  # noqa: F401  (pad_to_multiple: re-exported)
from ..runtime.concurrency import run_side_by_side
from ..training.masks import per_plane

MODES = ("full", "tiles")

#: Pixels (per channel) per network call; ~4 planes of 64x256. Measured on 2 CPU cores
#: (small preset): 4-plane chunks ran 1.7-2.5x faster per pixel than 16-64-plane chunks.
DEFAULT_CHUNK_PIXELS = 1 << 16


def sub_batch_planes(chunk_pixels: int, height: int, width: int) -> int:
    """Planes per noise sub-batch of planes ``height`` x ``width`` (at least one)."""
    return max(1, int(chunk_pixels) // (int(height) * int(width)))


def row_noise_std(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Robust per-plane, per-channel std of white noise on the selected rows of (N, C, H, W).

    From the second difference along x within each row (for white noise of std s its std is
    ``sqrt(6) s``), by the median absolute deviation (edges and other sparse structure barely
    move it). ``rows`` (N, H) bool. Returns (N, C, 1, 1); 0 where fewer than 2 rows are selected.
    """
    n, c, h, w = x.shape
    if w < 3:
        return torch.zeros((n, c, 1, 1), dtype=x.dtype, device=x.device)
    d2 = x[..., 2:] - 2.0 * x[..., 1:-1] + x[..., :-2]  # (N, C, H, W-2)
    out = torch.zeros((n, c, 1, 1), dtype=x.dtype, device=x.device)
    for i in range(n):
        r = rows[i]
        if int(r.sum()) < 2:
            continue
        v = d2[i][:, r].reshape(c, -1)
        mad = (v - v.median(dim=1, keepdim=True).values).abs().median(dim=1).values
        out[i, :, 0, 0] = 1.4826 * mad / math.sqrt(6.0)
    return out


def match_noise(x: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None = None,
                scale: float = 1.0) -> torch.Tensor:
    """Give the unknown rows of planes (N, C, H, W) the white-noise level of the known rows.

    The measured rows carry the instrument's noise (shot/read noise in fluorescence, EM, MRI);
    a denoising prediction does not, so without this every ``factor``-th plane of the result
    is noisier than the planes between (a z-periodic texture) and XZ/YZ spectra lack high
    frequencies. Adds Gaussian noise of std ``scale * sqrt(max(0, s_known^2 - s_unknown^2))``
    per plane and channel (:func:`row_noise_std`) to the unknown rows only.
    """
    n, c, h, w = x.shape
    known = per_plane(known, n, h, x.device)
    s_known = row_noise_std(x, known)
    s_unknown = row_noise_std(x, ~known)
    add = float(scale) * (s_known**2 - s_unknown**2).clamp(min=0.0).sqrt()
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(known[:, None, :, None], x, x + add * z)


@dataclass(frozen=True)
class DenoiserInput:
    """The one definition of the denoiser's input and output, used by training and sampling.

    Input: ``x_t`` (known rows already written clean), then the known-row mask as one channel
    (``mask_channel``), then the condition (``condition``: the linear interpolation or the
    stage-1 regression estimate, ``C`` channels). Output: the network's prediction, plus the
    condition when ``residual`` (x0 prediction of a correction to the condition).
    """

    mask_channel: bool = True
    condition: bool = False
    residual: bool = False

    def __post_init__(self):
        if self.residual and not self.condition:
            raise ValueError("residual=True adds the network output to the condition; it needs a condition")

    def build(self, x: torch.Tensor, m: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = x.shape
        parts = [x]
        if self.mask_channel:
            parts.append(m.to(x.dtype).expand(n, 1, h, w))
        if self.condition:
            if cond is None:
                raise ValueError("this denoiser is conditioned: pass cond")
            parts.append(cond)
        return torch.cat(parts, dim=1) if len(parts) > 1 else x

    def finish(self, raw: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return raw + cond if self.residual else raw

    def predict(self, network: torch.nn.Module, x: torch.Tensor, m: torch.Tensor, t: torch.Tensor,
                cond: torch.Tensor | None, multiple: int = 1) -> torch.Tensor:
        """Prediction for ``x_t`` (N, C, H, W) at timesteps ``t`` (N,), any H, W (padded)."""
        inp = self.build(x, m, cond)
        return self.finish(run_padded(lambda z: network(z, timesteps=t), inp, multiple), cond)


@dataclass
class MaskedSliceSampler:
    """Reverse-diffusion sampler conditioned on known rows.

    Parameters
    ----------
    network : torch.nn.Module
        ``network(x, timesteps=t) -> prediction`` with ``x`` (B, C[+1], H, W).
    scheduler : MONAI scheduler
        From :func:`volsr.diffusion.schedule.sampling_scheduler` (respaced DDIM or DDPM).
    model_timesteps : torch.LongTensor
        Training timestep given to the network at each ``scheduler.timesteps`` entry.
    inputs : DenoiserInput
        How the network input is built from ``x_t``, the mask and the condition (the same
        object the training loss uses).
    multiple : int
        The network's size multiple (``2**(levels-1)``).
    eta : float
        DDIM noise (0 deterministic, 1 ancestral as in the paper's code); ignored by DDPM.
    mode : {'full', 'tiles'}
        Whole-plane run with padding, or overlapping tiles blended at every step.
    tile : int, optional
        Tile side for ``mode='tiles'`` (rounded up to ``multiple``; default the training crop).
    tile_overlap : float
        Overlap fraction of tiles in [0, 1).
    chunk_pixels : int
        Planes are sampled in sub-batches of ``max(1, chunk_pixels // (H * W))``, each with its
        own noise drawn in turn from the generator: the sub-batch size decides the random
        draws, so it must not depend on the machine.
    call_planes : int, optional
        Planes per network call inside a sub-batch (default: the whole sub-batch). Set from
        free memory (:func:`volsr.runtime.hardware.choose_batch_size`); it never changes the noise, only
        how many planes one forward pass holds (float rounding of batched kernels aside).
    workers : int
        Sub-batches sampled at once, one CPU thread each (:mod:`volsr.runtime.concurrency`); each keeps the
        noise it draws when they run one at a time, so the result does not depend on this (under
        bfloat16; float32 kernels round differently on one thread). A custom ``start`` runs them
        one at a time.
    """

    network: torch.nn.Module
    scheduler: object
    model_timesteps: torch.Tensor
    inputs: DenoiserInput = DenoiserInput()
    multiple: int = 1
    eta: float = 0.0
    mode: str = "full"
    tile: int | None = None
    tile_overlap: float = 0.25
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS
    call_planes: int | None = None
    workers: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (0.0 <= float(self.eta) <= 1.0):
            raise ValueError(f"eta must be in [0, 1], got {self.eta!r}")
        if not (0.0 <= float(self.tile_overlap) < 1.0):
            raise ValueError(f"tile_overlap must be in [0, 1), got {self.tile_overlap!r}")
        if int(self.chunk_pixels) < 1:
            raise ValueError(f"chunk_pixels must be >= 1, got {self.chunk_pixels!r}")
        if self.call_planes is not None and int(self.call_planes) < 1:
            raise ValueError(f"call_planes must be >= 1, got {self.call_planes!r}")
        if int(self.workers) < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if self.mode == "tiles" and not self.tile:
            raise ValueError("mode='tiles' needs a tile size (the training crop)")
        from monai.networks.schedulers import DDIMScheduler

        self._is_ddim = isinstance(self.scheduler, DDIMScheduler)  # DDIM's step takes eta
        if self.inputs.residual and self.scheduler.prediction_type != "sample":
            raise ValueError("residual=True is defined for x0 ('sample') prediction only")

    @property
    def steps(self) -> int:
        return int(len(self.model_timesteps))

    # -- one network evaluation -------------------------------------------------------------
    def _predict(self, x: torch.Tensor, m: torch.Tensor, t: int, cond: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = x.shape
        ts = torch.full((n,), int(t), dtype=torch.long, device=x.device)
        per = n if self.call_planes is None else int(self.call_planes)
        if self.mode == "full":
            if per >= n:
                return self.inputs.predict(self.network, x, m, ts, cond, self.multiple)
            return torch.cat([self.inputs.predict(self.network, x[i:i + per], m[i:i + per], ts[i:i + per],
                                                  None if cond is None else cond[i:i + per], self.multiple)
                              for i in range(0, n, per)])
        from monai.inferers import sliding_window_inference

        tile_pixels = int(self.chunk_pixels)
        if self.call_planes is not None and per < max(1, tile_pixels // (h * w)):  # free memory binds
            tile_pixels = per * h * w
        side = int(math.ceil(int(self.tile) / self.multiple) * self.multiple)
        pad_mode = "reflect" if min(h, w) > side else "replicate"

        def predictor(z):
            return self.network(z, timesteps=ts[:1].expand(z.shape[0]))

        raw = sliding_window_inference(
            self.inputs.build(x, m, cond), roi_size=(side, side),
            sw_batch_size=max(1, tile_pixels // (side * side)),
            predictor=predictor, overlap=float(self.tile_overlap), mode="gaussian", padding_mode=pad_mode,
        )
        return self.inputs.finish(raw, cond)

    # -- the loop ---------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        known_values: torch.Tensor,
        known: torch.Tensor,
        *,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        stage: str = "denoise",
        start: Callable[..., torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Sample the unknown rows of ``known_values`` (N, C, H, W) in model units.

        Parameters
        ----------
        known_values : torch.Tensor (N, C, H, W)
            Values on known rows (anything elsewhere; never read).
        known : torch.Tensor bool (H,) or (N, H)
            True on measured rows.
        cond : torch.Tensor (N, C, H, W), optional
            The condition channels (model units) when ``inputs.condition``.
        generator : torch.Generator, optional
            On ``known_values.device``; seeds the initial noise and the ancestral noise.
        progress : callable(stage, done, total), optional
            Called after every denoising step (``total = sub-batches * steps``).
        cancel : callable() -> bool, optional
            Checked before every step; True raises :class:`volsr.errors.Cancelled`.
        start : callable(known_values, mask, cond, generator) -> torch.Tensor, optional
            The state the chain starts from, per sub-batch (default: standard Gaussian noise);
            one-step sampling starts from the condition plus a learned noise map
            (:mod:`volsr.models.noise_map`). ``mask`` is (n, 1, H, 1) bool.

        Returns
        -------
        torch.Tensor (N, C, H, W); known rows equal ``known_values`` exactly.
        """
        x_known = known_values
        n, c, h, w = x_known.shape
        known = per_plane(known, n, h, x_known.device)
        if self.inputs.condition and (cond is None or tuple(cond.shape) != tuple(x_known.shape)):
            raise ValueError("a conditioned sampler needs cond with the planes' shape")
        per = sub_batch_planes(self.chunk_pixels, h, w)
        chunks = [slice(first, min(n, first + per)) for first in range(0, n, per)]
        workers = 1 if start is not None else min(int(self.workers), len(chunks))
        if workers > 1:  # each chunk gets the generator state it would have had in turn
            generators = self._chunk_generators(chunks, x_known, generator)
        else:
            generators = [generator] * len(chunks)
        total, counter, lock = len(chunks) * self.steps, [0], threading.Lock()

        def step_done() -> None:
            with lock:
                counter[0] += 1
                if progress is not None:
                    progress(stage, counter[0], total)

        def sample(i: int) -> None:
            sl = chunks[i]
            c_sl = cond[sl] if cond is not None else None
            out[sl] = self._sample_chunk(x_known[sl], known[sl][:, None, :, None], c_sl, generators[i], start,
                                         cancel, step_done)

        out = torch.empty_like(x_known)
        was_training = self.network.training
        self.network.eval()
        try:
            run_side_by_side(sample, range(len(chunks)), workers, x_known.device.type)
        finally:
            self.network.train(was_training)
        return out

    def _sample_chunk(self, xk, m, c_sl, generator, start, cancel, step_done) -> torch.Tensor:
        """The reverse chain of one sub-batch: its starting noise, then every step's network call."""
        if start is None:
            x = torch.randn(xk.shape, generator=generator, device=xk.device, dtype=xk.dtype)
        else:
            x = start(xk, m, c_sl, generator)
        for idx, t in zip(self.scheduler.timesteps.tolist(), self.model_timesteps.tolist()):
            if cancel is not None and cancel():
                raise Cancelled("sampling cancelled")
            x = torch.where(m, xk, x)
            x = self._step(self._predict(x, m, t, c_sl), idx, x, generator)
            step_done()
        return torch.where(m, xk, x)

    def _step(self, pred, idx, x, generator) -> torch.Tensor:
        if self._is_ddim:
            return self.scheduler.step(pred, idx, x, eta=float(self.eta), generator=generator)[0]
        return self.scheduler.step(pred, idx, x, generator=generator)[0]

    def _chunk_generators(self, chunks, x_known, generator) -> list[torch.Generator]:
        """One generator per chunk, at the state the shared ``generator`` has when that chunk starts
        in a one-at-a-time run; ``generator`` ends where that run leaves it.

        Found by a dry run of each chunk's draws (starting noise, then the scheduler's steps on a
        zero prediction): what a step draws depends on shapes only, and the scheduler's own code
        makes the draws, so the replay cannot drift from it.
        """
        device = x_known.device
        shared = generator if generator is not None else torch.default_generator
        out = []
        for sl in chunks:
            g = torch.Generator(device=device)
            g.set_state(shared.get_state())
            out.append(g)
            shape = (sl.stop - sl.start, *x_known.shape[1:])
            x = torch.randn(shape, generator=shared, device=device, dtype=x_known.dtype)
            zero = torch.zeros_like(x)
            for idx in self.scheduler.timesteps.tolist():
                x = self._step(zero, idx, x, shared)
        return out
