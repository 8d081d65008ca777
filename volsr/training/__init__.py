"""How learned engines are fitted: the loop (budget, optimiser, EMA, checkpoints), training planes,
degradations (what "low resolution" means), known-row masks and losses.

An engine supplies ``training_loss``; everything around it is here and shared by every engine.
"""


from .degrade import (  # noqa: F401
    Degradation,
    IsotropicDegradation,
    RowDegradation,
    blur_rows,
    degradation_from_dict,
    gaussian_kernel,
    profile_from_psf_file,
    psf_sigma_rows,
)
from .loop import (  # noqa: F401
    Budget,
    Checkpointer,
    Optimiser,
    StagePlan,
    TrainSettings,
    TrainState,
    check_budget,
    ema_decay_at,
    fit_engine,
    lr_at,
    lr_at_fraction,
)
from .losses import (  # noqa: F401
    REDUCTIONS,
    fft_patch_loss,
    fft_spectrum_loss,
    patch_spectra,
)
from .masks import (  # noqa: F401
    PAPER_LMAX_FRAC,
    PAPER_LMIN_FRAC,
    MaskSampler,
    linear_fill,
    mask_sampler_from_config,
    per_plane,
    random_rows,
    row_mask,
    strided_rows,
)
from .planes import (  # noqa: F401
    DEFAULT_CROP,
    PlaneData,
    PlaneTriplets,
    as_plane_data,
    as_triplet_data,
)

__all__ = [
    "Budget",
    "Checkpointer",
    "DEFAULT_CROP",
    "Degradation",
    "IsotropicDegradation",
    "MaskSampler",
    "Optimiser",
    "PAPER_LMAX_FRAC",
    "PAPER_LMIN_FRAC",
    "PlaneData",
    "PlaneTriplets",
    "REDUCTIONS",
    "RowDegradation",
    "StagePlan",
    "TrainSettings",
    "TrainState",
    "as_plane_data",
    "as_triplet_data",
    "blur_rows",
    "check_budget",
    "degradation_from_dict",
    "ema_decay_at",
    "fft_patch_loss",
    "fft_spectrum_loss",
    "fit_engine",
    "gaussian_kernel",
    "linear_fill",
    "lr_at",
    "lr_at_fraction",
    "mask_sampler_from_config",
    "patch_spectra",
    "per_plane",
    "profile_from_psf_file",
    "psf_sigma_rows",
    "random_rows",
    "row_mask",
    "strided_rows",
]
