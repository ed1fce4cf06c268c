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

Evidence: a certificate names the texts it rests on (their fingerprint) and is recorded in the
manifest's `validation_status`, which `variant="auto"` trusts, only when they are enough:
- by default the certify part of the recorded validation split (data.split_search_certify),
  checked against the fingerprint training recorded: export's int8 search selected on the other
  part; data the user passes is used whole, unless it is that very validation/gate data;
- a label with fewer positives than its per-label gate can resolve (parity.min_label_positives)
  is "not enough evidence", never passed, and counted;
- a `--max-samples` run, or texts where fewer than half the labels have enough positives, is a
  smoke test: it prints its verdict and records failures, never a pass.

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
from toolkit.config import Gates, Provider, ValidateConfig
from toolkit.errors import ArtifactError, DataError, ValidationFailed
from toolkit.metrics import MetricReport, compute_metrics, tune_thresholds
from toolkit.openvino_session import cpu_signature  # the CPU a verdict holds for (OpenVINO variants)
from toolkit.parity import NEAR_THRESHOLD, Check, LabelRow, Parity, compare, manifest_checks, near_threshold_count
from toolkit.data import describe_fingerprint
from toolkit.validate_report import format_markdown, format_summary

__all__ = ["REFERENCE", "Evidence", "ValidationResult", "VariantReport", "format_markdown", "format_summary", "validate_export"]

log = logging.getLogger(__name__)

REFERENCE = "pytorch"


@dataclass
class Evidence:
    """Which texts a validation ran on and whether they can certify."""

    fingerprint: dict  # of the texts scored (data.fingerprint)
    part: str  # "certify" (the half no int8 search selected on) or "all"
    source_fingerprint: dict  # of the whole dataset they came from
    restricted: str = ""  # why this run cannot certify (--max-samples, too few positives); "" when it can


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
    insufficient: dict = field(default_factory=dict)  # label -> positives, too few for its F1 gate: not enough evidence
    restricted: str = ""  # why this variant's verdict certifies nothing (smoke test); "" when it certifies
    batch_dependence: Optional[dict] = None  # toolkit.batch_dependence: alone vs batched, max |Δprob|, flips

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
    evidence: Optional[Evidence] = None
    truncation: Optional[dict] = None  # texts over the export's max_length (runtime.count_truncated)

    @property
    def restricted(self) -> str:
        """Why this run is a smoke test and certifies nothing ("" when it certifies)."""
        return self.evidence.restricted if self.evidence else ""

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
            out["certified"] = v.passed and not v.restricted
            return out

        return {
            "created": artifacts.utc_now(),
            "export": str(self.export),
            "data": self.data,
            "n_samples": self.n_samples,
            "evidence": asdict(self.evidence) if self.evidence else None,
            "truncation": self.truncation,
            "certificate": not self.restricted,
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
    dataset, where, evidence = _load_data(cfg, manifest, labels)
    y_true = dataset.labels
    log.info("validating %s on %s: %d texts (%s), %d labels, variants %s", export_dir, where, len(dataset),
             describe_fingerprint(evidence.fingerprint), len(labels), ", ".join(variants))

    max_length = int(manifest.get("max_length") or reference_model.max_length)
    reference, ref_probs, ref_thresholds = _run_reference(reference_model, dataset.texts, labels, y_true, cfg,
                                                          max_length)
    corrupt = _checksum_failures(export_dir, manifest, variants)
    reports = [
        _run_variant(name, cfg, y_true, dataset.texts, labels, reference, ref_probs, ref_thresholds,
                     reference_model, corrupt.get(name, []))
        for name in variants
    ]
    for report in reports:
        report.restricted = evidence.restricted or _too_few_positives(report, labels, cfg.gates)
    from toolkit.runtime import count_truncated

    truncation = count_truncated(reference_model.tokenizer, dataset.texts, max_length)
    result = ValidationResult(export_dir, where, len(dataset), labels, reference, reports, cfg.gates, skipped,
                              evidence=evidence, truncation=truncation.to_dict())
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
    """Texts and ground truth with columns in the manifest's label order (matched by name), where they
    come from, and the Evidence they make: the certify part when the data is the validation split or
    the int8 gate data (the search selected on their other part), --max-samples marking a smoke test."""
    from toolkit.config import DataConfig
    from toolkit.data import fingerprint, load_eval_data, split_search_certify

    spec = manifest.get("data")
    if cfg.data is None and not spec:
        raise DataError(f"{cfg.export / artifacts.MANIFEST}: records no training data to rebuild the validation "
                        "split from; pass --data PATH")
    data_cfg = None if cfg.data is None else DataConfig(
        path=Path(cfg.data), format=cfg.format, text_column=cfg.text_column, labels_column=cfg.labels_column,
        label_columns=cfg.label_columns, ignore_columns=cfg.ignore_columns, id_column=cfg.id_column)
    # data annotated with more labels than the model's can still check it: extra columns are dropped
    dataset, where = load_eval_data(data_cfg, cfg.split, spec, labels, drop_extra=True)
    source = fingerprint(dataset)
    selected_on = [((spec or {}).get("fingerprints") or {}).get("validation"),
                   ((((manifest.get("variants") or {}).get("int8") or {}).get("settings") or {}).get("gate") or {})
                   .get("fingerprint")]
    part = "all"
    if data_cfg is None or source in [fp for fp in selected_on if fp]:
        dataset, part = split_search_certify(dataset)[1], "certify"
        where += ", certify part (texts export's int8 search did not select on)"
    restricted = ""
    if cfg.max_samples is not None and cfg.max_samples < len(dataset):
        dataset = dataset.subset(np.arange(cfg.max_samples))
        where += f", first {cfg.max_samples}"
        restricted = f"--max-samples {cfg.max_samples}: a smoke test"
    if not len(dataset):
        raise DataError(f"{where}: no texts to validate on; pass more labelled texts with --data PATH")
    return dataset, where, Evidence(fingerprint(dataset), part, source, restricted)


def _too_few_positives(report: "VariantReport", labels: list[str], gates: Gates) -> str:
    """Why a variant's verdict cannot certify: fewer than half the labels have the positives its label gate needs."""
    from toolkit.parity import min_label_positives

    if len(report.insufficient) * 2 <= len(labels):
        return ""
    return (f"only {len(labels) - len(report.insufficient)} of {len(labels)} labels have the "
            f"{min_label_positives(report.variant, gates)} positives {report.variant}'s label gate needs: too few texts")


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
    judged = compare(name, y_true, ref_probs, ref_thresholds, reference.metrics, probs, thresholds, labels, cfg.gates)
    parity, metrics, rows, gated_macro_drop = judged.parity, judged.metrics, judged.rows, judged.gated_macro_drop
    clean = _finite(probs)
    worst = min(rows, key=lambda r: r.delta_f1)
    checks += judged.checks
    # batch dependence: each text alone vs the batches above; a decision batching flips fails it
    from toolkit.batch_dependence import measure_batch_dependence

    batching = measure_batch_dependence(classifier.predict_proba, texts, thresholds, labels, name, cfg.batch_size,
                                        batched=probs)
    checks.append(batching.check())
    support = {r.label: r.support for r in rows}
    return VariantReport(
        variant=name, provider=str(classifier.provider), seconds=seconds, metrics=metrics,
        retuned_macro_f1=_retuned_macro_f1(y_true, clean, labels), near_threshold=parity.near_threshold,
        parity=parity, per_label=rows, macro_drop=reference.metrics.macro_f1 - metrics.macro_f1,
        gated_macro_drop=gated_macro_drop, worst_label=worst.label, worst_delta_f1=worst.delta_f1, checks=checks,
        insufficient={label: support[label] for label in judged.insufficient},
        batch_dependence=batching.to_dict(),
    )


def _checksum_failures(export_dir: Path, manifest: dict, variants: list[str]) -> dict[str, list[Check]]:
    """Failed 'checksum' checks keyed by variant: a variant's own file, or a shared one (tokenizer,
    config) charged to every variant since each one ships with it. Files of variants not being
    validated are not read (hundreds of MB for BERT-base)."""
    from toolkit.runtime import variant_files

    # a variant owns its model file (and an OpenVINO IR's .bin)
    owners = {rel: name for name, entry in (manifest.get("variants") or {}).items() for rel in variant_files(entry)}
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
    # The latest verdict per variant, kept across runs that validate a subset (--variants): what
    # `EmotionClassifier.load(variant="auto")` reads to never pick a variant that failed.
    # A smoke test's pass certifies nothing: it leaves the variant's status as it was (and records
    # 'passed': None with the reason, for a variant that had none); its failures are recorded.
    status = dict(manifest.get(artifacts.VALIDATION_STATUS) or {})
    evidence = result.evidence
    for v in result.variants:
        if v.passed and v.restricted and v.variant in status:
            continue
        status[v.variant] = {
            "passed": None if (v.passed and v.restricted) else v.passed,
            "failures": [c.describe() for c in v.checks if not c.passed], "validated": report["created"],
            "data": result.data, "fingerprint": evidence.fingerprint if evidence else None,
            "part": evidence.part if evidence else None, "provider": v.provider, "cpu": cpu_signature(),
            "not_enough_evidence": dict(v.insufficient), **({"restricted": v.restricted} if v.restricted else {})}
    key = "validation" if not result.restricted else "validation_smoke"
    manifest = dict(manifest, **{key: report, artifacts.VALIDATION_STATUS: status})
    _write(result.export / artifacts.MANIFEST, lambda p: artifacts.write_manifest(result.export, manifest))


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
    """The reference's device: the GPU when there is one, unless the variants run on CPU."""
    from toolkit.modeling import pick_device

    return Provider.CPU.value if provider == Provider.CPU else pick_device("auto")


def _write(path: Path, writer) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer(Path(path))
    except OSError as e:
        raise ArtifactError(f"{path}: cannot write the validation report ({e.strerror}); choose a writable path") from e


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
