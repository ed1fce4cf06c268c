"""What cli.py's commands share: option callbacks, option groups, and the tables of results.

cli.py keeps one function per command (options -> config -> one call -> summary); the parsing of
comma lists, per-variant limits and variant names, the options several commands repeat, the
score progress bar and the metric tables live here so that each command reads in one screen.
Like cli.py, nothing here imports torch or onnxruntime; only cli.py imports it.
"""
from __future__ import annotations

import sys

import click

from toolkit.config import PROVIDER_CHOICES, Variant
from toolkit.errors import ToolkitError
from toolkit.tables import format_table

provider_option = click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default="auto", show_default=True)
variant_option = click.option("--variant", default="auto", show_default=True,
                              help="auto (int8 on CPU, fp16 on CUDA), fp32, fp16 or int8.")


def int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,8,32, got {value!r}")


def name_list(ctx, param, value):
    """'a, b,c' -> ('a', 'b', 'c'); None stays None."""
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise click.BadParameter(f"expected comma-separated column names like a,b,c, got {value!r}")
    return names


def column_options(command):
    """--label-columns, --ignore-columns and --id-column, shared by train, evaluate and validate."""
    options = [
        click.option("--label-columns", callback=name_list, default=None,
                     help="The 0/1 label columns, in this order (others are ignored). Default: every column but text and id."),
        click.option("--ignore-columns", callback=name_list, default=None,
                     help="Columns that are neither text, id nor label (metadata), e.g. date,author."),
        click.option("--id-column", default=None,
                     help="Column of row ids, carried into per-text outputs. Default: a column named 'id'."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def data_config(path, fmt, text_column, labels_column, label_columns, ignore_columns, id_column, **kwargs):
    from toolkit.config import DataConfig

    return DataConfig(path=path, format=fmt, text_column=text_column, labels_column=labels_column,
                      label_columns=label_columns, ignore_columns=ignore_columns or (), id_column=id_column, **kwargs)


def export_variants(ctx, param, value):
    """`export --variants`: the precisions export makes ('all': fp32, fp16, int8)."""
    try:
        return Variant.parse_list(value, Variant.exported() if value in (None, "", "all") else Variant.exportable())
    except ToolkitError as e:
        raise click.BadParameter(str(e))


def artifact_variants(ctx, param, value):
    """`validate/bench --variants`: any variant an export holds, as names; None ('all'): every one it has."""
    if value is None or value.strip().lower() in ("", "all"):
        return None
    try:
        return tuple(v.value for v in Variant.parse_list(value))
    except ToolkitError as e:
        raise click.BadParameter(str(e))


def per_variant_limits(ctx, param, value):
    """'0.01' (every reduced-precision variant) or 'fp16=0.002,int8=0.01' -> {variant: limit}."""
    if value is None:
        return None
    try:
        if "=" not in value:
            return {"*": float(value)}
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        return {name.strip(): float(limit) for name, limit in pairs}
    except ValueError:
        raise click.BadParameter(f"expected a number or fp16=0.002,int8=0.01, got {value!r}")


def merge_limits(defaults: dict, given) -> dict:
    if not given:
        return dict(defaults)
    if "*" in given:
        return {name: given["*"] for name in defaults}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise click.BadParameter(f"unknown variant {', '.join(unknown)}; limits apply to {', '.join(defaults)}")
    return {**defaults, **given}


def metrics_table(reports: dict) -> str:
    rows = [("", *reports)]
    for name, attr in [("micro-F1", "micro_f1"), ("macro-F1", "macro_f1"), ("micro-precision", "micro_precision"),
                       ("micro-recall", "micro_recall"), ("macro-precision", "macro_precision"),
                       ("macro-recall", "macro_recall"), ("exact match", "exact_match"),
                       ("Jaccard (samples)", "jaccard_samples"), ("ROC-AUC micro", "roc_auc_micro"), ("ROC-AUC macro", "roc_auc_macro")]:
        rows.append((name, *(_fmt(getattr(r, attr)) for r in reports.values())))
    return format_table(rows)


def per_label_table(report) -> str:
    rows = [("label", "support", "threshold", "precision", "recall", "F1")]
    rows += [(m.label, str(m.support), f"{m.threshold:.3f}", f"{m.precision:.4f}", f"{m.recall:.4f}", f"{m.f1:.4f}")
             for m in report.per_label]
    return format_table(rows)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class Progress:
    """A progress bar on stderr once the total is known; a row count when it is not (CSV)."""

    def __init__(self):
        self._bar, self._done = None, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.render_finish()

    def update(self, done: int, total):
        if self._bar is None:
            self._bar = click.progressbar(length=total or 0, label="scoring", file=sys.stderr, show_pos=True,
                                          show_percent=bool(total), show_eta=bool(total))
        self._bar.update(done - self._done)
        self._done = done
