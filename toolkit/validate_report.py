"""Rendering a `toolkit validate` result: the plain summary table and the Markdown report.

Numbers stay numbers in `toolkit.validate`'s dataclasses until these functions format them; the
Markdown table layout is shared with `toolkit bench` (toolkit.tables).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from toolkit.parity import LabelRow, Parity, format_number
from toolkit.tables import format_table, markdown_table

if TYPE_CHECKING:  # the dataclasses live with the orchestration that fills them
    from toolkit.validate import ValidationResult, VariantReport


def format_summary(result: ValidationResult) -> str:
    """One table (PyTorch and each variant) and the list of failed checks."""
    rows = [("variant", "macro-F1", "micro-F1", "Jaccard", "Δmacro", "max|Δprob|", "agreement", "worst label (ΔF1)",
             "retuned macro-F1", "status")]
    ref = result.reference
    rows.append((ref.variant, f"{ref.metrics.macro_f1:.4f}", f"{ref.metrics.micro_f1:.4f}",
                 f"{ref.metrics.jaccard_samples:.4f}", "-", "-", "-", "-", f"{ref.retuned_macro_f1:.4f}", "reference"))
    for v in result.variants:
        p = v.parity
        rows.append((
            v.variant, f"{v.metrics.macro_f1:.4f}", f"{v.metrics.micro_f1:.4f}", f"{v.metrics.jaccard_samples:.4f}",
            f"{-v.macro_drop:+.4f}",
            "n/a" if p.max_abs_diff is None else f"{p.max_abs_diff:.2e}", f"{100 * p.agreement:.2f}%",
            f"{v.worst_label} ({v.worst_delta_f1:+.4f})", f"{v.retuned_macro_f1:.4f}", _verdict(v),
        ))
    for name in result.skipped:
        rows.append((name, *["-"] * 8, "not exported"))
    lines = [f"{result.export} on {result.data}: {result.n_samples} texts, {len(result.labels)} labels; "
             f"certified texts: {_evidence_line(result)}", *_truncation_line(result), format_table(rows)]
    if result.failures:
        lines.append(f"\n{len(result.failures)} failed check(s):")
        lines += [f"  {c.describe()}" for c in result.failures]
    else:
        lines.append(f"\nall {len(result.checks)} checks passed")
    lines += _evidence_notes(result)
    lines += [f"wrote {path}" for path in result.reports]
    return "\n".join(lines)


def _truncation_line(result: ValidationResult) -> list[str]:
    """The share of texts the export's max_length cut (runtime.count_truncated), if measured."""
    from toolkit.runtime import Truncation

    t = result.truncation
    return [Truncation(t["cut"], t["texts"], t["max_length"]).describe()] if t else []


def format_markdown(result: ValidationResult) -> str:
    """The Markdown report: summary table, per-label F1 table, failures, all checks."""
    lines = [f"# Validation of `{result.export}`", "",
             f"Data: {result.data} ({result.n_samples} texts, {len(result.labels)} labels; "
             f"{_evidence_line(result)}). Status: **{'PASS' if result.passed else 'FAIL'}**"
             + (" (smoke test: certifies nothing)" if result.restricted else "") + ".", ""]
    lines += [f"- {note.strip()}" for note in _evidence_notes(result)]
    lines += [f"- {line}" for line in _truncation_line(result)]
    lines += ["", "## Summary", ""]
    header = ["variant", "macro-F1", "micro-F1", "precision", "recall", "exact match", "Jaccard (samples)",
              "ROC-AUC micro", "Δmacro",
              "max abs Δprob", "mean abs Δprob", "agreement", "tie flips", "near-threshold", "NaN/Inf",
              "worst label (ΔF1)", "retuned macro-F1", "status"]
    rows = [_md_row(result.reference, None)] + [_md_row(v, v.parity) for v in result.variants]
    lines += markdown_table(header, rows)
    lines += ["", "## Per-label F1", ""]
    per_label = [[r.label, str(r.support), f"{r.threshold:.3f}", f"{r.f1_reference:.4f}"]
                 + [_md_label_cell(v.per_label[j]) for v in result.variants]
                 for j, r in enumerate(result.reference.per_label)]
    lines += markdown_table(["label", "support", "threshold", result.reference.variant] + [v.variant for v in result.variants], per_label)
    lines += ["", "## Failures", ""]
    lines += [f"- {c.describe()}" for c in result.failures] or ["None."]
    lines += ["", "## Checks", ""]
    lines += [f"- {'ok' if c.passed else 'FAIL'}: {c.describe()}" for c in result.checks]
    if result.skipped:
        lines += ["", f"Not exported, skipped: {', '.join(result.skipped)}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- helpers


def _md_row(v: VariantReport, p: Optional[Parity]) -> list[str]:
    m = v.metrics
    auc = "n/a" if m.roc_auc_micro is None else f"{m.roc_auc_micro:.4f}"
    base = [v.variant, f"{m.macro_f1:.4f}", f"{m.micro_f1:.4f}", f"{m.micro_precision:.4f}", f"{m.micro_recall:.4f}",
            f"{m.exact_match:.4f}", f"{m.jaccard_samples:.4f}", auc]
    if p is None:
        return base + ["-"] * 5 + [str(v.near_threshold), "-", "-", f"{v.retuned_macro_f1:.4f}", "reference"]
    return base + [f"{-v.macro_drop:+.4f}", format_number(p.max_abs_diff), format_number(p.mean_abs_diff), f"{100 * p.agreement:.2f}%",
                   str(sum(p.tie_flips.values())), str(p.near_threshold), str(p.nan_inf),
                   f"{v.worst_label} ({v.worst_delta_f1:+.4f})",
                   f"{v.retuned_macro_f1:.4f}", _verdict(v)]


def _verdict(v: VariantReport) -> str:
    if not v.passed:
        return "FAIL"
    return "PASS (smoke)" if v.restricted else "PASS"


def _evidence_line(result: ValidationResult) -> str:
    """'certify part, 2713 rows, sha256 1a2b3c4d5e6f (of 5426 rows, sha256 ...)': the fingerprint certified."""
    from toolkit.data import describe_fingerprint

    e = result.evidence
    if e is None:
        return "no fingerprint"
    return f"{e.part} part, {describe_fingerprint(e.fingerprint)} (of {describe_fingerprint(e.source_fingerprint)})"


def _evidence_notes(result: ValidationResult) -> list[str]:
    """Labels without enough evidence per variant, and why a smoke test records no pass."""
    lines = []
    for v in result.variants:
        if v.insufficient:
            shown = ", ".join(f"{label} {n}" for label, n in sorted(v.insufficient.items(), key=lambda x: x[1]))
            lines.append(f"{v.variant}: {len(v.insufficient)} label(s) NOT ENOUGH EVIDENCE (positives: {shown}); "
                         "their per-label gate neither passed nor failed")
        if v.restricted and v.passed:
            lines.append(f"{v.variant}: smoke test ({v.restricted}); its pass is not recorded as a certificate "
                         "and variant auto ignores it")
    return lines


def _md_label_cell(row: LabelRow) -> str:
    ties = f", {row.tie_flips} at ties" if row.tie_flips else ""
    return f"{row.f1:.4f} ({row.delta_f1:+.4f}, {row.flips} flips{ties})"
