"""The ``volsr`` command (``volsr.cli.main``): info, infer, models — outputs, exit codes, messages."""

import json
from pathlib import Path

import numpy as np
import pytest

import volsr
from volsr.cli import default_output, main


def _vol(shape=(6, 32, 32), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, s) for s in shape[-3:]), indexing="ij")
    base = 0.5 + 0.25 * np.sin(7 * x + 3 * y) * np.cos(5 * z) + 0.2 * rng.random(shape)  # broadcasts over C
    if np.dtype(dtype).kind == "f":
        return (base * 100).astype(dtype)
    return (base * 50000).astype(dtype)


def _write(folder, name="stack.tif", data=None, axes="ZYX", spacing=(1.0, 0.5, 0.5)):
    data = _vol() if data is None else data
    return volsr.write_stack(Path(folder) / name, data, axes, spacing=spacing), data


def _partials(folder):
    return sorted(p.name for p in Path(folder).glob(".*partial*"))


def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


# -- info --------------------------------------------------------------------------------------
def test_info_prints_shape_axes_spacing_and_factor(tmp_path, capsys):
    src, _ = _write(tmp_path)
    rc, out, _ = _run(capsys, "info", src)
    assert rc == 0
    assert "ZYX" in out and "(6, 32, 32)" in out and "uint16" in out
    assert "C=1 Z=6 Y=32 X=32" in out
    assert "(z, y, x) = (1, 0.5, 0.5) µm" in out
    assert "z factor:  2  -> 11 output planes" in out

    src, _ = _write(tmp_path, "czyx.tif", _vol((2, 5, 16, 16)), "CZYX", spacing=(1.25, 0.5, 0.5))
    rc, out, _ = _run(capsys, "info", src)
    assert rc == 0 and "CZYX" in out and "C=2 Z=5 Y=16 X=16" in out and "z factor:  2.5  -> 11 output planes" in out

    src, _ = _write(tmp_path, "nosp.tif", spacing=None)
    rc, out, _ = _run(capsys, "info", src)
    assert rc == 0 and "unknown" in out and "--z-factor" in out

    rc, _, err = _run(capsys, "info", tmp_path / "missing.tif")
    assert rc == 2 and "does not exist" in err


# -- infer: the linear path end to end ---------------------------------------------------------
def test_infer_linear_default_output_next_to_input(tmp_path, capsys):
    src, data = _write(tmp_path)
    rc, _, err = _run(capsys, "infer", src, "--engine", "linear", "-q")
    assert rc == 0
    out = tmp_path / "stack_volsr.tif"
    assert out.exists() and str(out) in err and "6 -> 11 z planes" in err
    back = volsr.read_stack(out)
    assert back.axes == "ZYX" and back.data.dtype == np.uint16 and back.data.shape == (11, 32, 32)
    assert back.spacing == pytest.approx((0.5, 0.5, 0.5)) and back.unit == "µm"
    np.testing.assert_array_equal(back.data[::2], data)  # measured planes identical
    mid = (data[2].astype(np.float64) + data[3]) / 2
    np.testing.assert_allclose(back.data[5].astype(np.float64), mid, atol=1.0)
    assert _files(tmp_path) == ["stack.tif", "stack_volsr.tif"]  # no model file, no leftovers

    rc, _, _ = _run(capsys, "infer", src, "--engine", "linear", "-q", "--float32", "-o", tmp_path / "f.tif")
    back = volsr.read_stack(tmp_path / "f.tif")
    assert rc == 0 and back.data.dtype == np.float32
    np.testing.assert_allclose(back.data[5], mid, rtol=1e-5, atol=0.05)


@pytest.mark.parametrize("name,expected", [("a/stack.tif", "a/stack_volsr.tif"), ("a/x.ome.tif", "a/x_volsr.tif"),
                                           ("v.npy", "v_volsr.npy"), ("b.nii.gz", "b_volsr.nii.gz"),
                                           ("c.czi", "c_volsr.tif")])
def test_default_output_names(name, expected):
    assert default_output(name) == Path(expected)


def test_existing_output_needs_overwrite(tmp_path, capsys):
    src, data = _write(tmp_path)
    out = tmp_path / "stack_volsr.tif"
    assert _run(capsys, "infer", src, "--engine", "linear", "-q")[0] == 0
    before = out.read_bytes()
    rc, _, err = _run(capsys, "infer", src, "--engine", "linear", "-q", "--z-factor", "3")
    assert rc == 2 and "--overwrite" in err
    assert out.read_bytes() == before  # untouched
    rc, _, _ = _run(capsys, "infer", src, "--engine", "linear", "-q", "--z-factor", "3", "--overwrite")
    assert rc == 0
    back = volsr.read_stack(out)
    assert back.data.shape == (16, 32, 32)
    np.testing.assert_array_equal(back.data[::3], data)
    assert _partials(tmp_path) == []


def _nan_stack():
    d = _vol(dtype=np.float32)
    d[3, 4, 5] = np.nan
    return d


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing_folder", "does not exist"),
        ("missing_input", "does not exist"),
        ("flat", "single z plane"),
        ("nan", "NaN/Inf"),
        ("no_spacing", "--z-factor"),
        ("bad_factor", "z factor"),
        ("bad_axes", "letters"),
        ("bad_extension", "unsupported output type"),
        ("output_is_folder", "is a folder"),
        ("bad_engine", "unknown engine"),
        ("no_input", "--sample"),
        ("missing_model", "does not exist"),
        ("engine_model_mismatch", "'msdsr' model"),
        ("channel_mismatch", "channel"),
        ("bad_batch_size", "batch size"),
    ],
)
def test_infer_failures_exit_2_and_write_nothing(tmp_path, capsys, case, match):
    src, _ = _write(tmp_path)
    args = ["infer", src, "--engine", "linear", "-q"]
    if case == "missing_folder":
        args += ["-o", tmp_path / "nope" / "out.tif"]
    elif case == "missing_input":
        args[1] = tmp_path / "missing.tif"
    elif case == "flat":
        args[1] = _write(tmp_path, "flat.tif", _vol()[0], "YX", (None, 0.5, 0.5))[0]
    elif case == "nan":
        args[1] = _write(tmp_path, "nan.tif", _nan_stack())[0]
    elif case == "no_spacing":
        args[1] = _write(tmp_path, "nosp.tif", spacing=None)[0]
    elif case == "bad_factor":
        args += ["--z-factor", "0.5"]
    elif case == "bad_axes":
        args += ["--axes", "CZYX"]
    elif case == "bad_extension":
        args += ["-o", tmp_path / "out.xyz"]
    elif case == "output_is_folder":
        (tmp_path / "dir").mkdir()
        args += ["-o", tmp_path / "dir"]
    elif case == "bad_engine":
        args[3] = "bogus"
    elif case == "no_input":
        args = ["infer", "-q", "--engine", "linear"]
    elif case == "missing_model":
        args = ["infer", src, "-q", "--model", tmp_path / "m.volsr"]
    elif case == "engine_model_mismatch":
        args += ["--model", "sample_model"]
    elif case == "channel_mismatch":
        args = ["infer", _write(tmp_path, "c2.tif", _vol((2, 4, 16, 16)), "CZYX")[0], "-q",
                "--model", "sample_model", "--steps", "1"]
    elif case == "bad_batch_size":
        args += ["--batch-size", "-1"]
    before = _files(tmp_path)
    rc, _, err = _run(capsys, *args)
    assert rc == 2
    assert err.startswith("volsr: error:") and match in err
    assert _files(tmp_path) == before  # nothing written, no temporary files left
    assert _partials(tmp_path) == []


def test_z_factor_overrides_the_spacing(tmp_path, capsys):
    src, data = _write(tmp_path)  # spacing gives factor 2
    rc, _, err = _run(capsys, "infer", src, "--engine", "linear", "-q", "--z-factor", "2.5")
    assert rc == 0 and "factor 2.5" in err
    back = volsr.read_stack(tmp_path / "stack_volsr.tif")
    n_out = int(round(5 * 2.5)) + 1
    assert back.data.shape == (n_out, 32, 32)
    # the output z spacing is the xy spacing times the (slightly uneven) output step
    assert back.spacing == pytest.approx((0.5 * 5 * 2.5 / (n_out - 1), 0.5, 0.5))
    for i in range(6):
        np.testing.assert_array_equal(back.data[int(round(i * 2.5))], data[i])


def test_planes_xz_and_blur(tmp_path, capsys):
    src, data = _write(tmp_path, data=_vol(dtype=np.float32))
    common = ["infer", src, "--engine", "linear", "-q"]
    assert _run(capsys, *common, "-o", tmp_path / "both.tif")[0] == 0
    assert _run(capsys, *common, "--planes", "xz", "-o", tmp_path / "xz.tif")[0] == 0
    assert _run(capsys, *common, "--blur", "0.5", "-o", tmp_path / "blur.tif")[0] == 0
    both, xz, blur = (volsr.read_stack(tmp_path / f"{n}.tif").data for n in ("both", "xz", "blur"))
    assert both.shape == xz.shape == blur.shape == (11, 32, 32)
    np.testing.assert_allclose(xz, both, rtol=1e-5, atol=1e-4)  # linear in z is the same on XZ and YZ planes
    for r in (xz, blur):
        np.testing.assert_array_equal(r[::2], data)
    assert np.abs(blur[1::2] - both[1::2]).max() > 1e-3  # the blur changed the new planes
    rc, _, err = _run(capsys, *common, "--blur", "-1", "-o", tmp_path / "neg.tif")
    assert rc == 2 and "blur" in err and not (tmp_path / "neg.tif").exists()


# -- infer: learned engines --------------------------------------------------------------------
@pytest.mark.parametrize("engine_args", [["--engine", "msunet"], ["--steps", "2"]], ids=["msunet", "msdsr"])
def test_infer_fits_saves_and_reuses_a_model(tmp_path, capsys, engine_args):
    src, data = _write(tmp_path)
    rc, _, err = _run(capsys, "infer", src, *engine_args, "--fit-steps", "2", "-q", "--device", "cpu")
    assert rc == 0
    out, model = tmp_path / "stack_volsr.tif", tmp_path / "stack_volsr.volsr"
    assert out.exists() and model.exists()
    assert "fitting" in err and str(model) in err
    first = volsr.read_stack(out).data
    assert first.shape == (11, 32, 32)
    np.testing.assert_array_equal(first[::2], data)
    engine = "msunet" if "msunet" in engine_args else "msdsr"
    assert volsr.load_engine(model).name == engine

    # the saved model, same seed: the same result, and no new fit or model file
    rc, _, err = _run(capsys, "infer", src, "--model", model, *engine_args, "-q", "-o", tmp_path / "again.tif",
                      "--device", "cpu")
    assert rc == 0 and "fitting" not in err
    np.testing.assert_array_equal(volsr.read_stack(tmp_path / "again.tif").data, first)
    assert _files(tmp_path) == ["again.tif", "stack.tif", "stack_volsr.tif", "stack_volsr.volsr"]


def test_infer_fit_errors_before_fitting(tmp_path, capsys):
    src, _ = _write(tmp_path)
    for flag in (["--fit-steps", "0"], ["--fit-steps", "-3"], ["--fit-minutes", "0"]):
        rc, _, err = _run(capsys, "infer", src, "--engine", "msunet", "-q", *flag)
        assert rc == 2 and flag[0] in err
        assert "fitting" not in err  # refused before announcing (or doing) a fit
    # a model file in a missing folder: refused before the fit
    rc, _, err = _run(capsys, "infer", src, "--engine", "msunet", "--fit-steps", "2", "-q",
                      "--save-model", tmp_path / "nope" / "m.volsr")
    assert rc == 2 and "does not exist" in err and "fitting" not in err
    # an existing model file is not replaced without --overwrite
    (tmp_path / "stack_volsr.volsr").write_bytes(b"keep")
    rc, _, err = _run(capsys, "infer", src, "--engine", "msunet", "--fit-steps", "2", "-q")
    assert rc == 2 and "stack_volsr.volsr" in err and "--overwrite" in err
    assert (tmp_path / "stack_volsr.volsr").read_bytes() == b"keep"
    assert _files(tmp_path) == ["stack.tif", "stack_volsr.volsr"]


def test_n_samples_writes_a_std_map(tmp_path, capsys):
    src, _ = _write(tmp_path, data=_vol((4, 24, 24)))
    rc, _, err = _run(capsys, "infer", src, "--model", "sample_model", "--steps", "2", "--n-samples", "2", "-q",
                      "--device", "cpu")
    assert rc == 0
    res, std = (volsr.read_stack(tmp_path / n) for n in ("stack_volsr.tif", "stack_volsr_std.tif"))
    assert res.data.shape == std.data.shape == (7, 24, 24)
    assert std.spacing == pytest.approx(res.spacing)
    np.testing.assert_array_equal(std.data[::2], 0)
    assert std.data[1::2].max() > 0


@pytest.fixture
def small_sample(monkeypatch):
    """The bundled sample cropped to 32x32 in XY (the full sample takes ~30 s on 2 cores)."""
    import volsr.samples
    from volsr.io import Stack

    full = volsr.samples.sample_stack()
    small = Stack(data=full.data[:, 40:72, 40:72].copy(), axes=full.axes, spacing=full.spacing, unit=full.unit)
    monkeypatch.setattr(volsr.samples, "sample_stack", lambda: small)
    return small


def test_infer_sample_uses_the_bundled_model(tmp_path, capsys, small_sample):
    out = tmp_path / "out.tif"
    rc, _, err = _run(capsys, "infer", "--sample", "-o", out, "--steps", "2", "-q", "--device", "cpu")
    assert rc == 0 and "fitting" not in err and "engine msdsr" in err
    assert _files(tmp_path) == ["out.tif"]  # no fitted model written
    back = volsr.read_stack(out)
    n_out = (small_sample.data.shape[0] - 1) * 4 + 1
    assert back.data.shape == (n_out, 32, 32) and back.data.dtype == small_sample.data.dtype
    assert back.spacing == pytest.approx((0.25, 0.25, 0.25))
    api = volsr.restore(small_sample, model="sample_model", sampling_steps=2, seed=0, device="cpu")
    np.testing.assert_array_equal(back.data, api.data)


def test_models_lists_the_bundled_model(capsys):
    rc, out, _ = _run(capsys, "models")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("sample_model"))
    assert "msdsr" in line and "MB" in line
    rc, out, _ = _run(capsys, "models", "--json")
    models = json.loads(out)
    assert rc == 0 and {"name": "sample_model", "engine": "msdsr"}.items() <= next(
        m for m in models if m["name"] == "sample_model").items()


# -- --damaged-planes ------------------------------------------------------------------------
def test_infer_damaged_planes_restores_them_and_records_the_good_ones(tmp_path, capsys):
    data = _vol()
    data[2] = 0  # a lost section
    src, _ = _write(tmp_path, data=data)
    rc, _, err = _run(capsys, "infer", src, "--engine", "linear", "-q", "--damaged-planes", "2")
    assert rc == 0 and "1 damaged plane(s) restored" in err
    back = volsr.read_stack(tmp_path / "stack_volsr.tif")
    assert back.data.shape == (11, 32, 32) and back.spacing == pytest.approx((0.5, 0.5, 0.5))
    assert list(back.measured_planes) == [0, 2, 6, 8, 10]  # the damaged plane's row 4 was restored
    for i in (0, 1, 3, 4, 5):
        np.testing.assert_array_equal(back.data[2 * i], data[i])
    mid = (data[1].astype(np.float64) + data[3]) / 2
    np.testing.assert_allclose(back.data[4].astype(np.float64), mid, atol=1.0)


@pytest.mark.parametrize("value,match", [("6", "outside the stack"), ("-1", "negative"), ("x", "not a plane number"),
                                         ("5-3", "backwards"), ("a-b", "not a plane number"),
                                         ("0-5", "every plane"), ("1-5", "at least 2 good planes")])
def test_infer_bad_damaged_planes_exit_2_one_line_nothing_written(tmp_path, capsys, value, match):
    src, _ = _write(tmp_path)
    before = _files(tmp_path)
    rc, _, err = _run(capsys, "infer", src, "--engine", "linear", "-q", f"--damaged-planes={value}")
    assert rc == 2 and err.startswith("volsr: error:") and match in err
    assert len(err.strip().splitlines()) == 1
    assert _files(tmp_path) == before and _partials(tmp_path) == []


def test_infer_damaged_planes_on_a_2d_image_is_refused(tmp_path, capsys):
    src, _ = _write(tmp_path, "img.tif", _vol((1, 32, 32))[0], "YX")
    rc, _, err = _run(capsys, "infer", src, "--engine", "linear", "-q", "--z-factor", "2", "--damaged-planes", "0")
    assert rc == 2 and "damaged planes" in err and len(err.strip().splitlines()) == 1
