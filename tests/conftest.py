"""Shared fixtures: a tiny model trained once per session, and its export.

The tiny model is the `tiny` preset (random-init BERT, WordPiece vocab built from the
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


# The CPU kernels the tiny checkpoint trains with, pinned so that it is the same model on every x86
# machine with AVX2 (CI's CPU is not this one's). Unpinned, the ISA torch, MKL and oneDNN pick
# changes the weights: measured, AVX-512 vs AVX2 vs scalar ATen kernels, MKL's code path, oneDNN's
# ISA and the thread count each gave other weights; pinned, two runs gave identical bytes. And
# every number a test pins on this model (which MatMuls the int8 search keeps float, how far a gate
# is from its limit) moved with them: CI failed 6 tests on a model its own CPU trained. MKL's
# COMPATIBLE branch, not AVX2: MKL runs its AVX2 branch on Intel CPUs only (AUTO elsewhere).
PINNED_TRAINING_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2",
                           "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
# Another seed trains another model as a different CPU would: how the suite checks that no test
# hangs on one model's luck (`TOOLKIT_TEST_TINY_SEED=8 python -m pytest -q`).
TINY_SEED = int(os.environ.get("TOOLKIT_TEST_TINY_SEED", "7"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A `toolkit train` output: tiny preset, demo corpus, 2 epochs of small batches (tuned macro-F1 0.64).

    Trained in a child process: the pinned kernels are read once per process at start, and
    ONEDNN_MAX_CPU_ISA would also cap the oneDNN inside OpenVINO, which then fails to compile.
    """
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    # lr 3e-3: at the preset's 1e-3 two short epochs leave the random-init model near the label
    # priors, with every probability within 1e-3 of its threshold, too flat for parity tests.
    # fp32: --precision auto would train in bf16 on CPUs that have bf16 kernels and in fp32 elsewhere,
    # so the fixture (and every number tests pin on it) would depend on the machine.
    script = ("import sys; from pathlib import Path; from toolkit.config import TrainConfig; from toolkit.train import train; "
              "train(TrainConfig(model='tiny', out=Path(sys.argv[1]), epochs=2, batch_size=16, lr=3e-3, "
              "max_train_samples=1200, seed=int(sys.argv[2]), precision='fp32'))")
    subprocess.run([sys.executable, "-c", script, str(out), str(TINY_SEED)], check=True, env={**os.environ, **PINNED_TRAINING_KERNELS})
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


@pytest.fixture(scope="session")
def certify_csv(tmp_path_factory) -> Path:
    """2,000 fresh demo texts (another seed) with their 0/1 labels, for tests that gate quality.

    A tiny model's recorded validation split holds 300 texts, ~35-90 positives a label (its certify
    half ~150 texts), where one flipped decision moves a label's F1 by ~0.01-0.03, int8's whole
    per-label limit: a full run once failed MPNet's int8 on 5 such flips (0.050 > 0.03) after its
    search had passed, and CI failed ov_int8 and ov_bf16 on the tiny model a CPU of its own trained.
    Here a flip is worth ~0.004.
    """
    import csv

    from toolkit.demo_corpus import generate_demo_corpus

    texts, labels, names = generate_demo_corpus(n=2000, seed=1)
    path = tmp_path_factory.mktemp("certify") / "certify.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", *names])
        writer.writerows([text, *map(int, row)] for text, row in zip(texts, labels))
    return path
