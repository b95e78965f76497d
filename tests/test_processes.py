"""Worker processes end with their parent: a `suite build` killed with SIGKILL leaves no worker running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medscope.video.synthclin import SynthClinConfig, generate


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_killing_suite_build_ends_its_workers(tmp_path: Path) -> None:
    for seed in range(4):  # enough trajectories that the workers are busy when the build is killed
        generate(SynthClinConfig(duration_seconds=240.0, seed=seed), tmp_path / "videos", name=f"case{seed}")
    log = (tmp_path / "build.log").open("w")
    build = subprocess.Popen([sys.executable, "-m", "medscope.cli", "suite", "build", "--source", "synthclin",
                              "--annotations", str(tmp_path / "videos"), "--out", str(tmp_path / "suite"),
                              "--workers", "2"], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2 and build.poll() is None:
        workers = _children(build.pid)
        time.sleep(0.05)
    output = (tmp_path / "build.log").read_text()
    assert len(workers) >= 2, f"no workers seen; the build exited with {build.poll()}: {output}"
    os.kill(build.pid, signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"
