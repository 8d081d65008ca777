"""Issue 11: two-stage MSDSR (regression estimate + diffusion residual), realism, axial PSF."""

import numpy as np
import pytest
import torch

from volsr.engines import create_engine, load_engine
from volsr.errors import VolsrError
from volsr.training.degrade import IsotropicDegradation, RowDegradation, degradation_from_dict, psf_sigma_rows


def _known(h=13, step=4):
    k = torch.zeros(h, dtype=torch.bool)
    k[::step] = True
    return k


def _two_stage(**kw):
    eng = create_engine("msdsr", preset="tiny", condition="regression", sampling_steps=2, **kw)
    eng.trained = True
    return eng


def test_two_stage_save_load_round_trip_and_known_rows(tmp_path):
    eng = _two_stage()
    assert set(eng.network.keys()) == {"denoiser", "regressor"}
    assert [p.name for p in eng.trainable_parts()] == ["regressor", "denoiser"]
    planes, known = torch.rand(3, 1, 13, 20), _known()
    out = eng.restore(planes, known, seed=1)
    assert torch.equal(out[:, :, known], planes[:, :, known])
    path = eng.save(tmp_path / "m.volsr")
    again = load_engine(path)
    assert again.cfg == eng.cfg and again.cfg.two_stage
    assert torch.equal(again.restore(planes, known, seed=1), out)


def test_realism_zero_is_the_deterministic_estimate_and_one_varies_with_seed():
    eng = _two_stage()
    planes, known = torch.rand(2, 1, 13, 16), _known()
    r0a = eng.restore(planes, known, realism=0.0, seed=1)
    r0b = eng.restore(planes, known, realism=0.0, seed=2)
    assert torch.equal(r0a, r0b)
    est = eng.estimate(eng.sampling_network, planes, known)
    assert torch.allclose(r0a, est)
    r1a = eng.restore(planes, known, realism=1.0, seed=1)
    r1b = eng.restore(planes, known, realism=1.0, seed=2)
    assert not torch.equal(r1a, r1b)
    half = eng.restore(planes, known, realism=0.5, seed=1, noise_match=0.0)
    full = eng.restore(planes, known, realism=1.0, seed=1, noise_match=0.0)
    assert torch.allclose(half, 0.5 * (r0a + full), atol=1e-5)  # a straight blend of estimate and sample


def test_realism_needs_a_two_stage_model():
    eng = create_engine("msdsr", preset="tiny", condition="linear")
    with pytest.raises(VolsrError, match="two-stage"):
        eng.restore(torch.rand(1, 1, 9, 8), _known(9), realism=0.5)


def test_psf_degradation_on_a_delta_gives_the_requested_z_profile():
    d = RowDegradation(psf_sigma=2.0)
    x = torch.zeros(1, 1, 41, 3)
    x[0, 0, 20] = 1.0
    prof = d.blur(x)[0, 0, :, 1].numpy()
    z = np.arange(41) - 20
    want = np.exp(-0.5 * (z / 2.0) ** 2)
    np.testing.assert_allclose(prof, want / want.sum(), atol=1e-4)  # kernel truncated at 4 sigma
    assert float((prof * z**2).sum()) == pytest.approx(4.0, rel=0.01)  # variance = sigma^2
    measured = RowDegradation(psf_profile=(1.0, 2.0, 1.0)).blur(x)[0, 0, 19:22, 0]
    np.testing.assert_allclose(measured.numpy(), [0.25, 0.5, 0.25])
    assert RowDegradation().blur(x) is x
    assert degradation_from_dict(d.to_dict()) == d
    assert IsotropicDegradation(scale=4)(torch.rand(2, 1, 16, 12)).shape == (2, 1, 4, 3)
    assert psf_sigma_rows("0.8um", 0.2) == pytest.approx(4.0) and psf_sigma_rows("2", None) == 2.0
    with pytest.raises(VolsrError):
        RowDegradation(psf_sigma=-1)


def test_psf_aware_fit_beats_the_unaware_one_on_a_z_blurred_volume():
    """Sharp structure, measured planes blurred along z (sigma 1.5 px): the aware fit deconvolves."""
    from scipy.ndimage import gaussian_filter1d

    from volsr.grid import OutputGrid
    from volsr.pipeline.volume import restore_volume
    from volsr.samples import isotropic_volume

    truth = isotropic_volume((33, 48, 48), seed=3, kind="fibers", dtype="float32")
    blurred = gaussian_filter1d(truth, 1.5, axis=0, mode="nearest")
    grid = OutputGrid(9, 4)
    low = blurred[grid.positions][None]
    scores = {}
    for label, deg in (("unaware", RowDegradation()), ("aware", RowDegradation(psf_sigma=1.5))):
        torch.manual_seed(0)
        eng = create_engine("msunet", preset="tiny", crop=32, degradation=deg)
        eng.fit(low, steps=100, batch_size=8, seed=0)
        out = restore_volume(low, grid, eng).data[0]
        unknown = ~grid.known_mask
        scores[label] = float(np.mean((out[unknown] - truth[: grid.n_out][unknown]) ** 2))
    assert scores["aware"] < scores["unaware"], scores


# -- command line ------------------------------------------------------------------------------------
def _stack(tmp_path, spacing=(1.0, 0.5, 0.5)):
    import volsr

    data = (np.random.default_rng(0).random((5, 32, 32)) * 1000).astype(np.uint16)
    return str(volsr.write_stack(tmp_path / "s.tif", data, "ZYX", spacing=spacing))


@pytest.mark.parametrize("extra, match", [
    (["--engine", "linear", "--realism", "0.5"], "does not take the option(s) realism"),
    (["--engine", "msdsr", "--model", "{one_stage}", "--realism", "0.5"], "two-stage"),
    (["--engine", "msdsr", "--fit-steps", "1", "--realism", "1.5"], "realism"),
    (["--engine", "msunet", "--fit-steps", "1", "--psf-sigma-z", "abc"], "psf-sigma-z"),
    (["--engine", "linear", "--psf-sigma-z", "2"], "axial PSF"),
    (["--model", "sample_model", "--psf-sigma-z", "2"], "--init-model"),
    (["--engine", "msunet", "--fit-steps", "1", "--psf-sigma-z", "2", "--psf-file", "x.tif"], "not both"),
])
def test_cli_refuses_bad_realism_and_psf_before_any_fit(tmp_path, capsys, monkeypatch, extra, match):
    from volsr.cli import main
    from volsr.engines.learned import LearnedEngine

    if "{one_stage}" in extra:  # a saved one-stage model (volsr 0.1's kind; the bundled one is two-stage)
        one = create_engine("msdsr", preset="tiny", condition="linear")
        one.fit(np.random.default_rng(1).random((4, 32, 32)).astype(np.float32), steps=1, crop=16, batch_size=2)
        extra = [str(one.save(tmp_path / "one_stage.volsr")) if a == "{one_stage}" else a for a in extra]
    monkeypatch.setattr(LearnedEngine, "fit", lambda *a, **k: pytest.fail("a fit started"))
    rc = main(["infer", _stack(tmp_path), "-q", "-o", str(tmp_path / "o.tif"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_cli_psf_sigma_reaches_the_fitted_model(tmp_path, capsys):
    from volsr.cli import main

    out = tmp_path / "o.tif"
    rc = main(["infer", _stack(tmp_path), "-q", "-o", str(out), "--engine", "msunet", "--fit-steps", "2",
               "--psf-sigma-z", "0.75um"])
    assert rc == 0 and out.exists()
    model = load_engine(out.with_suffix(".volsr"))
    assert model.cfg.degradation == RowDegradation(psf_sigma=1.5)  # 0.75 um / 0.5 um xy spacing
