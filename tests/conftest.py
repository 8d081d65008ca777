"""Test-session plumbing.

After the napari (Qt) tests have run in the same process as torch, the interpreter can crash
in native teardown *after* every test has passed and the summary is printed (a segmentation
fault with no Python frame, exit code 139: Qt and torch's thread pools destroyed in an order
neither expects). The verdict is already known then, so when Qt was loaded the session ends
with ``os._exit`` carrying pytest's own exit status, skipping only that teardown.
"""

import os
import sys

import pytest

_exit_status: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "code" in _exit_status and "PyQt6.QtWidgets" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
