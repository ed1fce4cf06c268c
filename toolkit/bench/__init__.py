"""`toolkit bench`: throughput and latency of every variant side by side, with the environment recorded.

One job per module, imported in this order (no cycles):

- `timing`: interleaved round-robin runs and their percentiles.
- `results`: the result model (records, machine, result), speedups within a case, JSON and CSV.
- `environment`: machine and versions, CPU contention from /proc.
- `runners`: ONNX variants in `toolkit.runtime.open_session`'s session (what apps get), PyTorch eager.
- `scenarios`: what the bench compares against: presets, the seed notebook's loop, optimum.
- `fixed`: fixed-shape mode. `text`: real-text mode (`--data`).
- `report`: summary table, Markdown, PNG.
- `run`: `run_bench`, the orchestration.

Nothing here imports torch at import time, and `run_bench` with `baseline=False` on an export
never does. The names below are the package's public surface.
"""
from toolkit.bench.environment import machine_info, uptime
from toolkit.bench.fixed import INPUT_SEED, MIN_ITERATIONS
from toolkit.bench.report import format_markdown, format_summary, plot_result
from toolkit.bench.results import SCHEMA, BenchRecord, BenchResult, MachineInfo, load_result, result_to_dict, \
    write_csv
from toolkit.bench.run import RESULTS_DIR, RUNS_DIR, run_bench, select_providers
from toolkit.bench.scenarios import PRESET_LABELS, PRESET_SPECS, prepare_preset
from toolkit.bench.timing import TimingStats, round_robin, timing_stats

__all__ = [
    "run_bench", "select_providers", "prepare_preset", "PRESET_SPECS", "PRESET_LABELS",
    "BenchRecord", "BenchResult", "MachineInfo", "TimingStats", "SCHEMA", "RESULTS_DIR", "RUNS_DIR",
    "INPUT_SEED", "MIN_ITERATIONS",
    "timing_stats", "round_robin", "machine_info", "uptime",
    "format_summary", "format_markdown", "plot_result", "load_result", "result_to_dict", "write_csv",
]
