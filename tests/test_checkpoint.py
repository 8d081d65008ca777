"""Model files: round trip, refusal of non-volsr / truncated / newer files, bundled names."""

import json
import pickle
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from volsr.checkpoint import (
    FORMAT_VERSION,
    list_bundled_models,
    load_model,
    load_training_checkpoint,
    read_model_info,
    resolve_model_path,
    save_model,
    save_training_checkpoint,
)
from volsr.engines import create_engine, load_engine
from volsr.errors import ModelFileError, OutputError, VolsrError


def tiny_engine():
    torch.manual_seed(0)
    return create_engine("msunet", preset="tiny")


def test_save_load_round_trip(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    p = save_model(tmp_path / "m.volsr", engine="msunet", config={"channels": 2, "x": [1, 2]}, state_dict=sd,
                   provenance={"steps": 7, "trained_on": "noise"})
    info, state = load_model(p)
    assert info["engine"] == "msunet" and info["config"] == {"channels": 2, "x": [1, 2]}
    assert info["format"] == "volsr-model" and info["format_version"] == FORMAT_VERSION
    assert info["provenance"]["steps"] == 7 and info["volsr_version"]
    assert set(state) == set(sd) and all(torch.equal(state[k], sd[k]) for k in sd)
    head = read_model_info(p)
    assert head["n_parameters"] == 12 + 5 and head["size_bytes"] == p.stat().st_size
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_save_refuses_overwrite_and_missing_folder(tmp_path):
    sd = {"w": torch.zeros(2)}
    p = save_model(tmp_path / "m.volsr", engine="msunet", config={}, state_dict=sd)
    with pytest.raises(OutputError):
        save_model(p, engine="msunet", config={}, state_dict=sd, overwrite=False)
    with pytest.raises(OutputError):
        save_model(tmp_path / "nope" / "m.volsr", engine="msunet", config={}, state_dict=sd)
    with pytest.raises(ModelFileError):
        save_model(p, engine="msunet", config={"f": object()}, state_dict=sd)


def test_engine_save_load_identical_outputs(tmp_path):
    eng = tiny_engine()
    with torch.no_grad():  # make EMA differ from the live network so we know which is saved
        for p in eng.ema.parameters():
            p.add_(0.01)
    planes = torch.rand(3, 1, 21, 35)
    known = torch.zeros(21, dtype=torch.bool)
    known[::5] = True
    before = eng.restore(planes, known)
    path = eng.save(tmp_path / "m.volsr", trained_on="unit test")
    loaded = load_engine(path)
    assert type(loaded) is type(eng) and loaded.cfg == eng.cfg
    assert loaded.provenance["trained_on"] == "unit test"
    after = loaded.restore(planes, known)
    assert torch.equal(before, after)


def test_non_volsr_files_refused(tmp_path):
    text = tmp_path / "a.volsr"
    text.write_text("hello, not a model at all")
    pk = tmp_path / "b.volsr"
    pk.write_bytes(pickle.dumps({"w": np.zeros(3)}))
    plain = tmp_path / "c.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    empty = tmp_path / "d.volsr"
    empty.write_bytes(b"")
    for f in (text, pk, plain, empty):
        with pytest.raises(ModelFileError, match="not a volsr model|truncated"):
            load_model(f)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.volsr")
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)


def test_truncated_file_refused(tmp_path):
    p = save_model(tmp_path / "m.volsr", engine="msunet", config={}, state_dict={"w": torch.randn(100, 100)})
    data = p.read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 20, 5):
        t = tmp_path / f"t{cut}.volsr"
        t.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load_model(t)
    with pytest.raises(ModelFileError, match="truncated"):
        read_model_info(tmp_path / f"t{len(data) - 10}.volsr")


def test_newer_format_refused(tmp_path):
    meta = {"format": "volsr-model", "format_version": FORMAT_VERSION + 1, "volsr_version": "9.0",
            "engine": "msunet", "config": {}, "provenance": {}}
    p = tmp_path / "new.volsr"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"volsr": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="upgrade volsr"):
        load_model(p)
    with pytest.raises(ModelFileError, match="upgrade"):
        load_engine(p)


def test_wrong_engine_and_channel_count(tmp_path):
    eng = tiny_engine()
    p = eng.save(tmp_path / "m.volsr")
    from volsr.engines.e2e_unet import E2EUNetEngine

    with pytest.raises(ModelFileError, match="msunet"):
        E2EUNetEngine.load(p)
    loaded = load_engine(p)
    with pytest.raises(VolsrError, match="channel"):
        loaded.restore(torch.rand(1, 3, 16, 16), torch.tensor([True] + [False] * 14 + [True]))


def test_resolve_model_path_and_bundled_listing(tmp_path):
    p = save_model(tmp_path / "m.volsr", engine="msunet", config={}, state_dict={"w": torch.zeros(1)})
    assert resolve_model_path(str(p)) == p
    with pytest.raises(ModelFileError, match="volsr models"):
        resolve_model_path("no-such-bundled-model")
    models = list_bundled_models()
    assert isinstance(models, list)
    for m in models:
        assert {"name", "engine", "trained_on", "size_bytes"} <= set(m)
        assert resolve_model_path(m["name"]).name == m["name"] + ".volsr"


def test_training_checkpoint_round_trip_and_refusals(tmp_path):
    state = {"engine": "msunet", "step": 3, "w": torch.randn(4), "losses": [0.5, 0.25], "rng": "{}"}
    p = save_training_checkpoint(tmp_path / "c.ckpt", state)
    back = load_training_checkpoint(p)
    assert back["step"] == 3 and torch.equal(back["w"], state["w"]) and back["losses"] == [0.5, 0.25]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.ckpt"
    torch.save({"format": "volsr-training-checkpoint", "x": Evil()}, bad)
    with pytest.raises(ModelFileError):
        load_training_checkpoint(bad)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(p.read_bytes()[:50])
    with pytest.raises(ModelFileError):
        load_training_checkpoint(junk)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_training_checkpoint(tmp_path / "none.ckpt")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_model_files_and_checkpoints_follow_the_umask(tmp_path, umask, mode):
    """safetensors writes 0600 like mkstemp; model files get 0o666 & ~umask like any other output."""
    import os
    import stat

    old = os.umask(umask)
    try:
        m = save_model(tmp_path / "m.volsr", engine="msunet", config={}, state_dict={"w": torch.zeros(2)})
        c = save_training_checkpoint(tmp_path / "c.ckpt", {"step": 1})
        tiny_engine().save(tmp_path / "e.volsr")
    finally:
        os.umask(old)
    for p in (m, c, tmp_path / "e.volsr"):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p
