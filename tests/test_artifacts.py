"""artifacts.atomic_directory: a killed build leaves a temp dir; the next build of the same target removes it."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit import artifacts

KILLED_BUILD = """
import os, signal, sys
from toolkit import artifacts
with artifacts.atomic_directory(sys.argv[1]) as tmp:
    (tmp / "model.onnx").write_bytes(b"half-written")
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer or `kill -9` does mid-export
"""


def _temps(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(artifacts.TEMP_PREFIX))


def _exited_pid() -> int:
    """The pid of a process that has exited (and been reaped): nobody owns it now."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkilled_build_is_cleaned_up_by_the_next_one(tmp_path, caplog):
    target = tmp_path / "emotion"
    run = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(target)], capture_output=True, timeout=120)
    assert run.returncode == -signal.SIGKILL
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(f"{artifacts.TEMP_PREFIX}emotion-") and not target.exists()

    with caplog.at_level(logging.WARNING, logger="toolkit.artifacts"):
        with artifacts.atomic_directory(target) as tmp:
            (tmp / "model.onnx").write_bytes(b"complete")
    assert _temps(tmp_path) == []
    assert (target / "model.onnx").read_bytes() == b"complete"
    assert any(left[0] in r.getMessage() and "is gone" in r.getMessage() for r in caplog.records)


def test_only_stale_temp_dirs_of_the_same_target_are_removed(tmp_path, caplog):
    host, prefix = socket.gethostname(), f"{artifacts.TEMP_PREFIX}emotion-"
    day_old = time.time() - artifacts.STALE_TEMP_AGE_S - 60
    dirs = {
        "dead owner": f"{prefix}{_exited_pid()}@{host}-ab12cd34",
        "live owner": f"{prefix}{os.getpid()}@{host}-ab12cd34",
        "other host, recent": f"{prefix}{_exited_pid()}@elsewhere.example-ab12cd34",
        "other host, day old": f"{prefix}{os.getpid()}@elsewhere.example-zz12cd34",
        "no owner, recent": f"{prefix}k2j4h5g6",
        "no owner, day old": f"{prefix}q9w8e7r6",
        "another target": f"{artifacts.TEMP_PREFIX}emotion-2-{_exited_pid()}@{host}-ab12cd34",
        "backup, day old": f"{artifacts.TEMP_PREFIX}emotion.old-ab12cd34",
    }
    for what, name in dirs.items():
        (tmp_path / name).mkdir()
        if "day old" in what:
            os.utime(tmp_path / name, (day_old, day_old))
    with caplog.at_level(logging.WARNING, logger="toolkit.artifacts"):
        removed = artifacts.remove_stale_temps(tmp_path / "emotion")
    gone = {"dead owner", "other host, day old", "no owner, day old"}
    assert sorted(p.name for p in removed) == sorted(dirs[w] for w in gone)
    assert _temps(tmp_path) == sorted(name for what, name in dirs.items() if what not in gone)
    assert len([r for r in caplog.records if "interrupted build of" in r.getMessage()]) == 3
    assert "untouched for 24 h" in caplog.text


def test_build_dir_names_its_owner(tmp_path):
    with artifacts.atomic_directory(tmp_path / "emotion") as tmp:
        assert tmp.name.startswith(f"{artifacts.TEMP_PREFIX}emotion-{os.getpid()}@{socket.gethostname()}-")
        assert artifacts.remove_stale_temps(tmp_path / "emotion") == []  # a live build is never removed
    assert (tmp_path / "emotion").is_dir() and _temps(tmp_path) == []
