"""Shared fixtures: a tiny model trained once per session, and its export.

The tiny model is the `tiny` preset (random-init BERT, WordPiece vocab trained on the
demo corpus), fine-tuned for two short epochs so that its metrics are well above chance
and parity checks compare a real decision boundary, in a few seconds on 2 cores.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer end-to-end tests (MiniLM, real data)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A `toolkit train` output: tiny preset, demo corpus, 2 epochs of small batches (tuned macro-F1 ~0.67)."""
    from toolkit.config import TrainConfig
    from toolkit.train import train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    # lr 3e-3: at the preset's 1e-3 two short epochs leave the random-init model near the label
    # priors, with every probability within 1e-3 of its threshold, too flat for parity tests.
    # fp32: --precision auto would train in bf16 on CPUs that have bf16 kernels and in fp32 elsewhere,
    # so the fixture (and every number tests pin on it) would depend on the machine.
    train(TrainConfig(model="tiny", out=out, epochs=2, batch_size=16, lr=3e-3, max_train_samples=1200, seed=7,
                      precision="fp32"))
    return out


@pytest.fixture(scope="session")
def tiny_export_session(tiny_checkpoint, tmp_path_factory) -> Path:
    """`toolkit export` of the tiny checkpoint, all variants. Read-only: copy it before changing it."""
    from toolkit.config import ExportConfig
    from toolkit.export import export_model

    out = tmp_path_factory.mktemp("export") / "tiny"
    export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out))
    return out


@pytest.fixture
def tiny_export(tiny_export_session, tmp_path) -> Path:
    """A private copy of the tiny export that a test may modify."""
    dst = tmp_path / "export"
    shutil.copytree(tiny_export_session, dst)
    return dst


@pytest.fixture(scope="session")
def goemotions_dir() -> Path:
    if not (SHARED_DATA / "dev.tsv").is_file():
        pytest.skip("../shared/data/goemotions is absent")
    return SHARED_DATA
