"""Shared fixtures: every video a test reads is encoded here by PyAV, never downloaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medscope.video.synthclin import SynthClinConfig, SynthClinVideo, generate


@pytest.fixture(scope="session")
def synth_video(tmp_path_factory: pytest.TempPathFactory) -> SynthClinVideo:
    """A 2-minute SynthClin video (4 fps, keyframe every 5 s) shared by the read-only tests."""
    out = tmp_path_factory.mktemp("synth")
    return generate(SynthClinConfig(duration_seconds=120.0, seed=7), out)


@pytest.fixture(scope="session")
def synth_path(synth_video: SynthClinVideo) -> Path:
    return synth_video.video_path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices gain nothing from threads, and lose much when another process shares the 2 cores."""
    import torch  # here, not at the top: most tests never load torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
