"""Evaluation metrics: Frechet distances on pluggable features, SliceFID, paired PSNR/SSIM
per axis, radial power spectra with a spectral isotropy gap, and damaged-plane checks
(``check_planes``).

Only numpy/scipy/scikit-image/torch are needed at import time; torchvision is imported when
the ``inception`` features are first used.
"""

from .features import (
    FeatureExtractor,
    InceptionExtractor,
    LowLevelExtractor,
    find_inception_weights,
    get_extractor,
    list_extractors,
)
from .frechet import fid_from_features, frechet_distance, gaussian_stats
from .paired import paired_metrics, psnr, ssim_planes
from .plane_outliers import PlaneFlag, check_planes
from .slicefid import ReferenceStats, SliceFIDResult, crop_features, fid_of_crops, reference_stats, slice_fid
from .slicing import AXES, IntensityWindow, axis_slices, sample_image_crops, sample_volume_crops
from .spectra import AxisSpectra, axis_spectra, isotropy_gap, radial_power_spectrum, spectrum_error

__all__ = [
    "AXES",
    "AxisSpectra",
    "FeatureExtractor",
    "InceptionExtractor",
    "IntensityWindow",
    "LowLevelExtractor",
    "PlaneFlag",
    "ReferenceStats",
    "SliceFIDResult",
    "axis_slices",
    "axis_spectra",
    "check_planes",
    "crop_features",
    "fid_from_features",
    "fid_of_crops",
    "find_inception_weights",
    "frechet_distance",
    "gaussian_stats",
    "get_extractor",
    "isotropy_gap",
    "list_extractors",
    "paired_metrics",
    "psnr",
    "radial_power_spectrum",
    "reference_stats",
    "sample_image_crops",
    "sample_volume_crops",
    "slice_fid",
    "spectrum_error",
    "ssim_planes",
]
