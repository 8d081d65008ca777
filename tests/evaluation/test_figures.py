"""The report figures (volsr.evaluation.figures)."""

from volsr.evaluation import volume_3d, write_report


def test_figures_leave_the_matplotlib_backend_alone(hr, tmp_path):
    """Notebooks keep their inline backend after write_report draws the PNG figures."""
    import matplotlib

    matplotlib.use("svg")  # any non-Agg backend stands in for the notebook's inline one
    res = volume_3d(hr, ["linear"], (2,), crop=24, n_crops=16, features="lowlevel", device="cpu")
    paths = write_report(res, tmp_path / "r")
    assert paths["spectra_png"].stat().st_size > 0
    assert matplotlib.get_backend().lower() == "svg"
