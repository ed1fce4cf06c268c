"""`toolkit bench`: statistics, scheduling, provider selection, outputs and end-to-end runs.

No assertion here depends on how fast anything ran: timings on a shared 2-core machine are
noise. Numbers are checked where they follow from arithmetic (percentiles of synthetic timings,
throughput = batch x runs / time, tokens = sequences x length, speedup ratios).
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from toolkit import bench
from toolkit.bench import BenchRecord, BenchResult, MachineInfo, environment, fixed, results, runners, scenarios, timing
from toolkit.config import BenchConfig, Variant
from toolkit.errors import ProviderError, ToolkitError

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
WITH_TRT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
TEXTS = ["I love this so much", "this is awful", "ok", "what a surprise, I did not expect that at all",
         "thank you for the help yesterday", "I am scared of what comes next", "meh", "so funny haha",
         "why would anyone do that? I am furious", "great job everyone, proud of you"] * 3


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory: default outputs (benchmarks/results, benchmarks/cache) land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _providers(monkeypatch, available):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(available))


def _record(variant="fp32", device="cpu", batch=8, seq_len=128, rate=100.0, mode="fixed", padding="fixed", **kw):
    return BenchRecord(variant=variant, provider=device, device=device, batch=batch, seq_len=seq_len, threads=2,
                       mode=mode, padding=padding, iterations=20, sequences_per_s=rate, tokens_per_s=rate * seq_len,
                       latency_mean_ms=10.0, latency_p50_ms=9.0, latency_p90_ms=12.0, latency_p99_ms=15.0, **kw)


def _result(records) -> BenchResult:
    machine = MachineInfo(cpu="Test CPU", logical_cores=2, physical_cores=2, memory_gb=8.0, os="Linux", python="3.11")
    return BenchResult(date="2026-01-01T00:00:00+00:00", command="toolkit bench --batch 8", machine=machine,
                       versions={"onnxruntime": "1.0", "torch": "2.0"}, settings={"threads": 2},
                       source={"name": "synthetic", "export": "x"}, records=records, notes=["a note"])


# ---------------------------------------------------------------------------- statistics and scheduling


def test_timing_stats_percentiles_and_mean():
    seconds = [i / 1000 for i in range(1, 101)]  # 1..100 ms, shuffled order must not matter
    stats = bench.timing_stats(list(reversed(seconds)))
    assert stats.runs == 100
    assert stats.total_s == pytest.approx(5.050, abs=1e-9)
    assert stats.mean_ms == pytest.approx(50.5, abs=1e-9)
    assert stats.p50_ms == pytest.approx(50.5, abs=1e-9)  # numpy linear interpolation
    assert stats.p90_ms == pytest.approx(90.1, abs=1e-9)
    assert stats.p99_ms == pytest.approx(99.01, abs=1e-9)
    with pytest.raises(ToolkitError, match="no timed runs"):
        bench.timing_stats([])


def test_round_robin_interleaves_and_counts_passes(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["t"])
    log = []

    def unit(name, cost):
        def run():
            log.append(name)
            clock["t"] += cost
        return run

    times = bench.round_robin([[unit("a", 0.010)], [unit("b1", 0.002), unit("b2", 0.004)]], min_passes=2,
                               min_seconds=None)
    # one unit per runner per turn; b has two units per pass, so a is done after 2 turns, b after 4
    assert log == ["a", "b1", "a", "b2", "b1", "b2"]
    assert times[0] == pytest.approx([0.010, 0.010], abs=1e-12)
    assert times[1] == pytest.approx([0.002, 0.004, 0.002, 0.004], abs=1e-12)


def test_round_robin_duration_is_per_runner(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["t"])

    def unit(cost):
        def run():
            clock["t"] += cost
        return run

    times = bench.round_robin([[unit(0.5)], [unit(0.1)]], min_passes=1, min_seconds=1.0)
    assert len(times[0]) == 2  # the slow runner stops once it has 1 s, not when the fast one has
    assert len(times[1]) == 10


def test_fixed_record_throughput_math():
    stats = bench.timing_stats([0.1, 0.2, 0.3, 0.4])  # 1.0 s for 4 runs of batch 8: 32 sequences/s
    runner = type("R", (), {"variant": "int8", "provider": "cpu", "device": "cpu", "threads": 2})()
    rec = fixed.fixed_record(runner, 8, 128, stats)
    assert (rec.variant, rec.mode, rec.padding, rec.iterations, rec.threads) == ("int8", "fixed", "fixed", 4, 2)
    assert rec.sequences_per_s == pytest.approx(32.0, rel=1e-12)
    assert rec.tokens_per_s == pytest.approx(32.0 * 128, rel=1e-12)
    assert rec.latency_mean_ms == pytest.approx(250.0, rel=1e-12)
    assert rec.latency_p50_ms == pytest.approx(250.0, rel=1e-12)


def test_speedups_are_relative_to_the_same_device_and_shape():
    records = [_record("pytorch-fp32", rate=10.0), _record("int8", rate=35.0),
               _record("pytorch-fp32", batch=1, rate=4.0), _record("fp32", batch=1, rate=5.0),
               _record("fp16", device="cuda", rate=1000.0)]
    results.assign_speedups(records)
    assert records[1].speedup == pytest.approx(3.5, rel=1e-12) and records[1].speedup_vs == "pytorch-fp32"
    assert records[3].speedup == pytest.approx(1.25, rel=1e-12)
    assert records[0].speedup == pytest.approx(1.0, rel=1e-12)
    assert records[4].speedup is None  # no CUDA baseline: never compared across devices

    text = [_record("pytorch-seed-loop", batch=1, rate=20.0, mode="real-text", padding="max_length"),
            _record("int8", batch=32, rate=900.0, mode="real-text", padding="bucket")]
    results.assign_speedups(text)
    assert text[1].speedup == pytest.approx(45.0, rel=1e-12) and text[1].speedup_vs == "pytorch-seed-loop"


def test_other_cpu_share_subtracts_own_time(monkeypatch):
    # /proc/stat (total, idle) ticks at 100 Hz: 4 s of CPU capacity passed, 1 s of it idle, so 3 s
    # were busy; this process used 1 s of those, so other processes used 2 s = 50%.
    stats = iter([(10_000, 6_000), (10_400, 6_100)])
    own = iter([5.0, 6.0])
    monkeypatch.setattr(environment, "proc_stat", lambda: next(stats))
    monkeypatch.setattr(environment, "own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(environment.os, "sysconf", lambda name: 100)
    with environment.OtherCpu() as other:
        pass
    assert other.share == pytest.approx(0.5, abs=1e-12)
    monkeypatch.setattr(environment, "proc_stat", lambda: None)  # no /proc: unknown, not zero
    monkeypatch.setattr(environment, "own_cpu_seconds", lambda: 0.0)
    with environment.OtherCpu() as other:
        pass
    assert other.share is None


def test_busy_cases_are_noted():
    notes = []
    case = [_record("pytorch-fp32", rate=10.0), _record("int8", rate=30.0)]
    results.finish_case(case, 0.43, notes)
    assert [r.other_cpu for r in case] == [0.43, 0.43] and case[1].speedup == pytest.approx(3.0, rel=1e-12)
    assert len(notes) == 1 and "batch 8, seq 128: other processes used 43% of the CPUs" in notes[0]
    results.finish_case([_record()], 0.01, notes)
    assert len(notes) == 1  # a quiet case adds no note


# ---------------------------------------------------------------------------- providers


def test_auto_falls_back_to_cpu_and_explicit_gpu_providers_fail(monkeypatch):
    _providers(monkeypatch, CPU_ONLY)
    assert bench.select_providers("auto") == ["cpu"]
    assert bench.select_providers("cpu") == ["cpu"]
    with pytest.raises(ProviderError, match="onnxruntime-gpu"):
        bench.select_providers("cuda")
    with pytest.raises(ProviderError, match="TensorrtExecutionProvider"):
        bench.select_providers("tensorrt")


def test_auto_covers_cuda_and_cpu_when_available(monkeypatch):
    _providers(monkeypatch, WITH_CUDA)
    assert bench.select_providers("auto") == ["cuda", "cpu"]
    assert bench.select_providers("cuda") == ["cuda"]
    _providers(monkeypatch, WITH_TRT)
    assert bench.select_providers("tensorrt") == ["tensorrt"]
    assert bench.select_providers("auto") == ["cuda", "cpu"]  # TensorRT only when asked for


@pytest.fixture
def no_gpu_attaches(monkeypatch):
    """Sessions attach only the CPU provider, whatever is asked for: a machine without a usable GPU,
    also on a GPU host (where CUDA would otherwise attach and these tests would measure it)."""
    import onnxruntime

    real = onnxruntime.InferenceSession

    def cpu_only(path, sess_options=None, providers=None, **kw):
        names = [p[0] if isinstance(p, tuple) else p for p in providers or [CPU_ONLY[0]]]
        return real(path, sess_options=sess_options, providers=[p for p in names if p == CPU_ONLY[0]], **kw)

    monkeypatch.setattr(onnxruntime, "InferenceSession", cpu_only)


def test_cuda_that_does_not_attach_is_an_error_not_a_cpu_run(monkeypatch, tiny_export_session, in_tmp,
                                                              no_gpu_attaches):
    # onnxruntime claims CUDA here, but the session can only attach the CPU provider.
    _providers(monkeypatch, WITH_CUDA)
    cfg = BenchConfig(export=tiny_export_session, provider="cuda", batches=(1,), seq_lens=(8,), iterations=1,
                      warmup=0, baseline=False)
    with pytest.raises(ProviderError, match="attached only CPUExecutionProvider"):
        bench.run_bench(cfg)
    assert not (in_tmp / "benchmarks").exists()  # nothing written for a failed run


def test_auto_skips_a_listed_cuda_that_does_not_start(monkeypatch, tiny_export_session, in_tmp, no_gpu_attaches):
    # onnxruntime-gpu lists CUDA even without a usable GPU: auto then benchmarks the CPU and says why.
    _providers(monkeypatch, WITH_CUDA)
    cfg = BenchConfig(export=tiny_export_session, provider="auto", batches=(1,), seq_lens=(8,), iterations=1,
                      warmup=0, json_path=in_tmp / "r.json", csv_path=in_tmp / "r.csv")
    result = bench.run_bench(cfg)
    assert {r.provider for r in result.records} == {"cpu"} and result.settings["providers"] == ["cpu"]
    assert any("provider auto: cuda is listed by onnxruntime but did not start" in n for n in result.notes)


def test_cuda_baseline_needs_cuda_torch(monkeypatch, tiny_export_session, in_tmp):
    import torch

    _providers(monkeypatch, WITH_CUDA)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU build of torch, also on a GPU host
    cfg = BenchConfig(export=tiny_export_session, provider="cuda", batches=(1,), seq_lens=(8,), iterations=1, warmup=0)
    with pytest.raises(ProviderError, match="--no-baseline"):
        bench.run_bench(cfg)


def test_real_text_refuses_tensorrt(monkeypatch, tiny_export_session, in_tmp):
    _providers(monkeypatch, WITH_TRT)
    data = in_tmp / "texts.csv"
    data.write_text("text,labels\nhello,joy\n", encoding="utf-8")
    cfg = BenchConfig(export=tiny_export_session, provider="tensorrt", data=data, iterations=1)
    with pytest.raises(ProviderError, match="TensorRT rebuilds its engine"):
        bench.run_bench(cfg)


class _Binding:
    """Stand-in for onnxruntime's IOBinding: records every call."""

    def __init__(self, calls):
        self.calls = calls

    def bind_ortvalue_input(self, name, value):
        self.calls.append(("input", name, value))

    def bind_output(self, name, device_type, device_id):
        self.calls.append(("output", name, device_type, device_id))

    def synchronize_inputs(self):
        self.calls.append("sync-in")

    def synchronize_outputs(self):
        self.calls.append("sync-out")


class _Session:
    """Stand-in for an InferenceSession attached to `providers`, with two int64 inputs."""

    def __init__(self, providers, calls=None):
        self.providers, self.calls = providers, calls if calls is not None else []

    def get_providers(self):
        return list(self.providers)

    def get_session_options(self):
        return type("O", (), {"intra_op_num_threads": 2})()

    def get_inputs(self):
        return [type("I", (), {"name": n, "type": "tensor(int64)"})() for n in ("input_ids", "attention_mask")]

    def get_outputs(self):
        return [type("O", (), {"name": "logits"})()]

    def io_binding(self):
        return _Binding(self.calls)

    def run_with_iobinding(self, binding):
        self.calls.append("run")


def test_cuda_runner_uses_io_binding_and_synchronizes(monkeypatch):
    """The CUDA step, with a stand-in session: inputs copied to the device once, outputs bound there,
    synchronize around every run (test_cuda_fixed_run_on_a_gpu runs it for real)."""
    import onnxruntime

    calls = []
    monkeypatch.setattr(onnxruntime.OrtValue, "ortvalue_from_numpy",
                        lambda array, device, device_id: ("device-copy", device, device_id, array.shape))
    runner = runners.OrtRunner("fp16", Path("unused.onnx"), "cuda", 2, session=_Session(WITH_CUDA, calls))
    assert (runner.provider, runner.device) == ("cuda", "cuda")
    step = runner.fixed_step(fixed.fixed_inputs(4, 16, 100))
    assert calls == [("input", "input_ids", ("device-copy", "cuda", 0, (4, 16))),
                     ("input", "attention_mask", ("device-copy", "cuda", 0, (4, 16))),
                     ("output", "logits", "cuda", 0)]  # token_type_ids: not declared, not fed
    calls.clear()
    step()
    step()
    assert calls == ["sync-in", "run", "sync-out"] * 2


@pytest.mark.parametrize("provider", ["cpu", "cuda", "tensorrt"])
def test_runners_open_the_runtime_session_unchanged(monkeypatch, provider):
    """Bench times the very session apps get: runtime.open_session's, with no bench-only options
    (before, TensorRT got trt_fp16_enable and its own engine cache here)."""
    from toolkit import runtime

    opened = []

    def open_session(path, provider_name, threads):
        opened.append((path, provider_name, threads))
        return _Session(runtime.PROVIDER_CHAINS[provider_name])

    monkeypatch.setattr(runtime, "open_session", open_session)
    runner = runners.OrtRunner("fp32", Path("model.onnx"), provider, 3)
    assert opened == [(Path("model.onnx"), provider, 3)]
    assert runner.provider == provider and runner.device == ("cpu" if provider == "cpu" else "cuda")
    assert runner.input_types == {"input_ids": np.int64, "attention_mask": np.int64}


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sweep(tiny_export_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg = BenchConfig(export=tiny_export_session, batches=(1, 2), seq_lens=(8, 16), iterations=3, warmup=1,
                      provider="cpu", json_path=out / "r.json", csv_path=out / "r.csv", command="toolkit bench test")
    started = time.perf_counter()
    result = bench.run_bench(cfg)
    result.wall_s = time.perf_counter() - started  # an outside clock for the records' own numbers
    return result


def test_sweep_records_every_case_and_variant(sweep, tiny_export_session):
    manifest = json.loads((tiny_export_session / "manifest.json").read_text())
    variants = [v.value for v in Variant if v.value in manifest["variants"]]
    runners = ["pytorch-fp32"] + variants
    assert [(r.seq_len, r.batch, r.variant) for r in sweep.records] == \
        [(s, b, v) for s in (8, 16) for b in (1, 2) for v in runners]
    for r in sweep.records:
        assert r.provider == "cpu" and r.device == "cpu" and r.mode == "fixed" and r.padding == "fixed"
        assert r.iterations == 3
        assert r.threads == sweep.settings["threads"] >= 1
        assert r.tokens_per_s == pytest.approx(r.sequences_per_s * r.seq_len, rel=1e-9)
        assert r.sequences_per_s > 0
        assert r.latency_p50_ms <= r.latency_p90_ms <= r.latency_p99_ms
        # batch / mean latency is the throughput
        assert r.sequences_per_s == pytest.approx(r.batch / (r.latency_mean_ms / 1e3), rel=1e-9)
        # checked against a clock outside bench: the timed runs fit in the run's wall time (a unit slip,
        # ms for s or a wrong run count, breaks this), so the rate is at least what the wall time allows
        assert r.iterations * r.latency_mean_ms / 1e3 <= sweep.wall_s
        assert r.sequences_per_s >= r.batch * r.iterations / sweep.wall_s
        assert r.speedup is not None and r.speedup_vs == "pytorch-fp32"
    assert all(r.speedup == pytest.approx(1.0, abs=1e-12) for r in sweep.records if r.variant == "pytorch-fp32")


def test_result_records_the_environment(sweep):
    m = sweep.machine
    assert m.cpu and 1 <= m.physical_cores <= m.logical_cores
    assert sweep.command == "toolkit bench test"
    assert sweep.date.endswith("+00:00")
    assert {"onnxruntime", "torch", "numpy", "python"} <= set(sweep.versions)
    assert sweep.settings["providers"] == ["cpu"] and sweep.settings["onnxruntime"]["graph_optimization_level"]


def test_json_round_trip(sweep, tmp_path):
    loaded = bench.load_result(sweep.json_path)
    assert loaded.records == sweep.records
    assert loaded.machine == sweep.machine
    assert (loaded.date, loaded.command, loaded.settings, loaded.notes) == \
        (sweep.date, sweep.command, sweep.settings, sweep.notes)
    data = json.loads(sweep.json_path.read_text())
    assert data["schema"] == bench.SCHEMA
    assert set(data["records"][0]) == {f for f in BenchRecord.__dataclass_fields__}
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(ToolkitError, match="not a toolkit-bench/1 bench result"):
        bench.load_result(bad)


def test_csv_has_one_row_per_record(sweep):
    with open(sweep.csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(sweep.records)
    for row, rec in zip(rows, sweep.records):
        assert row["variant"] == rec.variant and int(row["batch"]) == rec.batch
        assert float(row["sequences_per_s"]) == pytest.approx(rec.sequences_per_s, rel=1e-12)
        assert row["command"] == "toolkit bench test" and row["cpu"] == sweep.machine.cpu


def test_summary_is_one_table():
    records = [_record("pytorch-fp32", rate=10.0), _record("int8", rate=35.5)]
    results.assign_speedups(records)
    text = bench.format_summary(_result(records))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("variant"))
    assert lines[header].split() == ["variant", "provider", "mode", "batch", "seq", "threads", "seq/s", "tokens/s",
                                     "mean", "ms", "p50", "ms", "p90", "ms", "p99", "ms", "speedup"]
    assert set(lines[header + 1]) <= {"-", " "}
    int8 = lines[header + 3].split()
    assert int8[0] == "int8" and int8[6] == "35.5" and int8[-1] == "3.55x"
    assert "note: a note" in text and "speedup: sequences/s over pytorch-fp32" in text


def test_markdown_table_renders_every_record():
    records = [_record("pytorch-fp32", rate=10.0), _record("int8", rate=35.5)]
    results.assign_speedups(records)
    md = bench.format_markdown(_result(records), title="BERT-base")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and rows[2].startswith("| int8 | cpu | fixed | 8 | 128 |") and rows[2].endswith("| 3.55x |")
    assert md.startswith("### BERT-base") and "`toolkit bench --batch 8`" in md


def test_cli_bench_end_to_end(tiny_export_session, in_tmp):
    from click.testing import CliRunner

    from toolkit.cli import cli

    result = CliRunner().invoke(cli, ["bench", "--export", str(tiny_export_session), "--iterations", "2",
                                      "--warmup", "1", "--batch", "1,2", "--seq-len", "8", "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    assert "pytorch-fp32" in result.output and "speedup" in result.output
    # without --json/--csv: the ignored run directory, never the committed results
    assert not (in_tmp / "benchmarks" / "results").exists()
    outputs = sorted(p.name for p in (in_tmp / "benchmarks" / "runs").iterdir())
    assert len(outputs) == 2 and outputs[0].endswith("-fixed.csv") and outputs[1].endswith("-fixed.json")
    loaded = bench.load_result(in_tmp / "benchmarks" / "runs" / outputs[1])
    assert sorted({r.batch for r in loaded.records}) == [1, 2] and {r.seq_len for r in loaded.records} == {8}
    assert all(r.iterations == 2 for r in loaded.records)


def test_cli_rejects_bad_batch_list():
    from click.testing import CliRunner

    from toolkit.cli import cli

    result = CliRunner().invoke(cli, ["bench", "--batch", "1,x"])
    assert result.exit_code != 0 and "comma-separated integers" in result.output


@pytest.mark.slow
def test_real_text_mode(tiny_export_session, in_tmp):
    data = in_tmp / "texts.csv"
    data.write_text("text,labels\n" + "".join(f'"{t}",joy\n' for t in TEXTS), encoding="utf-8")
    cfg = BenchConfig(export=tiny_export_session, data=data, batches=(4,), seq_lens=(16,), iterations=1, warmup=1,
                      provider="cpu", json_path=in_tmp / "r.json", csv_path=in_tmp / "r.csv")
    started = time.perf_counter()
    result = bench.run_bench(cfg)
    wall_s = time.perf_counter() - started
    manifest = json.loads((tiny_export_session / "manifest.json").read_text())
    variants = [v.value for v in Variant if v.value in manifest["variants"]]
    rows = {(r.variant, r.padding): r for r in result.records}
    expected = {(v, p) for v in variants + ["pytorch-fp32"] for p in ("bucket", "max_length")}
    expected |= {("optimum-int8" if "int8" in variants else f"optimum-{variants[0]}", "longest"),
                 ("pytorch-seed-loop", "max_length")}
    assert set(rows) == expected and len(result.records) == len(expected)
    n = len(TEXTS)
    batches = -(-n // 4)
    for r in result.records:
        assert r.mode == "real-text" and r.texts == n
        if r.variant == "pytorch-seed-loop":
            assert (r.batch, r.seq_len, r.iterations) == (1, 128, n)
            assert r.speedup == pytest.approx(1.0, abs=1e-12)
        else:
            assert r.batch == 4 and r.iterations == batches and r.speedup_vs == "pytorch-seed-loop"
        # one pass: every text once, in `iterations` timed calls
        assert r.sequences_per_s == pytest.approx(n / (r.latency_mean_ms / 1e3 * r.iterations), rel=1e-9)
        assert r.sequences_per_s >= n / wall_s  # the pass fits in the run's wall time (an outside clock)
    padded = rows[(variants[0], "max_length")]
    assert padded.seq_len == 16 and padded.tokens_per_s == pytest.approx(padded.sequences_per_s * 16, rel=1e-9)
    bucket = rows[(variants[0], "bucket")]
    assert bucket.seq_len == manifest["max_length"]
    assert bucket.tokens_per_s < bucket.sequences_per_s * 16  # short texts: buckets pad far less than 16
    assert "texts/s over pytorch-seed-loop" in bench.format_summary(result)


def test_plot_writes_png(in_tmp):
    records = [_record("pytorch-fp32", batch=b, rate=10.0 * b) for b in (1, 8)] + \
              [_record("int8", batch=b, rate=30.0 * b) for b in (1, 8)]
    path = bench.plot_result(_result(records), in_tmp / "plots" / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tiny_export_session, in_tmp):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    cfg = BenchConfig(export=tiny_export_session, plot=in_tmp / "p.png", iterations=1)
    with pytest.raises(ToolkitError, match=r"--plot needs matplotlib: pip install 'toolkit\[plot\]'"):
        bench.run_bench(cfg)  # fails before any timing


def test_export_and_preset_are_exclusive(tiny_export_session):
    with pytest.raises(ToolkitError, match="exclusive"):
        bench.run_bench(BenchConfig(export=tiny_export_session, preset="tiny"))


def test_missing_source_checkpoint_names_no_baseline(tiny_export, in_tmp):
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    manifest["source"] = dict(manifest["source"], path=str(in_tmp / "gone"), checkpoint=str(in_tmp / "gone"))
    (tiny_export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ToolkitError, match="pass --no-baseline"):
        bench.run_bench(BenchConfig(export=tiny_export, iterations=1, provider="cpu"))


NO_BASELINE_RUN = """
import json, sys
from toolkit.bench import run_bench
from toolkit.config import BenchConfig
result = run_bench(BenchConfig(export=sys.argv[1], provider="cpu", batches=(1,), seq_lens=(8,), iterations=1,
                               warmup=0, baseline=False, json_path="r.json", csv_path="r.csv"))
print(json.dumps({"records": [r.variant for r in result.records],
                  "loaded": sorted(m for m in ("torch", "transformers", "optimum") if m in sys.modules)}))
"""


def test_no_baseline_run_imports_no_torch(tiny_export_session, tmp_path):
    # a fresh interpreter: in this one, other tests have imported torch long ago
    out = subprocess.run([sys.executable, "-c", NO_BASELINE_RUN, str(tiny_export_session)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    manifest = json.loads((tiny_export_session / "manifest.json").read_text())
    assert report["records"] == [v.value for v in Variant if v.value in manifest["variants"]]
    assert report["loaded"] == []


def test_readme_bench_leaves_a_fresh_clone_clean(tiny_export_session, tmp_path, monkeypatch):
    """The README's `toolkit bench --batch 32`, run in a fresh clone on the default export, writes only
    ignored files (here with fewer runs and a short sequence, to stay cheap)."""
    from click.testing import CliRunner

    from toolkit.cli import cli
    from toolkit.config import DEFAULT_EXPORT

    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("needs git and a git checkout of toolkit")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", repo.as_uri(), str(clone)], check=True, timeout=120)
    shutil.copytree(tiny_export_session, clone / DEFAULT_EXPORT)  # what `toolkit export` leaves there
    monkeypatch.chdir(clone)
    result = CliRunner().invoke(cli, ["bench", "--batch", "32", "--seq-len", "16", "--iterations", "2",
                                      "--warmup", "0", "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(list((clone / "benchmarks" / "runs").glob("bench-*-fixed.json"))) == 1  # it did write its result
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == ""


@pytest.mark.gpu
def test_cuda_fixed_run_on_a_gpu(tiny_export_session, in_tmp):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-gpu and a CUDA device")
    cfg = BenchConfig(export=tiny_export_session, provider="cuda", variants=(Variant.FP32, Variant.FP16),
                      batches=(2,), seq_lens=(16,), iterations=3, warmup=1, baseline=False,
                      json_path=in_tmp / "r.json", csv_path=in_tmp / "r.csv")
    result = bench.run_bench(cfg)
    assert [(r.variant, r.provider, r.device, r.iterations) for r in result.records] == \
        [("fp32", "cuda", "cuda", 3), ("fp16", "cuda", "cuda", 3)]
    assert all(r.sequences_per_s == pytest.approx(2 / (r.latency_mean_ms / 1e3), rel=1e-9) for r in result.records)


# ---------------------------------------------------------------------------- presets


def test_tiny_preset_is_built_once_and_reused(in_tmp, monkeypatch):
    cache = in_tmp / "cache"
    export_dir = bench.prepare_preset("tiny", cache_dir=cache)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert set(manifest["variants"]) >= {"fp32", "fp16", "int8"}
    assert len(manifest["labels"]) == scenarios.PRESET_LABELS
    meta = json.loads((cache / "tiny" / "checkpoint" / "toolkit.json").read_text())
    assert meta["bench_preset"]["weights"] == "random"

    import toolkit.export

    def no_export(cfg):
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(toolkit.export, "export_model", no_export)
    assert bench.prepare_preset("tiny", cache_dir=cache) == export_dir

    # a modified file makes the cache stale (checksums), so it would be rebuilt
    onnx_file = export_dir / manifest["variants"]["int8"]["file"]
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    reason = scenarios.stale_cache(export_dir, cache / "tiny" / "checkpoint", scenarios.preset_spec("tiny"))
    assert reason is not None and "sha256" in reason


def test_unknown_preset_is_rejected(tmp_path):
    with pytest.raises(ToolkitError, match="unknown preset 'huge'"):
        bench.prepare_preset("huge", cache_dir=tmp_path)
