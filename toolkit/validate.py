"""`toolkit validate`: every ONNX variant against the PyTorch checkpoint it came from, per label.

The PyTorch checkpoint recorded in the manifest is the reference. Each variant runs through
`toolkit.runtime.EmotionClassifier`, the code apps embed, so what is validated is what ships:
the ONNX file *and* the labels and thresholds the manifest hands to the app. For each variant:

- parity with PyTorch: max/mean |Δprob|, decision agreement at the stored thresholds, flips
  per label, probabilities within `NEAR_THRESHOLD` of a threshold, NaN/Inf count;
- quality on labelled data beside PyTorch's: micro/macro F1, precision, recall, exact match,
  ROC-AUC, per-label F1 with its delta, and macro-F1 with thresholds re-tuned on this data;
- gates (`config.Gates`): every failing check is collected, the reports are written, then one
  `ValidationFailed` carrying all failures is raised.

Columns are matched by label *name*: the reference's columns are put in the manifest's label
order, so a manifest whose label order or thresholds drifted from the checkpoint shows up
as probability and F1 differences, and also fails the direct `labels`/`thresholds` checks.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from toolkit import artifacts
from toolkit.config import Gates, ValidateConfig
from toolkit.errors import ArtifactError, DataError, ValidationFailed
from toolkit.metrics import MetricReport, compute_metrics, tune_thresholds

log = logging.getLogger(__name__)

REFERENCE = "pytorch"
NEAR_THRESHOLD = 0.02  # a prob this close to its threshold flips on a ~1e-2 quantization error: int8's typical size
# A reference this close to its threshold has no decision a variant must keep: fp32 kernels (ONNX
# vs PyTorch, or PyTorch with other padding) move a sigmoid output by ~1e-7, and tuned thresholds
# are validation scores, so on the tuning split each label has a text exactly on its threshold.
TIE_BAND = 1e-6
THRESHOLD_TOLERANCE = 1e-6  # manifest thresholds are copies of the checkpoint's; JSON floats round-trip exactly
_EPS = 1e-9  # F1 values are ratios of counts; differences below this are float noise, not a real drop


@dataclass
class Check:
    """One gate applied to one variant: passes when `value <= limit` (kind 'max') or `>=` (kind 'min')."""

    variant: str
    check: str
    value: float
    limit: float
    kind: str = "max"
    label: Optional[str] = None
    detail: str = ""

    @property
    def passed(self) -> bool:
        if not np.isfinite(self.value):
            return False
        if self.kind == "max":
            return self.value <= self.limit + _EPS
        return self.value >= self.limit - _EPS

    def describe(self) -> str:
        """'int8 label_f1_drop[fear]: 0.2500 > limit 0.0300 (F1 0.81 -> 0.56)'."""
        name = f"{self.check}[{self.label}]" if self.label else self.check
        op = ("<=" if self.kind == "max" else ">=") if self.passed else (">" if self.kind == "max" else "<")
        text = f"{self.variant} {name}: {_num(self.value)} {op} limit {_num(self.limit)}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


@dataclass
class Parity:
    """A variant's probabilities against the reference's, on the same texts."""

    max_abs_diff: Optional[float]  # over entries finite in both; None when there are none
    mean_abs_diff: Optional[float]
    agreement: float  # fraction of sample x label decisions equal, ties counting as equal
    flips: dict[str, int]  # label -> samples whose decision differs, ties excluded
    tie_flips: dict[str, int]  # label -> differing decisions where the reference sat on the threshold
    near_threshold: int  # sample x label probabilities within NEAR_THRESHOLD of their threshold
    nan_inf: int  # non-finite probabilities


@dataclass
class LabelRow:
    label: str
    support: int
    threshold: float
    f1_reference: float
    f1: float
    delta_f1: float  # f1 - f1_reference: negative is a drop
    flips: int
    tie_flips: int
    gated_drop: float  # the F1 drop with tie flips given the reference's decision: what the gate sees


@dataclass
class VariantReport:
    """Everything measured for one variant (or, with parity None, for the PyTorch reference)."""

    variant: str
    provider: str
    seconds: float
    metrics: MetricReport
    retuned_macro_f1: float  # macro-F1 with thresholds re-tuned on this data
    near_threshold: int
    parity: Optional[Parity] = None
    per_label: list[LabelRow] = field(default_factory=list)
    macro_drop: float = 0.0  # reference macro-F1 minus this variant's
    gated_macro_drop: float = 0.0  # the same with tie flips given the reference's decision
    worst_label: Optional[str] = None
    worst_delta_f1: float = 0.0
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class ValidationResult:
    export: Path
    data: str
    n_samples: int
    labels: list[str]
    reference: VariantReport
    variants: list[VariantReport]
    gates: Gates
    skipped: list[str] = field(default_factory=list)  # requested variants the export does not have
    reports: list[Path] = field(default_factory=list)  # files written

    @property
    def checks(self) -> list[Check]:
        return [c for v in self.variants for c in v.checks]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        """The JSON report (also stored in the manifest under 'validation')."""
        def variant(v: VariantReport) -> dict:
            out = asdict(v)
            out["checks"] = [c.to_dict() for c in v.checks]
            out["passed"] = v.passed
            return out

        return {
            "created": artifacts.utc_now(),
            "export": str(self.export),
            "data": self.data,
            "n_samples": self.n_samples,
            "labels": list(self.labels),
            "gates": asdict(self.gates),
            "near_threshold_margin": NEAR_THRESHOLD,
            "passed": self.passed,
            "reference": variant(self.reference),
            "variants": {v.variant: variant(v) for v in self.variants},
            "skipped": list(self.skipped),
            "failures": [c.to_dict() for c in self.failures],
            "versions": artifacts.library_versions(),
        }


def validate_export(cfg: ValidateConfig) -> ValidationResult:
    """Validate every requested variant of an export against its PyTorch checkpoint.

    Returns:
        ValidationResult when every gate passes (reports written, manifest updated).
    Raises:
        ValidationFailed: one or more gates failed (exit 1); raised after the reports are written,
            with `.failures` (list of Check) and `.result` (the ValidationResult).
        ArtifactError, ModelError, DataError, ProviderError, ToolkitError: usage problems (exit 2).
    """
    export_dir = Path(cfg.export)
    manifest = artifacts.read_manifest(export_dir)
    labels = list(manifest.get("labels") or [])
    if not labels:
        raise ArtifactError(f"{export_dir / artifacts.MANIFEST}: no labels; re-run `toolkit export --force`")
    variants, skipped = _select_variants(cfg, manifest)
    _check_provider(cfg.provider)
    from toolkit.modeling import load_export_source

    reference_model = load_export_source(
        export_dir, manifest,
        "validate needs it as the PyTorch reference: restore it there, or re-export from an existing checkpoint "
        f"(`toolkit export --checkpoint DIR --out {export_dir} --force`)")
    dataset, where = _load_data(cfg, manifest, labels)
    y_true = dataset.labels
    log.info("validating %s on %s: %d texts, %d labels, variants %s",
             export_dir, where, len(dataset), len(labels), ", ".join(variants))

    reference, ref_probs, ref_thresholds = _run_reference(reference_model, dataset.texts, labels, y_true, cfg,
                                                          int(manifest.get("max_length") or reference_model.max_length))
    corrupt = _checksum_failures(export_dir, manifest, variants)
    reports = [
        _run_variant(name, cfg, y_true, dataset.texts, labels, reference, ref_probs, ref_thresholds,
                     reference_model, corrupt.get(name, []))
        for name in variants
    ]
    result = ValidationResult(export_dir, where, len(dataset), labels, reference, reports, cfg.gates, skipped)
    _write_reports(result, cfg, manifest)
    for check in result.checks:
        (log.info if check.passed else log.error)("%s %s", "ok  " if check.passed else "FAIL", check.describe())
    if result.failures:
        error = ValidationFailed(
            f"{len(result.failures)} validation check(s) failed: "
            + "; ".join(c.describe() for c in result.failures)
            + (f"; report: {', '.join(map(str, result.reports))}" if result.reports else ""),
            result.failures,
        )
        error.result = result
        raise error
    return result


def format_summary(result: ValidationResult) -> str:
    """One table (PyTorch and each variant) and the list of failed checks."""
    from toolkit.tables import format_table

    rows = [("variant", "macro-F1", "micro-F1", "Δmacro", "max|Δprob|", "agreement", "worst label (ΔF1)",
             "retuned macro-F1", "status")]
    ref = result.reference
    rows.append((REFERENCE, f"{ref.metrics.macro_f1:.4f}", f"{ref.metrics.micro_f1:.4f}", "-", "-", "-", "-",
                 f"{ref.retuned_macro_f1:.4f}", "reference"))
    for v in result.variants:
        p = v.parity
        rows.append((
            v.variant, f"{v.metrics.macro_f1:.4f}", f"{v.metrics.micro_f1:.4f}", f"{-v.macro_drop:+.4f}",
            "n/a" if p.max_abs_diff is None else f"{p.max_abs_diff:.2e}", f"{100 * p.agreement:.2f}%",
            f"{v.worst_label} ({v.worst_delta_f1:+.4f})", f"{v.retuned_macro_f1:.4f}",
            "PASS" if v.passed else "FAIL",
        ))
    for name in result.skipped:
        rows.append((name, *["-"] * 7, "not exported"))
    lines = [f"{result.export} on {result.data}: {result.n_samples} texts, {len(result.labels)} labels",
             format_table(rows)]
    if result.failures:
        lines.append(f"\n{len(result.failures)} failed check(s):")
        lines += [f"  {c.describe()}" for c in result.failures]
    else:
        lines.append(f"\nall {len(result.checks)} checks passed")
    lines += [f"wrote {path}" for path in result.reports]
    return "\n".join(lines)


def format_markdown(result: ValidationResult) -> str:
    """The Markdown report: summary table, per-label F1 table, failures, all checks."""
    lines = [f"# Validation of `{result.export}`", "",
             f"Data: {result.data} ({result.n_samples} texts, {len(result.labels)} labels). "
             f"Status: **{'PASS' if result.passed else 'FAIL'}**.", "", "## Summary", ""]
    header = ["variant", "macro-F1", "micro-F1", "precision", "recall", "exact match", "ROC-AUC micro", "Δmacro",
              "max abs Δprob", "mean abs Δprob", "agreement", "tie flips", "near-threshold", "NaN/Inf",
              "worst label (ΔF1)", "retuned macro-F1", "status"]
    rows = [_md_row(result.reference, None)] + [_md_row(v, v.parity) for v in result.variants]
    lines += _md_table(header, rows)
    lines += ["", "## Per-label F1", ""]
    per_label = [[r.label, str(r.support), f"{r.threshold:.3f}", f"{r.f1_reference:.4f}"]
                 + [_md_label_cell(v.per_label[j]) for v in result.variants]
                 for j, r in enumerate(result.reference.per_label)]
    lines += _md_table(["label", "support", "threshold", REFERENCE] + [v.variant for v in result.variants], per_label)
    lines += ["", "## Failures", ""]
    lines += [f"- {c.describe()}" for c in result.failures] or ["None."]
    lines += ["", "## Checks", ""]
    lines += [f"- {'ok' if c.passed else 'FAIL'}: {c.describe()}" for c in result.checks]
    if result.skipped:
        lines += ["", f"Not exported, skipped: {', '.join(result.skipped)}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- metrics (pure numpy)


def tie_mask(reference: np.ndarray, ref_thresholds, thresholds, tie: float = TIE_BAND) -> np.ndarray:
    """Where the reference sits within `tie` of an unchanged threshold: its decision there is a coin toss.

    Tuned thresholds *are* validation scores (metrics.tune_thresholds picks a score seen in the
    data), so on the split they were tuned on every label has a text exactly on its threshold,
    and rounding, even PyTorch's own with other padding, decides it. A moved threshold is never
    a tie. Keep `tie` at fp32 rounding size: a wider band would excuse real quantization losses.
    """
    reference = np.asarray(reference, dtype=np.float64)
    ref_thresholds = np.broadcast_to(np.asarray(ref_thresholds, dtype=np.float64), reference.shape[1:])
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), reference.shape[1:])
    if tie <= 0:
        return np.zeros(reference.shape, dtype=bool)
    same = np.abs(thresholds - ref_thresholds) <= THRESHOLD_TOLERANCE
    with np.errstate(invalid="ignore"):
        return (np.abs(reference - ref_thresholds) <= tie + _EPS) & same


def decisions(probs: np.ndarray, thresholds) -> np.ndarray:
    """prob >= threshold, per label; NaN decides 'no'."""
    with np.errstate(invalid="ignore"):
        return np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)


def parity_stats(reference: np.ndarray, probs: np.ndarray, ref_thresholds, thresholds,
                 labels: Sequence[str], tie: float = TIE_BAND) -> Parity:
    """Compare a variant's (n, L) probabilities with the reference's.

    Decisions are taken on each side at its own thresholds: the reference at the checkpoint's,
    the variant at those the runtime hands the app. A differing decision where the reference
    sits within `tie` of an unchanged threshold (see tie_mask) counts as agreeing and is
    reported in `tie_flips`.
    """
    reference = np.asarray(reference, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    both = np.isfinite(probs) & np.isfinite(reference)
    delta = np.abs(probs - reference)
    changed = decisions(probs, thresholds) != decisions(reference, ref_thresholds)
    ties = changed & tie_mask(reference, ref_thresholds, thresholds, tie)
    flips, tie_flips = (changed & ~ties).sum(axis=0), ties.sum(axis=0)
    return Parity(
        max_abs_diff=float(delta[both].max()) if both.any() else None,
        mean_abs_diff=float(delta[both].mean()) if both.any() else None,
        agreement=1.0 - float(flips.sum()) / changed.size if changed.size else 1.0,
        flips={name: int(flips[j]) for j, name in enumerate(labels)},
        tie_flips={name: int(tie_flips[j]) for j, name in enumerate(labels)},
        near_threshold=near_threshold_count(probs, thresholds),
        nan_inf=int((~np.isfinite(probs)).sum()),
    )


def near_threshold_count(probs: np.ndarray, thresholds, margin: float = NEAR_THRESHOLD) -> int:
    """Sample x label probabilities within `margin` of their label's threshold (fragile decisions)."""
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return int((np.abs(probs - np.asarray(thresholds, dtype=np.float64)) <= margin + _EPS).sum())


def label_rows(reference: MetricReport, metrics: MetricReport, gated: MetricReport, parity: Parity) -> list[LabelRow]:
    """Per-label F1 of a variant beside the reference's: the delta, and the drop the gate sees."""
    ref_f1, gated_f1 = reference.label_f1(), gated.label_f1()
    return [LabelRow(m.label, m.support, m.threshold, ref_f1[m.label], m.f1, m.f1 - ref_f1[m.label],
                     parity.flips.get(m.label, 0), parity.tie_flips.get(m.label, 0),
                     ref_f1[m.label] - gated_f1[m.label]) for m in metrics.per_label]


def gate_checks(variant: str, gates: Gates, parity: Parity, rows: Sequence[LabelRow], macro_drop: float) -> list[Check]:
    """The gates of one variant on its numbers (manifest and checksum checks are added elsewhere).

    F1 drops are gated as `rows[*].gated_drop` and `macro_drop`: with tie flips (see tie_mask)
    given the reference's decision, so that a text sitting on a tuned threshold cannot fail a
    variant, while the reported F1 stays the one apps really get.

    Why the defaults in `config.Gates` are what they are:
    - nan_inf = 0, every variant: a NaN/Inf probability is a broken decision for any app.
    - fp32 max|Δprob| <= 1e-4: ONNX fp32 runs PyTorch's math in another kernel order (~1e-6 on
      probabilities); 100x headroom, while a wrong weight, op or input moves them by >= 1e-3.
    - fp32 agreement = 100%: same math, same decisions (ties aside); equal decisions imply
      equal F1, so fp32 has no F1-drop gate on top.
    - fp16 macro-F1 drop <= 0.002: fp16 keeps ~3 significant digits (|Δprob| ~1e-3), which flips
      only decisions within ~1e-3 of a threshold: a few per thousand texts, well under 0.002 F1.
    - fp16 label drop <= 0.01: one label has far fewer positives than all labels pooled, so its F1
      is ~5x noisier; more than that is an overflow or a precision-sensitive op left in fp16.
    - int8 macro-F1 drop <= 0.01: dynamic int8 BERT loses well under one F1 point when healthy
      (Q8BERT, Zafrir et al. 2019; onnxruntime's BERT quantization results).
    - int8 label drop <= 0.03: 3x the macro limit for per-label noise, still far below what a
      label quantized into silence loses (its whole F1): the failure this tool exists to catch.
    """
    checks = [Check(variant, "nan_inf", float(parity.nan_inf), 0.0,
                    detail=f"{parity.nan_inf} non-finite probabilities")]
    if variant == "fp32":
        checks.append(Check(variant, "max_abs_diff", _or_inf(parity.max_abs_diff), gates.fp32_max_abs_diff))
        checks.append(Check(variant, "agreement", parity.agreement, gates.fp32_min_agreement, kind="min",
                            detail=f"{sum(parity.flips.values())} flipped decisions, "
                                   f"{sum(parity.tie_flips.values())} more at ties"))
        return checks
    if variant in gates.max_drop_macro:
        ties = sum(parity.tie_flips.values())
        checks.append(Check(variant, "macro_f1_drop", macro_drop, float(gates.max_drop_macro[variant]),
                            detail=f"{ties} tie flip(s) not counted" if ties else ""))
    if variant in gates.max_drop_label:
        limit = float(gates.max_drop_label[variant])
        failing = [r for r in rows if r.gated_drop > limit + _EPS]
        for r in failing:  # one entry per lost label: a rare emotion must be named
            checks.append(Check(variant, "label_f1_drop", r.gated_drop, limit, label=r.label,
                                detail=f"F1 {r.f1_reference:.4f} -> {r.f1:.4f}, {r.flips} flips"
                                       + (f" and {r.tie_flips} at ties" if r.tie_flips else "")))
        if not failing and rows:
            worst = max(rows, key=lambda r: r.gated_drop)
            checks.append(Check(variant, "label_f1_drop", max(0.0, worst.gated_drop), limit, label=worst.label))
    return checks


def manifest_checks(variant: str, labels: Sequence[str], thresholds, ref_labels: Sequence[str],
                    ref_thresholds) -> list[Check]:
    """Labels and thresholds the runtime hands apps must be the checkpoint's, position by position."""
    labels, ref_labels = list(labels), list(ref_labels)
    if len(labels) != len(ref_labels):
        moved = [f"{len(labels)} labels vs {len(ref_labels)}"]
        wrong = max(len(labels), len(ref_labels))
    else:
        moved = [f"{j}: {a!r} should be {b!r}" for j, (a, b) in enumerate(zip(labels, ref_labels)) if a != b]
        wrong = len(moved)
    checks = [Check(variant, "labels", float(wrong), 0.0, detail="; ".join(moved[:4]) or "same order as checkpoint")]
    thresholds = np.asarray(thresholds, dtype=np.float64)
    ref_thresholds = np.asarray(ref_thresholds, dtype=np.float64)
    if thresholds.shape != ref_thresholds.shape:
        checks.append(Check(variant, "thresholds", float("inf"), THRESHOLD_TOLERANCE,
                            detail=f"{thresholds.size} thresholds vs {ref_thresholds.size}"))
        return checks
    diff = np.abs(thresholds - ref_thresholds)
    j = int(np.argmax(diff)) if diff.size else 0
    detail = f"{labels[j]}: {thresholds[j]:.4f} vs checkpoint {ref_thresholds[j]:.4f}" if diff.size else ""
    checks.append(Check(variant, "thresholds", float(diff.max()) if diff.size else 0.0, THRESHOLD_TOLERANCE,
                        detail=detail))
    return checks


# ---------------------------------------------------------------------------- helpers


def _select_variants(cfg: ValidateConfig, manifest: dict) -> tuple[list[str], list[str]]:
    available = manifest.get("variants") or {}
    requested = [getattr(v, "value", str(v)) for v in cfg.variants] if cfg.variants else list(available)
    chosen = [v for v in requested if v in available]
    skipped = [v for v in requested if v not in available]
    if not chosen:
        raise ArtifactError(f"{cfg.export}: has none of the variants {', '.join(requested)} "
                            f"(it has {', '.join(available) or 'none'}); pass --variants or re-export them")
    for name in skipped:
        log.warning("%s: variant %s is not in the export; skipping it (re-export with --variants to add it)",
                    cfg.export, name)
    return chosen, skipped


def _check_provider(provider: str) -> None:
    """Fail before the (slow) PyTorch pass when the requested provider cannot work."""
    from toolkit.runtime import resolve_providers

    resolve_providers(provider)


def _load_data(cfg: ValidateConfig, manifest: dict, labels: list[str]):
    """Texts and ground truth with columns in the manifest's label order, matched by name."""
    from toolkit.config import DataConfig
    from toolkit.data import load_splits, load_validation_split, read_dataset

    if cfg.data is None:
        spec = manifest.get("data")
        if not spec:
            raise DataError(f"{cfg.export / artifacts.MANIFEST}: records no training data to rebuild the validation "
                            "split from; pass --data PATH")
        dataset = load_validation_split(spec, labels)
        where = f"{spec.get('path')} (validation split recorded at training)"
    else:
        path = Path(cfg.data)
        if path.is_dir():
            splits = load_splits(DataConfig(path=path, format=cfg.format, text_column=cfg.text_column,
                                             labels_column=cfg.labels_column))
            chosen = {"train": splits.train, "dev": splits.validation, "validation": splits.validation,
                      "test": splits.test}.get(cfg.split)
            if chosen is None:
                raise DataError(f"{path}: has no {cfg.split!r} split; choose train, dev or test")
            dataset, where = chosen, f"{path} ({cfg.split})"
        else:
            dataset, where = read_dataset(path, cfg.format, cfg.text_column, cfg.labels_column), str(path)
        dataset = _match_labels(dataset, labels)
    if cfg.max_samples is not None and cfg.max_samples < len(dataset):
        dataset = dataset.subset(np.arange(cfg.max_samples))
        where += f", first {cfg.max_samples}"
    return dataset, where


def _match_labels(dataset, labels: list[str]):
    """Columns of `dataset` reordered to `labels` by name; extra data labels dropped, missing ones an error."""
    from toolkit.data import LabeledTexts

    missing = [n for n in labels if n not in dataset.label_names]
    if missing:
        raise DataError(f"{dataset.source}: has no column for model label(s) {', '.join(missing)} "
                        f"(data labels: {', '.join(dataset.label_names)}); pass data annotated with every model label")
    extra = [n for n in dataset.label_names if n not in labels]
    if extra:
        log.info("%s: ignoring %d label(s) the model does not have: %s", dataset.source, len(extra), ", ".join(extra))
    order = [dataset.label_names.index(n) for n in labels]
    return LabeledTexts(dataset.texts, dataset.labels[:, order], list(labels), dataset.source)


def _run_reference(loaded, texts: list[str], labels: list[str], y_true: np.ndarray, cfg: ValidateConfig,
                   max_length: int):
    """PyTorch probabilities and thresholds with columns in the manifest's label order (by name).

    Texts are truncated at the export's `max_length` (what the runtime does), so parity compares
    the graphs on the same tokens even when `toolkit export --max-length` changed it.
    """
    from toolkit.modeling import predict_proba

    ref_labels = list(loaded.label_names)
    if sorted(ref_labels) == sorted(labels):
        order = [ref_labels.index(n) for n in labels]
    else:  # different label sets: only positions can be compared (the `labels` check reports it)
        log.warning("manifest labels %s are not the checkpoint's %s; comparing columns by position", labels, ref_labels)
        order = list(range(len(ref_labels)))
    if len(ref_labels) != len(labels):  # known before the (slow) PyTorch pass
        raise ArtifactError(f"{cfg.export / artifacts.MANIFEST}: {len(labels)} labels but the checkpoint has "
                            f"{len(ref_labels)} outputs; re-run `toolkit export --force`")
    device = _torch_device(cfg.provider)
    started = time.perf_counter()
    probs = np.zeros((len(texts), len(ref_labels)), dtype=np.float32)
    for index in _batches(texts, cfg.batch_size, desc=REFERENCE):
        probs[index] = predict_proba(loaded, [texts[i] for i in index], batch_size=len(index), device=device,
                                     max_length=max_length)
    seconds = time.perf_counter() - started
    probs, thresholds = probs[:, order], np.asarray(loaded.thresholds, dtype=np.float64)[order]
    metrics = compute_metrics(y_true, probs, thresholds, labels)
    report = VariantReport(
        variant=REFERENCE, provider=device, seconds=seconds, metrics=metrics,
        retuned_macro_f1=_retuned_macro_f1(y_true, probs, labels),
        near_threshold=near_threshold_count(probs, thresholds),
        per_label=[LabelRow(m.label, m.support, m.threshold, m.f1, m.f1, 0.0, 0, 0, 0.0) for m in metrics.per_label],
    )
    return report, probs, thresholds


def _run_variant(name: str, cfg: ValidateConfig, y_true: np.ndarray, texts: list[str], labels: list[str],
                 reference: VariantReport, ref_probs: np.ndarray, ref_thresholds: np.ndarray, reference_model,
                 corrupt: list[Check]) -> VariantReport:
    """Run one variant through the app runtime and compare it with the reference."""
    from toolkit.runtime import EmotionClassifier

    # Checksums were checked above (a mismatch is a failed check, not an abort), so the runtime
    # skips them and the report still shows what the modified file does.
    classifier = EmotionClassifier.load(cfg.export, variant=name, provider=cfg.provider,
                                        max_batch_size=cfg.batch_size, verify=False)
    started = time.perf_counter()
    probs = np.zeros((len(texts), len(classifier.labels)), dtype=np.float32)
    for index in _batches(texts, cfg.batch_size, desc=name):
        probs[index] = classifier.predict_proba([texts[i] for i in index])
    seconds = time.perf_counter() - started
    thresholds = np.asarray(classifier.thresholds, dtype=np.float64)

    checks = list(corrupt)
    checks += manifest_checks(name, classifier.labels, thresholds, reference_model.label_names,
                              reference_model.thresholds)
    parity = parity_stats(ref_probs, probs, ref_thresholds, thresholds, labels)
    clean = _finite(probs)
    metrics = compute_metrics(y_true, clean, thresholds, labels)
    ties = tie_mask(ref_probs, ref_thresholds, thresholds)
    gated_decisions = np.where(ties, decisions(ref_probs, ref_thresholds), decisions(probs, thresholds))
    gated = compute_metrics(y_true, gated_decisions.astype(np.float64), 0.5, labels)
    rows = label_rows(reference.metrics, metrics, gated, parity)
    worst = min(rows, key=lambda r: r.delta_f1)
    gated_macro_drop = reference.metrics.macro_f1 - gated.macro_f1
    checks += gate_checks(name, cfg.gates, parity, rows, gated_macro_drop)
    return VariantReport(
        variant=name, provider=str(classifier.provider), seconds=seconds, metrics=metrics,
        retuned_macro_f1=_retuned_macro_f1(y_true, clean, labels), near_threshold=parity.near_threshold,
        parity=parity, per_label=rows, macro_drop=reference.metrics.macro_f1 - metrics.macro_f1,
        gated_macro_drop=gated_macro_drop, worst_label=worst.label, worst_delta_f1=worst.delta_f1, checks=checks,
    )


def _checksum_failures(export_dir: Path, manifest: dict, variants: list[str]) -> dict[str, list[Check]]:
    """Failed 'checksum' checks keyed by variant: a variant's own file, or a shared one (tokenizer,
    config) charged to every variant since each one ships with it. Files of variants not being
    validated are not read (hundreds of MB for BERT-base)."""
    owners = {entry.get("file"): name for name, entry in (manifest.get("variants") or {}).items()}
    out: dict[str, list[Check]] = {}
    for rel, entry in (manifest.get("files") or {}).items():
        owner = owners.get(rel, "*")
        if owner != "*" and owner not in variants:
            continue
        path = export_dir / rel
        if not path.is_file():
            problem = "missing"
        elif artifacts.sha256_file(path) != entry.get("sha256"):
            problem = "sha256 differs from the manifest: modified or corrupt"
        else:
            continue
        for variant in ([owner] if owner != "*" else variants):
            out.setdefault(variant, []).append(Check(variant, "checksum", 1.0, 0.0, label=rel, detail=problem))
    return out


def _write_reports(result: ValidationResult, cfg: ValidateConfig, manifest: dict) -> None:
    report = result.to_dict()
    if cfg.report:
        _write(cfg.report, lambda p: artifacts.write_json(p, report))
        result.reports.append(Path(cfg.report))
    if cfg.markdown:
        _write(cfg.markdown, lambda p: _write_text(p, format_markdown(result)))
        result.reports.append(Path(cfg.markdown))
    manifest = dict(manifest, validation=report)
    _write(result.export / artifacts.MANIFEST, lambda p: artifacts.write_manifest(result.export, manifest))


def _md_row(v: VariantReport, p: Optional[Parity]) -> list[str]:
    m = v.metrics
    auc = "n/a" if m.roc_auc_micro is None else f"{m.roc_auc_micro:.4f}"
    base = [v.variant, f"{m.macro_f1:.4f}", f"{m.micro_f1:.4f}", f"{m.micro_precision:.4f}", f"{m.micro_recall:.4f}",
            f"{m.exact_match:.4f}", auc]
    if p is None:
        return base + ["-"] * 5 + [str(v.near_threshold), "-", "-", f"{v.retuned_macro_f1:.4f}", "reference"]
    return base + [f"{-v.macro_drop:+.4f}", _num(p.max_abs_diff), _num(p.mean_abs_diff), f"{100 * p.agreement:.2f}%",
                   str(sum(p.tie_flips.values())), str(p.near_threshold), str(p.nan_inf),
                   f"{v.worst_label} ({v.worst_delta_f1:+.4f})",
                   f"{v.retuned_macro_f1:.4f}", "PASS" if v.passed else "FAIL"]


def _md_label_cell(row: LabelRow) -> str:
    ties = f", {row.tie_flips} at ties" if row.tie_flips else ""
    return f"{row.f1:.4f} ({row.delta_f1:+.4f}, {row.flips} flips{ties})"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def _batches(texts: Sequence[str], batch_size: int, desc: str):
    """Index arrays of length-sorted batches (less padding), with a progress bar on a terminal."""
    from tqdm.auto import tqdm

    order = np.argsort([len(t) for t in texts], kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return tqdm(batches, desc=desc, unit="batch", leave=False, disable=None)


def _retuned_macro_f1(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> float:
    return compute_metrics(y_true, probs, tune_thresholds(y_true, probs), labels).macro_f1


def _finite(probs: np.ndarray) -> np.ndarray:
    """NaN -> 0 and ±Inf -> 1/0 so quality metrics stay defined; the nan_inf gate has counted them."""
    return np.nan_to_num(probs.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)


def _torch_device(provider: str) -> str:
    if provider in ("cuda", "tensorrt", "auto"):
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


def _or_inf(value: Optional[float]) -> float:
    return float("inf") if value is None else value


def _num(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    if not np.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e6 else f"{value:.2e}"


def _write(path: Path, writer) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer(Path(path))
    except OSError as e:
        raise ArtifactError(f"{path}: cannot write the validation report ({e.strerror}); choose a writable path") from e


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
