"""The training loop: budget, schedule, EMA, progress/cancel, resume, channels, CLI."""

import argparse

import numpy as np
import pytest
import tifffile
import torch
from scipy.ndimage import gaussian_filter

from volsr.cli.train import add_parsers
from volsr.engines import create_engine, load_engine
from volsr.errors import Cancelled, VolsrError
from volsr.training.budget import ema_decay_at, lr_at
from volsr.training.loop import fit_engine
from volsr.training.planes import PlaneData

KW = dict(batch_size=4, crop=32, log_every=5)


def texture(z=6, size=48, seed=0):
    return gaussian_filter(np.random.default_rng(seed).random((z, size, size)), 1.5).astype(np.float32)


def tiny(**kw):
    torch.manual_seed(0)
    return create_engine("msunet", preset="tiny", **kw)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=-3), dict(steps=2.5), dict(minutes=0),
                                 dict(minutes=-1.0), dict(), dict(steps=2, batch_size=0),
                                 dict(steps=2, resume=True), dict(steps=2, lr=-1.0)])
def test_bad_budgets_and_options_refused(bad):
    with pytest.raises(VolsrError):
        fit_engine(tiny(), texture(), **{"crop": 32, **bad})


def test_lr_schedule_and_ema_warmup():
    lrs = [lr_at(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # cosine decays monotonically
    assert lrs[-1] < 0.001 and lrs[54] == pytest.approx(0.5, abs=0.02)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


# the paper's setting learns from scratch and must improve clearly; the default residual model
# starts exactly at linear interpolation (zero-initialised last layer) and must not get worse
@pytest.mark.parametrize("cfg,ratio", [({"fill": "noise", "residual": False}, 0.9), ({}, 1.01)])
def test_tiny_msunet_reduces_its_loss_on_a_texture(cfg, ratio):
    eng = tiny(**cfg)
    data = PlaneData([texture(8, 64)], crop=32)
    rng = np.random.default_rng(123)
    hr = data.batch(rng, 8)
    known = torch.from_numpy(np.stack([np.arange(32) % 4 == 0] * 8))

    def eval_loss(net):
        eng.network, saved = net, eng.network
        try:
            with torch.no_grad():
                return float(eng.training_loss(hr, known, torch.Generator().manual_seed(0)))
        finally:
            eng.network = saved

    before = eval_loss(eng.ema)
    rep = eng.fit(data, steps=30, batch_size=8, seed=0, log_every=10)
    after = eval_loss(eng.ema)
    assert rep["steps"] == 30 and len(rep["loss_history"]) == 3
    assert after < ratio * before
    assert eng.trained and eng.provenance["steps"] == 30 and "planes" in eng.provenance["trained_on"]


def test_ema_tracks_network_and_differs_from_it():
    eng = tiny()
    start = [p.detach().clone() for p in eng.ema.parameters()]
    eng.fit(texture(), steps=6, seed=0, **KW)
    moved = any(not torch.equal(a, b) for a, b in zip(start, eng.ema.parameters()))
    differs = any(not torch.equal(a, b) for a, b in zip(eng.network.parameters(), eng.ema.parameters()))
    assert moved and differs


def test_resume_equals_uninterrupted_training(tmp_path):
    vol = texture()
    a = tiny()
    rep_a = a.fit(vol, steps=20, seed=3, **KW)

    ckpt = tmp_path / "run.ckpt"

    def stop_at_10(stage, done, total, **info):
        if done == 10:
            raise Cancelled("stop")

    b = tiny()
    with pytest.raises(Cancelled):
        b.fit(vol, steps=20, seed=3, progress=stop_at_10, checkpoint_path=ckpt, checkpoint_every=10, **KW)
    assert ckpt.exists()

    c = tiny()
    rep_c = c.fit(vol, steps=20, seed=3, checkpoint_path=ckpt, resume=True, checkpoint_every=10, **KW)
    assert rep_c["resumed_from"] == 10 and rep_c["steps"] == 20 and rep_c["steps_this_run"] == 10
    for pa, pc in zip(a.ema.parameters(), c.ema.parameters()):
        assert torch.allclose(pa, pc, atol=1e-6)
    for pa, pc in zip(a.network.parameters(), c.network.parameters()):
        assert torch.allclose(pa, pc, atol=1e-6)
    assert rep_c["final_loss"] == pytest.approx(rep_a["final_loss"], rel=1e-5)
    # nothing left to do: a clear message
    with pytest.raises(VolsrError, match="raise --steps"):
        tiny().fit(vol, steps=20, seed=3, checkpoint_path=ckpt, resume=True, **KW)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    rep = tiny().fit(texture(), steps=3, seed=0, checkpoint_path=tmp_path / "x.ckpt", resume=True, **KW)
    assert rep["resumed_from"] is None and rep["steps"] == 3 and (tmp_path / "x.ckpt").exists()


def test_minutes_budget_estimates_steps():
    rep = tiny().fit(texture(), minutes=0.02, seed=0, **KW)
    assert rep["estimated_total"] and rep["steps"] >= 1
    assert rep["stopped_by"] in ("minutes", "steps")
    rep = tiny().fit(texture(), minutes=10, steps=3, seed=0, **KW)
    assert rep["steps"] == 3 and not rep["estimated_total"] and rep["stopped_by"] == "steps"


def test_progress_signatures_and_cancel():
    seen = []
    tiny().fit(texture(), steps=3, progress=lambda stage, done, total: seen.append((stage, done, total)), **KW)
    assert seen == [("fit", 1, 3), ("fit", 2, 3), ("fit", 3, 3)]
    info = []
    tiny().fit(texture(), steps=2, progress=lambda s, d, t, **kw: info.append(kw), **KW)
    assert "loss" in info[0] and np.isfinite(info[0]["loss"]) and "lr" in info[0]
    with pytest.raises(Cancelled):
        tiny().fit(texture(), steps=5, cancel=lambda: True, **KW)


def test_channels_adopted_when_untrained_refused_when_trained():
    rgb = np.stack([texture(seed=i) for i in range(3)])
    eng = tiny()
    eng.fit(rgb, steps=2, **KW)
    assert eng.cfg["channels"] == 3
    out = eng.restore(torch.rand(1, 3, 16, 16), torch.tensor([True, False, False, True] * 4))
    assert out.shape == (1, 3, 16, 16)
    with pytest.raises(VolsrError, match="3 channel"):
        eng.fit(texture(), steps=2, **KW)


def parser():
    p = argparse.ArgumentParser(prog="volsr")
    add_parsers(p.add_subparsers(dest="command"))
    return p


def test_cli_train_writes_a_loadable_model(tmp_path, capsys):
    tif = tmp_path / "s.tif"
    tifffile.imwrite(tif, (texture(5, 40) * 4000).astype(np.uint16), imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "m.volsr"
    args = parser().parse_args(["train", str(tif), "-o", str(out), "--engine", "msunet", "--preset", "tiny",
                                "--steps", "3", "--crop", "32", "--batch-size", "2", "--device", "cpu"])
    assert args.func(args) == 0
    eng = load_engine(out)
    assert eng.name == "msunet" and eng.provenance["steps"] == 3 and "s.tif" in eng.provenance["data"]
    assert (tmp_path / "m.volsr.ckpt").exists()
    err = capsys.readouterr().err
    assert "model saved" in err
    # not a terminal: plain progress lines (volsr.cli.progress), no tqdm carriage returns
    assert "\r" not in err and "volsr: train msunet 3/3 (100%)" in err
    with pytest.raises(VolsrError, match="exists"):
        args.func(args)
    bad = parser().parse_args(["train", str(tif), "-o", str(tmp_path / "n.volsr"), "--steps", "0"])
    with pytest.raises(VolsrError, match="--steps"):
        bad.func(bad)


def test_cli_models_lists(capsys):
    args = parser().parse_args(["models"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip()
