"""``volsr doctor`` (the records of :func:`volsr.cli.doctor.gather`, the printed screen, ``--json``) and the
one-line error of ``--device cuda`` / ``--device mps`` on a machine without that GPU."""

import json

import pytest
import torch

import volsr
from volsr.cli import doctor, main
from volsr.errors import VolsrError
from volsr.metrics import features
from volsr.runtime.hardware import resolve_device
from volsr.runtime.precision import resolve_precision


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _by_label(checks):
    out = {}
    for c in checks:
        out.setdefault(c.label, []).append(c)
    return out


def _one(checks, label):
    (c,) = _by_label(checks)[label]
    return c


def test_records_versions_device_precision_models(no_gpu):
    checks = doctor.gather()
    assert _one(checks, "volsr").value == volsr.__version__
    assert _one(checks, "torch").value == torch.__version__
    for label in ("Python", "MONAI", "numpy", "torchvision", "napari", "dask", "CPU", "CPU bfloat16", "memory",
                  "compute dtype", "FID weights", "napari GUI"):
        assert _one(checks, label).value, label
    assert _one(checks, "device (auto)").value == "cpu"
    assert _one(checks, "CUDA").value.startswith("not available")
    assert "GPU 0" not in _by_label(checks)
    assert _one(checks, "precision (auto)").value == resolve_precision("auto", torch.device("cpu"))
    assert any(c.value.startswith("sample_model: msdsr") for c in _by_label(checks)["model"])
    # no GPU: the device line warns, and the summary says so with the README's figure
    assert _one(checks, "device (auto)").warning.startswith("CPU only")
    line = doctor.summary(checks)
    assert line.startswith("warnings: ") and "12.5-13.1 min" in line


def test_missing_inception_weights_warns_with_the_fix(monkeypatch, no_gpu):
    monkeypatch.setattr(features, "find_inception_weights", lambda weights=None: None)
    c = _one(doctor.gather(), "FID weights")
    assert c.warning and "Inception" in c.warning
    assert c.value.startswith("missing: ")
    assert str(features._missing_weights_error()) in c.value  # the lookup's own fix text
    assert "--inception-weights" in c.value and features.ENV_WEIGHTS in c.value


def test_found_inception_weights_show_their_path(monkeypatch, tmp_path, no_gpu):
    fake = tmp_path / features.FID_WEIGHTS_FILE
    fake.write_bytes(b"not really weights")
    monkeypatch.setattr(features, "find_inception_weights", lambda weights=None: fake)
    c = _one(doctor.gather(), "FID weights")
    assert c.value == f"found: {fake}" and c.warning is None


def test_inception_env_var_typo_is_reported_not_raised(monkeypatch, tmp_path, no_gpu):
    monkeypatch.setenv(features.ENV_WEIGHTS, str(tmp_path / "nope.pth"))
    c = _one(doctor.gather(), "FID weights")
    assert c.value.startswith("unavailable (ModelFileError") and "nope.pth" in c.value and c.warning


def test_failing_cuda_query_is_unavailable_not_an_exception(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    monkeypatch.setattr(torch.cuda, "mem_get_info", broken)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", broken)
    checks = doctor.gather()
    assert _one(checks, "device (auto)").value == "cuda"
    gpu = _one(checks, "GPU 0")
    assert gpu.value == "unavailable (RuntimeError: CUDA driver initialization failed)"
    assert "GPU 0 query failed" in gpu.warning
    assert _one(checks, "GPU 0 memory").value.startswith("unavailable (RuntimeError")
    assert _one(checks, "compute dtype").value.startswith("unavailable (RuntimeError")
    assert "GPU 0 query failed" in doctor.summary(checks)
    assert main(["doctor"]) == 0  # and the screen prints


def test_a_healthy_gpu_line(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: SimpleNamespace(total_memory=140 << 30))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (100 << 30, 140 << 30))
    checks = doctor.gather()
    assert _one(checks, "device (auto)").value == "cuda" and _one(checks, "device (auto)").warning is None
    assert _one(checks, "GPU 0").value == "NVIDIA H200, 140.0 GiB, compute capability 9.0, bfloat16 native"
    assert _one(checks, "GPU 0 memory").value == "100.0 GiB free of 140.0 GiB"
    assert _one(checks, "precision (auto)").value == "bfloat16"
    assert _one(checks, "compute dtype").value == "bfloat16 autocast, channels-last"
    assert "CPU only" not in doctor.summary(checks)


def test_a_failing_query_anywhere_never_crashes(monkeypatch, no_gpu):
    from volsr import checkpoint
    from volsr.runtime import hardware

    def broken(*args, **kwargs):
        raise OSError("read failed")

    monkeypatch.setattr(checkpoint, "list_bundled_models", broken)
    monkeypatch.setattr(hardware, "host_available_memory", broken)
    monkeypatch.setattr(hardware, "usable_cpus", broken)
    checks = doctor.gather()
    assert _one(checks, "models").value == "unavailable (OSError: read failed)"
    assert _one(checks, "memory").value == "unavailable (OSError: read failed)"
    assert _one(checks, "CPU").value == "unavailable (OSError: read failed)"
    assert _one(checks, "device (auto)").warning.startswith("CPU only")


def test_ready_summary_when_nothing_warns():
    checks = [doctor.Check("device (auto)", "cuda"), doctor.Check("compute dtype", "bfloat16 autocast"),
              doctor.Check("model", "sample_model: msdsr")]
    assert doctor.summary(checks) == "ready: cuda (bfloat16 autocast), 1 bundled model, FID weights found"


def test_main_doctor_prints_every_label(capsys, no_gpu):
    assert main(["doctor"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = out.splitlines()
    checks = doctor.gather()
    assert len(lines) == len(checks) + 1
    width = lines[0].index(volsr.__version__)  # values start in one column, like `volsr info`
    for c, text in zip(checks, lines):
        assert text.startswith(c.label + ":") and text[width:] == c.value
    assert lines[-1].startswith(("ready: ", "warnings: "))


def test_main_doctor_json(capsys, no_gpu):
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"label": "torch", "value": torch.__version__, "warning": None} in data["records"]
    assert all(set(r) == {"label", "value", "warning"} for r in data["records"])
    assert data["summary"].startswith(("ready: ", "warnings: "))


# -- --device cuda / mps without that GPU: one line, exit code 2, nothing written -----------------
def test_infer_device_cuda_without_gpu_is_one_line(capsys, tmp_path, no_gpu):
    out = tmp_path / "x.tif"
    assert main(["infer", "--sample", "--device", "cuda", "-o", str(out)]) == 2
    stdout, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("volsr: error: ") and "cuda" in err
    assert "Traceback" not in err and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_infer_fit_device_cuda_refused_before_the_fit_notice(capsys, tmp_path, no_gpu):
    stack = volsr.write_stack(tmp_path / "s.tif", torch.rand(4, 16, 16).numpy(), "ZYX", spacing=(2.0, 1.0, 1.0))
    assert main(["infer", str(stack), "--fit-steps", "1", "--device", "cuda", "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cuda" in err and "fitting" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_upscale_zero_shot_device_cuda_refused_before_the_fit_notice(capsys, tmp_path, no_gpu):
    image = volsr.write_stack(tmp_path / "i.tif", torch.rand(1, 16, 16).numpy(), "ZYX")
    rc = main(["upscale", str(image), "--engine", "msunet", "--fit-steps", "1", "--device", "cuda",
               "-o", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cuda" in err and "zero-shot" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.tif"]


def test_train_device_cuda_without_gpu_is_one_line(capsys, tmp_path, no_gpu):
    stack = volsr.write_stack(tmp_path / "s.tif", torch.rand(4, 16, 16).numpy(), "ZYX")
    assert main(["train", str(stack), "-o", str(tmp_path / "m.volsr"), "--steps", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("volsr: error: ") and "cuda" in err
    assert not (tmp_path / "m.volsr").exists()


def test_resolve_device_refuses_what_this_machine_lacks(monkeypatch, no_gpu):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(VolsrError, match="--device mps"):
        resolve_device("mps")
    with pytest.raises(VolsrError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(VolsrError, match="cuda:1 .* 1 CUDA GPU"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cpu") == torch.device("cpu")


# -- out of memory: one line naming --batch-size (the README's Troubleshooting cites it) ----------
@pytest.mark.parametrize("error", [getattr(torch, "OutOfMemoryError", RuntimeError)("CUDA out of memory. Tried to "
                                   "allocate 2.00 GiB"), MemoryError()])
def test_out_of_memory_is_one_line_naming_batch_size(capsys, monkeypatch, tmp_path, no_gpu, error):
    import volsr.api

    def oom(*args, **kwargs):
        raise error

    monkeypatch.setattr(volsr.api, "restore", oom)
    assert main(["infer", "--sample", "-o", str(tmp_path / "x.tif"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("volsr: error: out of memory; pass a smaller --batch-size")
    assert list(tmp_path.iterdir()) == []


def test_other_runtime_errors_still_raise(monkeypatch, tmp_path, no_gpu):
    import volsr.api

    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(volsr.api, "restore", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["infer", "--sample", "-o", str(tmp_path / "x.tif"), "-q"])
