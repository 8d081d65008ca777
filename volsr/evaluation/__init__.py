"""Scoring restorations: the paper's paired-2D and 3D (SliceFID) protocols, 2D image scores,
report tables and figures. The metrics themselves are in :mod:`volsr.metrics`.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "evaluate": "combined",
    "COLUMNS": "common",
    "GROUND_TRUTH": "common",
    "EvalResult": "common",
    "check_extractor": "common",
    "check_settings": "common",
    "evenly_spaced_rows": "common",
    "holdout_planes": "common",
    "needs_fit": "common",
    "parse_variant": "common",
    "plot_fid_bars": "figures",
    "plot_spectra": "figures",
    "plot_xz_examples": "figures",
    "paired_2d": "protocol_2d",
    "volume_3d": "protocol_3d",
    "check_report_destination": "reports",
    "write_report": "reports",
    "MIN_SIDE": "scores_2d",
    "SPECTRUM_FLOOR": "scores_2d",
    "Y_OFFSET": "scores_2d",
    "Y_WEIGHTS": "scores_2d",
    "RPSCurves": "scores_2d",
    "as_batch": "scores_2d",
    "autoencoded": "scores_2d",
    "plot_rps": "scores_2d",
    "psnr_y": "scores_2d",
    "rps": "scores_2d",
    "rps_curves": "scores_2d",
    "score_2d": "scores_2d",
    "spectrum_error_2d": "scores_2d",
    "ssim_y": "scores_2d",
    "to_y": "scores_2d",
    "unit_range": "scores_2d",
    "upsample_lr": "scores_2d",
    "markdown_table": "tables",
    "paper_tables": "tables",
    "training_table": "tables",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
