"""The engine seams: declared capabilities, one options object, typed configs, 2D engines.

A toy 2D engine (bicubic 2x in-plane upscaling) is added here with one class and a registry
entry, and runs through the in-plane pipeline without edits anywhere else.
"""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from volsr.config import ConfigError
from volsr.engines import create_engine, get_engine_class, list_engines, load_engine, register_engine
from volsr.engines.base import Capabilities, Engine, RestoreOptions
from volsr.errors import VolsrError
from volsr.grid import OutputGrid, VolumeGrid
from volsr.pipeline.inplane import upscale_volume
from volsr.pipeline.volume import restore_volume


@register_engine
class ToyBicubic(Engine):
    """Bicubic in-plane upscaling: the smallest possible 2D engine."""

    name = "toy-bicubic"
    capabilities = Capabilities(rows=False, upscale=True)

    def _upscale(self, images, scale, options, **run):
        return F.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False)


def test_toy_2d_engine_runs_through_the_inplane_pipeline():
    assert "toy-bicubic" in list_engines()
    eng = create_engine("toy-bicubic")
    yy, xx = np.meshgrid(np.arange(12, dtype=np.float32), np.arange(10, dtype=np.float32), indexing="ij")
    vol = np.stack([yy + 2 * xx + z for z in range(3)])[None]  # (1, 3, 12, 10), linear in y and x
    res = upscale_volume(vol, 2, eng)
    assert res.data.shape == (1, 3, 24, 20)
    grid = VolumeGrid((3, 12, 10), yx_scale=2)
    assert grid.shape_out == res.data.shape[1:] and grid.spacing_out((1.0, 0.5, 0.5)) == (1.0, 0.25, 0.25)
    # orientation: the ramp rises 1 per input pixel along y and 2 along x -> 0.5 and 1 per output pixel
    inner = res.data[0, 1, 4:-4, 4:-4]
    assert np.mean(np.diff(inner, axis=0)) == pytest.approx(0.5, abs=0.02)
    assert np.mean(np.diff(inner, axis=1)) == pytest.approx(1.0, abs=0.04)
    np.testing.assert_allclose(res.data[0, 2] - res.data[0, 1], 1.0, atol=1e-4)  # planes stay in z order
    with pytest.raises(VolsrError, match="does not restore planes row by row"):
        restore_volume(vol, OutputGrid(3, 2), eng)


def test_options_are_refused_the_same_way_by_every_engine():
    planes = torch.rand(2, 1, 9, 8)
    known = torch.zeros(9, dtype=torch.bool)
    known[::4] = True
    for name in ("linear", "msunet"):
        eng = create_engine(name, **({"preset": "tiny"} if name == "msunet" else {}))
        with pytest.raises(VolsrError, match=f"engine '{name}' does not take the option\\(s\\) noise_match"):
            eng.restore(planes, known, noise_match=1.0)
        with pytest.raises(VolsrError, match="unknown restore option"):
            eng.restore(planes, known, noise_mach=1.0)
    assert "noise_match" in get_engine_class("msdsr").capabilities.options
    assert get_engine_class("e2e-unet").capabilities.volume and not get_engine_class("e2e-unet").capabilities.rows


def test_typed_config_is_frozen_validated_and_replace_revalidates():
    eng = create_engine("msdsr", preset="tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        eng.cfg.crop = 16  # frozen
    assert eng.cfg.replace(sampling_steps=3).sampling_steps == 3 and eng.cfg.sampling_steps == 4
    with pytest.raises(ConfigError, match="sampling_steps"):
        eng.cfg.replace(sampling_steps=0)
    with pytest.raises(ConfigError, match="unknown config key"):
        eng.cfg.replace(sampling_stepz=3)
    with pytest.raises(ConfigError, match="eta"):
        create_engine("msdsr", preset="tiny", eta=2.0)
    d = eng.cfg.to_dict()
    assert type(eng.cfg).from_dict(d) == eng.cfg and d["degradation"] == {"kind": "rows", "psf_sigma": 0.0,
                                                                            "psf_profile": []}


def test_restore_options_validate_once():
    with pytest.raises(VolsrError, match="realism"):
        RestoreOptions(realism=1.5)
    with pytest.raises(VolsrError, match="batch_size"):
        RestoreOptions(batch_size=0)


def test_restore_volume_writes_into_out_and_slab_order_does_not_matter():
    eng = create_engine("msdsr", preset="tiny", sampling_steps=2)
    eng.trained = True
    vol = np.random.default_rng(0).random((1, 3, 6, 5)).astype(np.float32)
    grid = OutputGrid(3, 2)
    out = np.zeros((1, grid.n_out, 6, 5), np.float32)
    res = restore_volume(vol, grid, eng, out=out, batch_size=2, seed=7)
    assert res.data is out and not np.all(out == 0)
    np.testing.assert_array_equal(out[:, grid.positions], vol)
    # per-slab seeds: the same slabs processed in another engine state give the same result
    eng.reset_generator(12345)
    again = restore_volume(vol, grid, eng, batch_size=2, seed=7).data
    np.testing.assert_array_equal(again, out)
    other = restore_volume(vol, grid, eng, batch_size=2, seed=8).data
    assert not np.array_equal(other, out)


def test_msdsr_sampling_defaults_and_old_model_files_keep_theirs(tmp_path):
    from volsr.diffusion.schedule import sampling_timesteps

    eng = create_engine("msdsr", preset="tiny")
    assert (eng.cfg.sampling_steps, eng.cfg.timestep_spacing, eng.cfg.realism) == (4, "quadratic", 0.53)
    assert eng.make_sampler().model_timesteps.tolist() == sampling_timesteps(1000, 4, "quadratic").tolist()
    assert create_engine("msdsr", preset="tiny", prediction_type="epsilon").cfg.timestep_spacing == "auto"
    assert create_engine("msdsr", preset="tiny", condition="linear").cfg.timestep_spacing == "auto"
    # a volsr 0.2 model file stores 'auto' (trailing for x0): loading it keeps its sampling
    eng.cfg = eng.cfg.replace(timestep_spacing="auto", sampling_steps=10, realism=0.5)
    eng.trained = True
    back = load_engine(eng.save(tmp_path / "old.volsr"))
    assert (back.cfg.timestep_spacing, back.cfg.sampling_steps, back.cfg.realism) == ("auto", 10, 0.5)
    assert back.make_sampler().model_timesteps.tolist() == sampling_timesteps(1000, 10, "trailing").tolist()
    older = back.Config().to_dict()
    del older["timestep_spacing"]  # a file from before the key existed
    assert back.make_config(back.upgrade_config(older)).timestep_spacing == "auto"
