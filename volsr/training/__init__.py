"""How learned engines are fitted: the loop (budget, optimiser, EMA, checkpoints), training planes,
degradations (what "low resolution" means), known-row masks and losses.

An engine supplies ``training_loss``; everything around it is here and shared by every engine.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "Degradation": "degrade",
    "IsotropicDegradation": "degrade",
    "RowDegradation": "degrade",
    "blur_rows": "degrade",
    "degradation_from_dict": "degrade",
    "gaussian_kernel": "degrade",
    "profile_from_psf_file": "degrade",
    "psf_sigma_rows": "degrade",
    "Budget": "budget",
    "Checkpointer": "state",
    "Optimiser": "state",
    "StagePlan": "budget",
    "TrainSettings": "state",
    "TrainState": "state",
    "check_budget": "budget",
    "ema_decay_at": "budget",
    "fit_engine": "loop",
    "lr_at": "budget",
    "lr_at_fraction": "budget",
    "REDUCTIONS": "losses",
    "fft_patch_loss": "losses",
    "fft_spectrum_loss": "losses",
    "patch_spectra": "losses",
    "PAPER_LMAX_FRAC": "masks",
    "PAPER_LMIN_FRAC": "masks",
    "MaskSampler": "masks",
    "linear_fill": "masks",
    "mask_sampler_from_config": "masks",
    "per_plane": "masks",
    "random_rows": "masks",
    "row_mask": "masks",
    "strided_rows": "masks",
    "DEFAULT_CROP": "planes",
    "PlaneData": "planes",
    "PlaneTriplets": "planes",
    "as_plane_data": "planes",
    "as_triplet_data": "planes",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
