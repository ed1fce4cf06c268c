"""Rendering a bench result: the plain summary table, a Markdown section, and a PNG plot."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from toolkit.bench.results import FIXED, PYTORCH_FP32, REAL_TEXT, SEED_LOOP, BenchRecord, BenchResult
from toolkit.bench.scenarios import SEED_LOOP_MAX_LENGTH
from toolkit.errors import ToolkitError
from toolkit.tables import markdown_table

HEADER = ("variant", "provider", "mode", "batch", "seq", "threads", "seq/s", "tokens/s", "mean ms", "p50 ms",
          "p90 ms", "p99 ms", "speedup")
PANELS = (("sequences / s", "sequences_per_s"), ("p50 latency (ms)", "latency_p50_ms"),
          ("p99 latency (ms)", "latency_p99_ms"))


def format_summary(result: BenchResult) -> str:
    """One plain table (variant, provider, batch, seq, throughput, latency, speedup), then notes and files."""
    from toolkit.tables import format_table

    m = result.machine
    gpu = f", GPU {m.gpu} (driver {m.gpu_driver})" if m.gpu else ""
    head = (f"{result.source.get('name')} on {m.cpu} ({m.physical_cores} physical / {m.logical_cores} logical "
            f"cores{gpu}), {result.date}")
    lines = [head, format_table([HEADER] + [row_cells(r) for r in result.records]), speedup_legend(result)]
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"wrote {p}" for p in (result.json_path, result.csv_path, result.plot_path) if p]
    return "\n".join(lines)


def format_markdown(result: BenchResult, title: Optional[str] = None) -> str:
    """A Markdown section for benchmarks/README.md: the command, the machine, versions and the table."""
    m = result.machine
    v = result.versions
    gpu = f"; GPU {m.gpu}, driver {m.gpu_driver}" if m.gpu else "; no GPU"
    lines = [f"### {title or result.source.get('name')}", "", f"`{result.command}`", ""]
    lines.append(f"{result.date} · {m.cpu}, {m.physical_cores} physical / {m.logical_cores} logical cores{gpu} · "
                 + ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "onnxruntime-gpu", "torch") if k in v))
    lines.append("")
    lines += markdown_table(HEADER, [row_cells(r) for r in result.records], right_from=3)
    lines.append("")
    lines.append(speedup_legend(result))
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def plot_result(result: BenchResult, path: Path) -> Path:
    """PNG: throughput, p50 and p99 latency against batch size, one line per variant/provider/shape.

    Raises:
        ToolkitError: matplotlib is not installed (pip hint).
    """
    require_matplotlib()
    from matplotlib.figure import Figure  # the object API: no pyplot state, no global backend switch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[BenchRecord]] = {}
    for r in result.records:
        key = f"{r.variant} {r.provider}" + ("" if r.mode == FIXED else f" {r.padding}") + f" seq{r.seq_len}"
        series.setdefault(key, []).append(r)
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    batches = sorted({r.batch for r in result.records})
    for ax, (label, attr) in zip(axes, PANELS):
        for key, recs in series.items():
            recs = sorted(recs, key=lambda r: r.batch)
            ax.plot([r.batch for r in recs], [getattr(r, attr) for r in recs], marker="o", label=key)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, labels=[str(b) for b in batches])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result.source.get('name')}: {result.machine.cpu}"
                 + (f" / {result.machine.gpu}" if result.machine.gpu else "") + f" ({result.date})", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def require_matplotlib() -> None:
    """Fail before any timing when --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ToolkitError("--plot needs matplotlib: pip install 'toolkit[plot]' (or matplotlib), "
                           "or drop --plot") from e


def row_cells(r: BenchRecord) -> list[str]:
    mode = r.mode if r.mode == FIXED else f"text/{r.padding}"
    speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
    return [r.variant, r.provider, mode, str(r.batch), str(r.seq_len), str(r.threads), f"{r.sequences_per_s:,.1f}",
            f"{r.tokens_per_s:,.0f}", f"{r.latency_mean_ms:.2f}", f"{r.latency_p50_ms:.2f}", f"{r.latency_p90_ms:.2f}",
            f"{r.latency_p99_ms:.2f}", speedup]


def speedup_legend(result: BenchResult) -> str:
    if any(r.mode == REAL_TEXT for r in result.records):
        seed = next((r for r in result.records if r.variant == SEED_LOOP), None)
        if seed is None:
            return "speedup: texts/s over pytorch-fp32 with the same padding; real-text rates include tokenization"
        return (f"speedup: texts/s over {SEED_LOOP} (the seed notebook's predict_emotions: one text at a time, "
                f"padded to {SEED_LOOP_MAX_LENGTH}, first {seed.texts} texts) in the same batch case and device; "
                "real-text rates include tokenization; tokens/s counts padding")
    return f"speedup: sequences/s over {PYTORCH_FP32} eager on the same device, batch and seq"
