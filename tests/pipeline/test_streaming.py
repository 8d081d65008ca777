"""Large images: block-by-block streaming of `volsr upscale` (lazy TIFF levels, tiled BigTIFF out)."""

import tracemalloc

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

import volsr
import volsr.pipeline.streaming as us
from volsr.api import upscale
from volsr.cli import main
from volsr.io import TiffLevel
from volsr.pipeline.blocks import plan_blocks


def _starts(n, side, overlap):
    """MONAI's own window starts along one axis of n pixels."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    interval = _get_scan_interval((n,), (side,), 1, (overlap,))
    return {s[0].start for s in dense_patch_slices((n,), (side,), interval)}


@pytest.mark.parametrize("seed", range(6))
def test_blocks_see_exactly_the_whole_image_windows(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n, tile = int(rng.integers(20, 3000)), int(rng.integers(8, 300))
        overlap, block = float(rng.choice([0.0, 0.125, 0.25, 0.5])), int(rng.integers(1, 700))
        plan = plan_blocks((n, n), tile, overlap, block, align=int(rng.choice([1, 8, 16])))
        spans = plan.rows
        assert spans[0].keep[0] == 0 and spans[-1].keep[1] == n
        assert all(a.keep[1] == b.keep[0] for a, b in zip(spans, spans[1:]))  # the kept parts tile the axis
        if plan.window is None:
            continue
        whole = _starts(n, plan.window, overlap)
        for sp in spans:
            lo, hi = sp.read
            mine = {lo + s for s in _starts(hi - lo, plan.window, overlap)}
            assert mine <= whole  # every window of the block is a window of the whole image ...
            wanted = {s for s in whole if s < sp.keep[1] and s + plan.window > sp.keep[0]}
            assert wanted <= mine, (n, tile, overlap, block, sp)  # ... and all those over its kept part are there


def _slide(path, rng_seed=0, shape=(1500, 1300), um=0.5, compression=None):
    """A two-level pyramidal RGB TIFF with 256-px tiles and a pixel size in the resolution tags."""
    rng = np.random.default_rng(rng_seed)
    base = (gaussian_filter(rng.random((*shape, 3)), (3, 3, 0)) * 765 - 200).clip(0, 255).astype(np.uint8)
    res = 1e4 / um  # pixels per cm
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, subifds=1, photometric="rgb", tile=(256, 256), resolution=(res, res),
                 resolutionunit="CENTIMETER", compression=compression)
        tw.write(base[::2, ::2], subfiletype=1, photometric="rgb", tile=(256, 256), resolution=(res / 2, res / 2),
                 resolutionunit="CENTIMETER", compression=compression)
    return path


def _warm_up(tmp_path):
    """Imports happen before tracing: tracemalloc must see the upscaling's arrays, not module objects."""
    small = _slide(tmp_path / "small.tif", shape=(64, 64))
    upscale(small, 2, level=0, tile=32, stream=False)
    upscale(small, 2, level=0, tile=32, out=tmp_path / "small_x2.tif", stream=True, block=32)


def test_streamed_level_equals_in_memory_with_memory_bounded_by_the_block(tmp_path, monkeypatch):
    _warm_up(tmp_path)
    slide = _slide(tmp_path / "slide.tif", shape=(1200, 1000))
    kw = dict(scale=2, level=0, tile=128, overlap=0.125)
    reads = []
    real_read = TiffLevel.read
    monkeypatch.setattr(TiffLevel, "read", lambda self, ys, xs: reads.append(real_read(self, ys, xs)[0, 0].shape)
                        or real_read(self, ys, xs))
    tracemalloc.start()
    try:
        ref = upscale(slide, stream=False, **kw).data
        in_memory_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        steps = []
        res = upscale(slide, out=tmp_path / "out.tif", stream=True, block=256,
                      progress=lambda stage, done, total, **_: steps.append((stage, done, total)), **kw)
        streamed_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # the same pixels as the in-memory path: blocks sit on its window grid (differences: float rounding)
    out = np.asarray(res.data[:])
    assert out.shape == (2400, 2000, 3) and out.dtype == np.uint8 and res.path == tmp_path / "out.tif"
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4
    # memory: a block of 224 kept px per side plus less than a 128-px window on each side, not the image
    bound = 40e6
    assert streamed_peak < bound < in_memory_peak, (streamed_peak, in_memory_peak)
    assert len(reads) == 20 and max(max(h, w) for h, w in reads) < 224 + 2 * 128
    # progress: blocks done / total
    assert steps[0] == ("upscale", 0, 20) and steps[-1] == ("upscale", 20, 20)
    assert [d for _, d, _ in steps] == sorted(d for _, d, _ in steps)
    # a tiled BigTIFF with half the pixel size; no temporary file left behind
    back = volsr.read_stack(tmp_path / "out.tif")
    assert back.spacing[1:] == pytest.approx((0.25, 0.25)) and back.unit == "µm" and back.axes == "YXS"
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled and tif.pages[0].photometric == 2  # RGB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "slide.tif", "small.tif", "small_x2.tif"]


def test_cli_streams_a_large_level_automatically(tmp_path, monkeypatch, capsys):
    slide = _slide(tmp_path / "slide.svs", shape=(600, 520))
    monkeypatch.setattr(us, "STREAM_SAMPLES", 100_000)  # "large" for this test: level 1 at 2x is 390 K samples
    out = tmp_path / "level1_x2.tif"
    assert main(["upscale", str(slide), "-q", "--level", "1", "--scale", "2", "--tile", "64", "--block", "100",
                 "-o", str(out)]) == 0
    assert "streamed block by block" in capsys.readouterr().err
    ref = upscale(slide, 2, level=1, tile=64, stream=False)
    back = volsr.read_stack(out)
    assert back.data.shape == (600, 520, 3) and np.abs(back.data.astype(int) - ref.data).max() <= 1
    assert back.spacing[1:] == pytest.approx((0.5, 0.5))  # level 1 is 1 µm, upscaled 2x


@pytest.mark.parametrize("shape, scale, tile, block", [((300, 260), 3, 48, 64), ((120, 100), 2, 32, 32),
                                                      ((333, 170), 4, 40, 50)])
def test_grayscale_float_tiff_streams_exactly_and_saves_a_copy(tmp_path, monkeypatch, shape, scale, tile, block):
    img = np.random.default_rng(1).random(shape).astype(np.float32) * 1000  # noise: any misplaced pixel shows
    src = tmp_path / "gray.tif"
    tifffile.imwrite(src, img, tile=(16, 16))
    monkeypatch.setattr(us, "STREAM_SAMPLES", 10_000)
    res = upscale(src, scale, tile=tile, block=block, out=tmp_path / "up.tif")  # no level: a plain TIFF is level 0
    ref = upscale(src, scale, tile=tile)
    assert res.path is not None and res.axes == "YX" and res.data.shape == ref.data.shape
    np.testing.assert_allclose(res.data[:], ref.data, rtol=0, atol=1e-6 * float(np.ptp(img)))  # same windows
    copy = res.save(tmp_path / "copy.tif")
    np.testing.assert_array_equal(volsr.read_stack(copy).data, res.data[:])


def test_zero_shot_fit_of_a_streamed_image_uses_a_crop(tmp_path):
    src = tmp_path / "g.tif"
    tifffile.imwrite(src, np.random.default_rng(2).random((80, 72)).astype(np.float32), tile=(16, 16))
    res = upscale(src, 2, engine="msunet", fit_steps=1, out=tmp_path / "o.tif", stream=True, block=32, tile=32,
                  output_dtype="float32")
    assert res.data.shape == (160, 144) and "zero-shot" in res.engine.provenance["fit"]


def test_a_stochastic_engine_streams_the_in_memory_result(tmp_path):
    from volsr.training.degrade import IsotropicDegradation

    img = np.random.default_rng(3).random((90, 70)).astype(np.float32)
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, img, tile=(16, 16))
    eng = volsr.create_engine("brainsr", preset="tiny", degradation=IsotropicDegradation(scale=2))
    eng.fit(img[None, None], steps=3, seed=0)
    ref = upscale(src, 2, engine=eng, tile=32, output_dtype="float32").data
    res = upscale(src, 2, engine=eng, tile=32, output_dtype="float32", out=tmp_path / "o.tif", stream=True, block=32)
    np.testing.assert_allclose(res.data[:], ref, atol=1e-5)  # every window gets the noise it gets in memory
    assert np.abs(upscale(src, 2, engine=eng, tile=32, output_dtype="float32", seed=1).data - ref).max() > 1e-3


def _corrupt_tile(path):
    """Garble the compressed bytes of one level-0 tile (the file keeps its size: only decoding fails)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * count)


@pytest.mark.parametrize("case, match", [("level", "resolution level"), ("corrupt", "cannot read level 0"),
                                         ("png", "not a TIFF")])
def test_bad_level_one_line_error_and_nothing_written(tmp_path, capsys, monkeypatch, case, match):
    monkeypatch.setattr(us, "STREAM_SAMPLES", 10_000)  # the CLI streams these
    slide = _slide(tmp_path / "slide.tif", shape=(600, 520), compression="zlib")
    if case == "corrupt":
        _corrupt_tile(slide)
    if case == "png":
        from skimage.io import imsave

        imsave(slide := tmp_path / "a.png", np.zeros((40, 40), np.uint8), check_contrast=False)
        with pytest.raises(volsr.InputError, match=match):
            upscale(slide, 2, out=tmp_path / "out.tif", stream=True)
    else:
        rc = main(["upscale", str(slide), "-q", "--level", "5" if case == "level" else "0", "--scale", "2",
                   "--tile", "64", "--block", "128", "-o", str(tmp_path / "out.tif")])
        err = capsys.readouterr().err
        if case == "corrupt" and rc == 0:
            pytest.fail("a corrupt tile was not noticed")
        assert rc == 2 and err.startswith("volsr: error:") and match in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "out.tif" not in names and not any(n.startswith(".") for n in names)


def test_cancel_mid_stream_leaves_nothing(tmp_path):
    slide = _slide(tmp_path / "slide.tif", shape=(400, 400))
    done = []
    with pytest.raises(volsr.Cancelled):
        upscale(slide, 2, level=0, tile=64, block=64, out=tmp_path / "out.tif", stream=True,
                progress=lambda stage, d, total, **_: done.append(d), cancel=lambda: len(done) > 8)
    assert max(done) == 8  # stopped after some blocks, after the first band went to the TIFF writer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.tif"]
