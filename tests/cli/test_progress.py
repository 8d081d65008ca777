"""The CLI's one progress reporter (``volsr.cli.progress``): log lines off a terminal, tqdm bars on one."""

import io
import re
from pathlib import Path

import numpy as np
import pytest

import volsr
from volsr.cli import ProgressReporter, main
from volsr.cli.progress import format_duration


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def log_reporter(**kw):
    stream, clock = io.StringIO(), FakeClock()
    return ProgressReporter(mode="log", stream=stream, clock=clock, **kw), stream, clock


def lines(stream):
    return stream.getvalue().splitlines()


def test_log_mode_prints_start_each_tenth_and_end_not_every_item():
    rep, stream, clock = log_reporter()
    rep("xz", 0, 100)
    for i in range(1, 101):
        clock.t += 0.1  # fast: the 10 s interval never fires, only the tenths do
        rep("xz", i, 100)
    rep.close()
    out = lines(stream)
    assert 11 <= len(out) <= 12, out
    assert "\r" not in stream.getvalue()
    assert out[0].startswith("volsr: restoring XZ planes 0/100 (0%)")
    assert [int(re.search(r" (\d+)/100 ", s).group(1)) for s in out] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert "done in 10 s" in out[-1]


def test_repeated_done_prints_nothing_new():
    rep, stream, clock = log_reporter()
    rep("xz", 0, 160)
    clock.t += 1
    rep("xz", 16, 160)
    n = len(lines(stream))
    for _ in range(50):  # several denoising steps map onto the same plane count
        clock.t += 30
        rep("xz", 16, 160)
    assert len(lines(stream)) == n == 2


def test_interval_prints_a_line_between_tenths():
    rep, stream, clock = log_reporter()
    rep("fit", 1, 1000)
    clock.t += 5
    rep("fit", 2, 1000)
    assert len(lines(stream)) == 1  # within 10 s and no tenth crossed: nothing
    clock.t += 11
    rep("fit", 3, 1000)
    out = lines(stream)
    assert len(out) == 2 and out[-1].startswith("volsr: fitting model 3/1000 (0%)")
    rep2, stream2, clock2 = log_reporter(interval=2.0)  # configurable
    rep2("fit", 1, 1000)
    clock2.t += 2.5
    rep2("fit", 2, 1000)
    assert len(lines(stream2)) == 2


def test_each_line_has_label_done_total_rate_and_eta():
    rep, stream, clock = log_reporter()
    rep("xz", 0, 160)
    for i in range(1, 160):
        clock.t += 0.32
        rep("xz", i, 160)
    progress_lines = lines(stream)[1:]  # the start line has no rate yet
    assert len(progress_lines) == 9
    for s in progress_lines:
        assert re.fullmatch(r"volsr: restoring XZ planes \d+/160 \(\d+%\) [\d.]+ planes/s, ETA \d+ s", s), s
    assert progress_lines[3] == "volsr: restoring XZ planes 64/160 (40%) 3.1 planes/s, ETA 31 s"


def test_slow_stages_show_seconds_per_item_and_long_etas_in_minutes():
    rep, stream, clock = log_reporter()
    rep("fit", 0, 100)
    clock.t += 25
    rep("fit", 10, 100)
    assert lines(stream)[-1] == "volsr: fitting model 10/100 (10%) 2.5 s/step, ETA 3 min 45 s"
    assert format_duration(7) == "7 s" and format_duration(3 * 3600 + 65) == "3 h 01 min"


def test_loss_and_part_appear_when_given():
    rep, stream, clock = log_reporter(labels={"fit": "train msunet"})
    rep("fit", 1, 10, loss=0.5, lr=1e-3)
    clock.t += 1
    rep("fit", 2, 10, loss=0.123456, lr=1e-3, part="autoencoder")
    out = lines(stream)
    assert out[0] == "volsr: train msunet 1/10 (10%), loss 0.5000"
    assert out[1] == "volsr: train msunet 2/10 (20%) 1.0 steps/s, ETA 8 s, loss 0.1235 (autoencoder)"


def test_unknown_total_prints_done_and_rate_only():
    rep, stream, clock = log_reporter()
    rep("upscale", 0, 0)
    for i in range(1, 40):
        clock.t += 1
        rep("upscale", i, 0)
    rep.close()
    out = lines(stream)
    assert out[0] == "volsr: upscaling 0 it"
    assert out[1] == "volsr: upscaling 10 it, 1.0 it/s"
    assert out[-1] == "volsr: upscaling 39 it, 1.0 it/s, done in 39 s"
    assert not any("ETA" in s or "%" in s for s in out)


def test_a_stage_run_again_starts_again_and_close_reports_an_unfinished_one():
    rep, stream, clock = log_reporter()
    for _ in range(2):  # `volsr eval`: one fit per factor
        for i in range(1, 11):
            clock.t += 1
            rep("fit", i, 10)
    rep("fit", 1, 100)  # a third fit, interrupted after 4 steps
    for i in range(2, 5):
        clock.t += 1
        rep("fit", i, 100)
    rep.close()
    rep.close()  # idempotent
    out = lines(stream)
    assert sum(s.startswith("volsr: fitting model 1/10") for s in out) == 3
    assert sum("done in" in s for s in out) == 2
    assert out[-2:] == ["volsr: fitting model 1/100 (1%)", "volsr: fitting model 4/100 (4%) 1.0 steps/s, stopped after 3 s"]


def test_quiet_and_none_print_nothing():
    for kw in ({"enabled": False}, {"mode": "none"}):
        stream = io.StringIO()
        rep = ProgressReporter(stream=stream, clock=FakeClock(), **kw)
        for i in range(11):
            rep("xz", i, 10, loss=1.0)
        rep.close()
        assert stream.getvalue() == "" and not rep.bars
    with pytest.raises(ValueError, match="mode"):
        ProgressReporter(mode="fancy")


def test_bar_mode_draws_a_tqdm_bar_that_ends_at_total():
    from tqdm import tqdm

    stream = io.StringIO()
    rep = ProgressReporter(mode="bar", stream=stream)
    for i in range(0, 51):
        rep("fit", i, 50, loss=1.0 / (i + 1), part="denoiser")
    rep.close()
    bar = rep.bars["fit"]
    assert isinstance(bar, tqdm) and bar.n == bar.total == 50
    text = stream.getvalue()
    assert "fitting model" in text and "\r" in text and "loss=" in text and "part=denoiser" in text


def test_auto_follows_whether_stderr_is_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    rep = ProgressReporter()  # stream looked up at call time
    monkeypatch.setattr("sys.stderr", Tty())
    assert rep.resolved_mode() == "bar"
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert rep.resolved_mode() == "log"
    rep("blur", 0, 1)
    assert "3D blur 0/1" in __import__("sys").stderr.getvalue()


def test_infer_under_captured_stderr_prints_plain_lines(tmp_path, capsys):
    src = volsr.write_stack(tmp_path / "s.tif", np.random.default_rng(0).random((6, 32, 32), dtype=np.float32),
                            "ZYX", spacing=(1.0, 0.5, 0.5))
    assert main(["infer", str(src), "--engine", "linear", "-o", str(tmp_path / "o.tif")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s]" not in err
    assert "volsr: restoring XZ planes 0/32 (0%)" in err
    assert re.search(r"^volsr: restoring YZ planes 32/32 \(100%\)", err, re.M)
    assert Path(tmp_path / "o.tif").exists()
