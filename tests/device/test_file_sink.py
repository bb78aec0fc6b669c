"""The files sink keeps writing when its folder is removed while the mirror runs (emptied by hand)."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from device import config as configuration
from device.cameras import Frame
from device.sinks import SINKS, Output


def _output(index: int) -> Output:
    return Output(Frame(np.full((12, 16, 3), 80, np.uint8), np.zeros((12, 16, 3), np.uint8), index), None, None)


def test_a_removed_folder_is_made_again_with_one_warning(tmp_path, caplog):
    folder = tmp_path / "frames"
    sink = SINKS.get("files")(configuration.SinkConfig(kind="files", path=str(folder)), None)
    sink.show(_output(1))
    shutil.rmtree(folder)
    with caplog.at_level(logging.WARNING, logger="device.sinks"):
        sink.show(_output(2))  # was: OSError, and the daemon's frame loop ended (exit 1)
        sink.show(_output(3))
    assert sorted(p.name for p in folder.iterdir()) == ["frame000002.png", "frame000003.png"]
    assert [r.getMessage() for r in caplog.records] == [f"sink.path: {folder} is gone; making it again"]


def test_a_folder_that_cannot_be_made_again_is_still_an_error(tmp_path):
    folder = tmp_path / "frames"
    sink = SINKS.get("files")(configuration.SinkConfig(kind="files", path=str(folder)), None)
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was")
    with pytest.raises(OSError, match="sink.path: cannot create"):
        sink.show(_output(1))


def test_a_path_holding_a_nul_is_refused_in_one_line_not_a_value_error(tmp_path):
    """os.path.lexists says False for a NUL path, so the check passed it, and mkdir's ValueError was a traceback."""
    with pytest.raises(configuration.ConfigError, match=r"^sink.path: .* holds a NUL character"):
        configuration.check_creatable("sink.path", f"{tmp_path}/a\0b")
    from device.sinks import SinkError
    with pytest.raises(SinkError, match="sink.path: cannot create"):
        SINKS.get("files")(configuration.SinkConfig(kind="files", path=f"{tmp_path}/a\0b"), None)
