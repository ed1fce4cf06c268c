"""`toolkit validate`: metrics on hand-computed cases, gate boundaries, reports, exit codes, sabotages.

The sabotage tests break a private copy of the tiny export the way a real mistake would
(perturbed weights, edited thresholds, a permuted label list) and check that validation fails
naming the variant and the check. Where an ONNX file is edited the test re-writes its checksums
in the manifest, so the failure comes from the numbers, not from the checksum check.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit import artifacts
from toolkit.cli import cli
from toolkit.config import Gates, ValidateConfig, Variant
from toolkit.errors import DataError, ModelError, ProviderError, ValidationFailed
from toolkit.parity import Check, LabelRow, Parity, gate_checks, manifest_checks, near_threshold_count, parity_stats
from toolkit.validate import format_markdown, format_summary, validate_export

LABELS = ["a", "b", "c"]
LABELS_DEMO = ["anger", "fear", "joy", "sadness", "surprise"]


# ---------------------------------------------------------------------------- metrics by hand


def test_parity_stats_hand_computed():
    ref = np.array([[0.10, 0.60, 0.30],
                    [0.50, 0.49, 0.90],
                    [0.70, 0.20, 0.41]])
    probs = np.array([[0.10, 0.58, 0.30],   # |Δ| 0, .02, 0
                      [0.49, 0.51, 0.90],   # |Δ| .01, .02, 0 ; a flips (0.49 < 0.5), b flips (0.51 >= 0.5)
                      [0.70, np.nan, 0.41]])  # NaN decides 'no' (same as ref 0.20)
    thr = np.array([0.5, 0.5, 0.4])
    p = parity_stats(ref, probs, thr, thr, LABELS, tie=0.0)
    assert p.max_abs_diff == pytest.approx(0.02, abs=1e-12)
    assert p.mean_abs_diff == pytest.approx((0.02 + 0.01 + 0.02) / 8, abs=1e-12)  # 8 finite pairs
    assert p.flips == {"a": 1, "b": 1, "c": 0}
    assert p.agreement == pytest.approx(7 / 9, abs=1e-12)
    assert p.nan_inf == 1
    # within 0.02 of the threshold: 0.49(a), 0.51(b), 0.41(c), and 0.58? no (0.08); 0.30 vs 0.4? no
    assert p.near_threshold == 3


def test_parity_uses_each_sides_thresholds_and_counts_inf():
    ref = np.array([[0.6, 0.2]])
    probs = np.array([[0.6, np.inf]])
    p = parity_stats(ref, probs, [0.5, 0.5], [0.7, 0.5], ["x", "y"], tie=0.0)  # the variant's threshold for x moved
    assert p.flips == {"x": 1, "y": 1}  # x: 0.6 < 0.7 now 'no'; y: inf >= 0.5 'yes' vs ref 'no'
    assert p.agreement == 0.0
    assert p.nan_inf == 1
    assert p.max_abs_diff == 0.0  # only the finite pair counts


def test_parity_identical_is_perfect():
    ref = np.random.default_rng(0).random((50, 4))
    p = parity_stats(ref, ref.copy(), 0.5, 0.5, list("wxyz"))
    assert (p.max_abs_diff, p.mean_abs_diff, p.agreement, p.nan_inf) == (0.0, 0.0, 1.0, 0)
    assert sum(p.flips.values()) == 0


def test_parity_ties_at_a_threshold_do_not_count_as_flips():
    # tuned thresholds are validation scores: the reference sits on them (to rounding)
    ref = np.array([[0.30, 0.70], [0.40, 0.20], [0.50, 0.65], [0.30 - 5e-7, 0.1]])
    probs = ref + np.array([[-3e-7, 0.0], [0.0, 0.0], [0.0, -0.2], [0.01, 0.0]])
    thr = np.array([0.30, 0.60])
    p = parity_stats(ref, probs, thr, thr, ["x", "y"])  # default band TIE_BAND = 1e-6
    assert p.tie_flips == {"x": 2, "y": 0}  # rows 0 and 3: the reference sat within 1e-6 of 0.30
    assert p.flips == {"x": 0, "y": 1}  # row 2: 0.65 -> 0.45 across 0.60 is real
    assert p.agreement == pytest.approx(7 / 8, abs=1e-12)
    strict = parity_stats(ref, probs, thr, thr, ["x", "y"], tie=0.0)  # every flip counts
    assert (strict.flips, strict.tie_flips) == ({"x": 2, "y": 1}, {"x": 0, "y": 0})
    moved = parity_stats(ref, probs, thr, thr + [1e-3, 0], ["x", "y"])  # a moved threshold is never a tie
    assert moved.tie_flips == {"x": 0, "y": 0}
    assert moved.flips["x"] == 2  # rows 0 and 3 now count: 0.2999997 < 0.301 and 0.3099995 >= 0.301


def test_gate_ignores_tie_flips_but_reports_them():
    rows = [LabelRow("a", 200, 0.3, 0.8, 0.7, -0.1, 0, 1, 0.0)]  # one tie flip cost 0.1 F1 (enough positives to gate)
    parity = Parity(1e-3, 1e-4, 1.0, {"a": 0}, {"a": 1}, 0, 0)
    checks = gate_checks("fp16", Gates(), parity, rows, 0.0)
    assert _failed(checks) == set()
    assert next(c for c in checks if c.check == "macro_f1_drop").detail == "1 tie flip(s) not counted"


def test_near_threshold_margin_is_inclusive():
    probs = np.array([[0.48, 0.52, 0.53, 0.47, 0.5]])
    assert near_threshold_count(probs, 0.5) == 3
    assert near_threshold_count(probs, 0.5, margin=0.03) == 5
    assert near_threshold_count(np.array([[np.nan, 0.5]]), 0.5) == 1


# ---------------------------------------------------------------------------- gates


def _parity(max_abs_diff=0.0, agreement=1.0, nan_inf=0) -> Parity:
    return Parity(max_abs_diff, max_abs_diff, agreement, {l: 0 for l in LABELS}, {l: 0 for l in LABELS}, 0, nan_inf)


def _rows(deltas, support=1000) -> list[LabelRow]:  # 1000 positives: enough evidence for every label gate
    return [LabelRow(l, support, 0.5, 0.8, 0.8 + d, d, 0, 0, -d) for l, d in zip(LABELS, deltas)]


def _failed(checks) -> set:
    return {(c.variant, c.check, c.label) for c in checks if not c.passed}


def _gate(variant, parity=None, deltas=(0, 0, 0), macro_drop=0.0, gates=None) -> set:
    return _failed(gate_checks(variant, gates or Gates(), parity or _parity(), _rows(deltas), macro_drop))


def test_fp32_gates_boundaries():
    assert _gate("fp32", _parity(1e-4, 1.0)) == set()
    assert _gate("fp32", _parity(1.01e-4, 1.0)) == {("fp32", "max_abs_diff", None)}
    assert _gate("fp32", _parity(0.0, 1 - 1 / 3000)) == {("fp32", "agreement", None)}
    assert _gate("fp32", _parity(None, 1.0)) == {("fp32", "max_abs_diff", None)}  # no finite probability at all
    assert _gate("fp32", _parity(nan_inf=3)) == {("fp32", "nan_inf", None)}
    # fp32 is held to parity; F1 follows from equal decisions and is not gated again
    assert {c.check for c in gate_checks("fp32", Gates(), _parity(), _rows([-0.5, 0, 0]), 0.2)} == {
        "nan_inf", "max_abs_diff", "agreement"}


def test_fp16_gates_boundaries():
    # exactly at the limits passes even though 0.8 - 0.798 is 0.0020000000000000018 in floats
    assert _gate("fp16", deltas=(-0.01, 0, 0.02), macro_drop=0.8 - 0.798) == set()
    assert _gate("fp16", macro_drop=0.0021) == {("fp16", "macro_f1_drop", None)}
    assert _gate("fp16", deltas=(-0.0101, -0.2, 0.0)) == {  # every lost label is named
        ("fp16", "label_f1_drop", "a"), ("fp16", "label_f1_drop", "b")}
    assert _gate("fp16", _parity(nan_inf=1)) == {("fp16", "nan_inf", None)}
    # fp16 has no |Δprob| or agreement gate: quality is what it must keep
    assert _gate("fp16", _parity(0.05, 0.9)) == set()


def test_labels_with_too_few_positives_are_not_enough_evidence_never_passed():
    from toolkit.parity import insufficient_labels, min_label_positives

    assert (min_label_positives("int8", Gates()), min_label_positives("fp16", Gates())) == (34, 100)
    assert min_label_positives("fp32", Gates()) == 0
    # 10 positives: one flip moves F1 by up to 2/11 = 0.18; a drop of 0.1 is within it, 0.5 is not
    rows = [LabelRow("a", 10, 0.5, 0.8, 0.7, -0.1, 1, 0, 0.1), LabelRow("b", 10, 0.5, 0.8, 0.3, -0.5, 5, 0, 0.5),
            LabelRow("c", 34, 0.5, 0.8, 0.8, 0.0, 0, 0, 0.0)]
    checks = gate_checks("int8", Gates(), _parity(), rows, 0.0)
    assert _failed(checks) == {("int8", "label_f1_drop", "b")}  # far beyond noise: a failure all the same
    assert {c.label for c in checks if c.check == "label_f1_drop"} == {"b"}  # 'a' is neither passed nor failed
    assert insufficient_labels("int8", Gates(), rows) == ["a"]
    # with every label short of evidence and none failing, no label check passes at all
    quiet = [LabelRow(l, 5, 0.5, 0.8, 0.8, 0.0, 0, 0, 0.0) for l in LABELS]
    assert not [c for c in gate_checks("int8", Gates(), _parity(), quiet, 0.0) if c.check == "label_f1_drop"]


def test_int8_gates_boundaries_and_custom_limits():
    assert _gate("int8", deltas=(-0.03, 0, 0), macro_drop=0.01) == set()
    assert _gate("int8", deltas=(-0.031, 0, 0), macro_drop=0.0101) == {
        ("int8", "macro_f1_drop", None), ("int8", "label_f1_drop", "a")}
    assert _gate("int8", _parity(nan_inf=2)) == {("int8", "nan_inf", None)}
    loose = Gates(max_drop_macro={"int8": 0.05}, max_drop_label={"int8": 0.1})
    assert _gate("int8", deltas=(-0.09, 0, 0), macro_drop=0.04, gates=loose) == set()


def test_check_describe_names_variant_check_value_limit():
    c = Check("int8", "label_f1_drop", 0.25, 0.03, label="fear", detail="F1 0.8 -> 0.55")
    assert not c.passed
    assert c.describe() == "int8 label_f1_drop[fear]: 0.2500 > limit 0.0300 (F1 0.8 -> 0.55)"
    assert Check("fp32", "agreement", 0.99, 1.0, kind="min").describe() == "fp32 agreement: 0.9900 < limit 1"
    assert not Check("fp32", "max_abs_diff", math.nan, 1e-4).passed


def test_manifest_checks():
    assert _failed(manifest_checks("fp16", LABELS, [0.3, 0.4, 0.5], LABELS, [0.3, 0.4, 0.5])) == set()
    swapped = manifest_checks("fp16", ["b", "a", "c"], [0.3, 0.4, 0.5], LABELS, [0.3, 0.4, 0.5])
    assert _failed(swapped) == {("fp16", "labels", None)}
    assert swapped[0].value == 2
    moved = manifest_checks("int8", LABELS, [0.3, 0.45, 0.5], LABELS, [0.3, 0.4, 0.5])
    assert _failed(moved) == {("int8", "thresholds", None)}
    assert moved[1].value == pytest.approx(0.05, abs=1e-12)
    assert "b: 0.4500 vs checkpoint 0.4000" in moved[1].detail


# ---------------------------------------------------------------------------- on the tiny export


def _cfg(export: Path, **kw) -> ValidateConfig:
    return ValidateConfig(export=export, provider="cpu", **kw)


def _variants(export: Path) -> list[str]:
    return list(artifacts.read_manifest(export)["variants"])


@pytest.fixture(scope="module")
def passing(tiny_export_session, tmp_path_factory):
    """One validation of an untouched copy of the tiny export, with both reports.

    A gate failure is kept, not raised, so that the report tests run either way; whether every
    gate passes is test_tiny_export_passes_every_gate's question.
    """
    root = tmp_path_factory.mktemp("validate")
    export = root / "export"
    shutil.copytree(tiny_export_session, export)
    try:
        result = validate_export(_cfg(export, report=root / "r" / "report.json", markdown=root / "report.md"))
    except ValidationFailed as e:
        result = e.result
    return result, export, root


def test_tiny_export_passes_every_gate(passing):
    result, export, _ = passing
    assert result.passed, format_summary(result)
    assert [v.variant for v in result.variants] == _variants(export)
    # demo corpus 3000 texts, validation fraction 0.1: 300, of which the certify part holds 160
    assert result.n_samples == 160 and result.evidence.part == "certify"
    assert result.evidence.source_fingerprint["rows"] == 300 and result.evidence.fingerprint["rows"] == 160
    assert result.reference.metrics.macro_f1 > 0.5  # a real decision boundary, not chance
    fp32 = result.variants[0]
    assert fp32.variant == "fp32"
    assert fp32.parity.max_abs_diff < 1e-5
    assert fp32.parity.agreement == 1.0
    assert fp32.parity.nan_inf == 0
    # equal decisions (tie flips given the reference's decision, as the gate counts them): equal F1
    assert fp32.gated_macro_drop == pytest.approx(0.0, abs=1e-12)
    assert abs(fp32.macro_drop) < 0.01
    for v in result.variants:
        assert v.retuned_macro_f1 >= v.metrics.macro_f1 - 1e-9  # tuned on this data: never worse
        label_gate = {"label_f1_drop"} if len(v.insufficient) < len(LABELS_DEMO) else set()
        gated = {"max_abs_diff", "agreement"} if v.variant == "fp32" else {"macro_f1_drop"} | label_gate
        # batch_flips: toolkit.batch_dependence, each text alone vs in validate's batches
        assert {c.check for c in v.checks} == {"labels", "thresholds", "nan_inf", "batch_flips"} | gated
        assert v.batch_dependence["flips"] == 0 and v.batch_dependence["texts"] == result.n_samples


def test_summary_table_and_reports(passing):
    result, export, root = passing
    summary = format_summary(result)
    lines = summary.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("variant "))  # after the data/evidence lines
    header = lines[at]
    for column in ("macro-F1", "micro-F1", "Jaccard", "Δmacro", "max|Δprob|", "agreement", "worst label",
                   "retuned macro-F1", "status"):
        assert column in header
    ref_row = lines[at + 2].split()
    assert ref_row[:4] == ["pytorch", f"{result.reference.metrics.macro_f1:.4f}",
                           f"{result.reference.metrics.micro_f1:.4f}", f"{result.reference.metrics.jaccard_samples:.4f}"]
    assert [line.split()[0] for line in lines[at + 2:at + 2 + 1 + len(result.variants)]] == \
        ["pytorch"] + [v.variant for v in result.variants]
    assert (f"all {len(result.checks)} checks passed" in summary) == result.passed

    report = json.loads((root / "r" / "report.json").read_text())
    assert set(report) >= {"export", "data", "n_samples", "labels", "gates", "passed", "reference", "variants",
                           "failures", "versions"}
    assert report["passed"] is result.passed
    assert len(report["failures"]) == len(result.failures)
    fp32 = report["variants"]["fp32"]
    assert set(fp32) >= {"metrics", "parity", "per_label", "retuned_macro_f1", "macro_drop", "worst_label", "checks"}
    assert set(fp32["parity"]) == {"max_abs_diff", "mean_abs_diff", "agreement", "flips", "tie_flips",
                                   "near_threshold", "nan_inf"}
    assert set(fp32["parity"]["flips"]) == set(report["labels"])
    assert fp32["parity"]["max_abs_diff"] == pytest.approx(result.variants[0].parity.max_abs_diff, rel=1e-12)

    md = (root / "report.md").read_text()
    assert "| variant | macro-F1 | micro-F1 |" in md
    assert "| pytorch |" in md and "| fp32 |" in md
    assert "## Per-label F1" in md and "## Failures" in md
    assert md == format_markdown(result)


def test_manifest_records_validation_and_checksums_still_hold(passing):
    result, export, _ = passing
    manifest = artifacts.read_manifest(export)
    assert manifest["validation"]["passed"] is result.passed
    assert manifest["validation"]["n_samples"] == result.n_samples
    assert set(manifest["validation"]["variants"]) == set(manifest["variants"])
    artifacts.verify_checksums(export, manifest)  # manifest.json is outside files{}


def _rewrite_checksums(export: Path) -> None:
    manifest = artifacts.read_manifest(export)
    manifest["files"] = artifacts.file_checksums(export)
    for entry in manifest["variants"].values():
        entry["sha256"] = artifacts.sha256_file(export / entry["file"])
    artifacts.write_manifest(export, manifest)


def _edit_bias(path: Path, edit) -> None:
    """Apply `edit(bias ndarray) -> ndarray` to the classifier bias: the float (L,) initializer of the
    node producing the logits (an Add, or a fused Gemm/quantized MatMul), walking back over Casts."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {i.name: i for i in graph.initializer}
    n_labels = graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    node = producers[graph.output[0].name]
    while node.op_type in ("Cast", "Identity"):
        node = producers[node.input[0]]
    arrays = {i: numpy_helper.to_array(inits[i]) for i in node.input if i in inits}
    name = next((i for i, a in arrays.items() if a.dtype.kind == "f" and a.shape == (n_labels,)), None)
    assert name is not None, f"{path.name}: no classifier bias among the inputs of {node.op_type} {node.name}"
    array = arrays[name]
    inits[name].CopyFrom(numpy_helper.from_array(edit(array).astype(array.dtype), name))
    onnx.save(model, str(path))


def _failures(excinfo) -> set:
    return {(c.variant, c.check) for c in excinfo.value.failures}


def test_sabotage_perturbed_weights_lose_a_label(tiny_export, tiny_checkpoint):
    """The quantized variant silently lost one emotion: the gate names the variant, the check and the label."""
    variant = next((v for v in ("int8", "fp16") if v in _variants(tiny_export)), None)
    if variant is None:
        pytest.skip("the export has no fp16/int8 variant")
    per_label = artifacts.read_checkpoint_meta(tiny_checkpoint)["metrics"]["validation_tuned"]["per_label"]
    best = max(per_label, key=lambda m: m["f1"])["label"]  # the label with the most to lose
    j = artifacts.read_manifest(tiny_export)["labels"].index(best)
    _edit_bias(tiny_export / artifacts.variant_file(variant), lambda b: np.where(np.arange(b.size) == j, b - 30.0, b))
    _rewrite_checksums(tiny_export)
    with pytest.raises(ValidationFailed, match=rf"{variant} label_f1_drop\[{best}\]") as excinfo:
        validate_export(_cfg(tiny_export, variants=(Variant(variant),)))
    failed = {(c.variant, c.check, c.label) for c in excinfo.value.failures}
    assert (variant, "label_f1_drop", best) in failed
    assert (variant, "macro_f1_drop", None) in failed
    assert not any(c.check == "checksum" for c in excinfo.value.failures)  # the numbers caught it
    result = excinfo.value.result
    row = next(r for r in result.variants[0].per_label if r.label == best)
    assert row.f1 == 0.0 and row.delta_f1 == pytest.approx(-row.f1_reference, abs=1e-12)  # never predicted
    assert row.f1_reference > 0.5
    lost = next(c for c in excinfo.value.failures if c.label == best)
    assert lost.value > 0.5  # the gate's drop (a text on the threshold keeps PyTorch's decision)
    # the reports were written before raising
    manifest = artifacts.read_manifest(tiny_export)
    assert manifest["validation"]["passed"] is False
    assert any(f["label"] == best for f in manifest["validation"]["failures"])


def test_sabotage_perturbed_fp32_weights_fail_parity_and_checksum(tiny_export):
    rng = np.random.default_rng(0)
    _edit_bias(tiny_export / artifacts.variant_file("fp32"), lambda b: b + rng.normal(0, 0.05, b.shape))
    # checksums NOT re-written: the checksum check names the file, and parity still runs
    with pytest.raises(ValidationFailed, match=r"fp32 max_abs_diff") as excinfo:
        validate_export(_cfg(tiny_export, variants=(Variant.FP32,)))
    failed = {(c.variant, c.check, c.label) for c in excinfo.value.failures}
    assert ("fp32", "checksum", artifacts.variant_file("fp32")) in failed
    assert ("fp32", "max_abs_diff", None) in failed
    fp32 = excinfo.value.result.variants[0]
    assert fp32.parity.max_abs_diff > 1e-3


def test_sabotage_thresholds_changed_in_manifest(tiny_export):
    manifest = artifacts.read_manifest(tiny_export)
    manifest["thresholds"][1] = min(0.95, manifest["thresholds"][1] + 0.3)
    artifacts.write_manifest(tiny_export, manifest)  # manifest.json is not in files{}: no checksum to fix
    with pytest.raises(ValidationFailed, match=r"fp32 thresholds") as excinfo:
        validate_export(_cfg(tiny_export))
    failed = _failures(excinfo)
    for variant in manifest["variants"]:
        assert (variant, "thresholds") in failed
    assert ("fp32", "agreement") in failed  # the decisions apps make really changed
    fp32 = excinfo.value.result.variants[0]
    label = manifest["labels"][1]
    assert fp32.parity.flips[label] > 0
    assert sum(fp32.parity.flips.values()) == fp32.parity.flips[label]
    assert fp32.parity.max_abs_diff < 1e-5  # the model itself is fine


def test_sabotage_label_order_swapped_in_manifest(tiny_export):
    try:  # the variants' own flips, before the sabotage (a weak tiny int8 may fail its gates on them)
        honest = validate_export(_cfg(tiny_export))
    except ValidationFailed as e:
        honest = e.result
    own_flips = {r.variant: {row.label: row.flips for row in r.per_label} for r in honest.variants}
    manifest = artifacts.read_manifest(tiny_export)
    labels = manifest["labels"]
    labels[0], labels[1] = labels[1], labels[0]
    artifacts.write_manifest(tiny_export, manifest)
    with pytest.raises(ValidationFailed, match=r"fp32 labels") as excinfo:
        validate_export(_cfg(tiny_export))
    failed = {(c.variant, c.check, c.label) for c in excinfo.value.failures}
    for report in excinfo.value.result.variants:
        assert (report.variant, "labels", None) in failed
        # the swapped columns score against the other label's truth: each of the two flips the
        # decisions where the model tells the two apart (give or take the variant's own flips);
        # every other label flips exactly what it flipped before
        rows, own = {r.label: r for r in report.per_label}, own_flips[report.variant]
        slack = own[labels[0]] + own[labels[1]]
        assert rows[labels[0]].flips > slack and abs(rows[labels[0]].flips - rows[labels[1]].flips) <= slack
        assert {name: rows[name].flips for name in labels[2:]} == {name: own[name] for name in labels[2:]}
        assert min(rows[labels[0]].delta_f1, rows[labels[1]].delta_f1) < 0  # reported, if not gated, for fp32
        if report.variant != "fp32":  # how far F1 moves depends on how alike the model scores the two
            assert {(report.variant, "label_f1_drop", labels[0]), (report.variant, "label_f1_drop", labels[1])} & failed
    assert ("fp32", "max_abs_diff", None) in failed
    assert ("fp32", "agreement", None) in failed
    labels_check = next(c for c in excinfo.value.failures if c.check == "labels")
    assert labels_check.value == 2


# ---------------------------------------------------------------------------- data and usage errors


def test_data_file_matched_by_name_extra_labels_ignored(tiny_export, tmp_path, caplog):
    manifest = artifacts.read_manifest(tiny_export)
    labels = manifest["labels"]
    from toolkit.data import load_validation_split, split_search_certify

    # by default validate certifies on the certify part of the recorded split: the file holds its first 120 texts
    val = split_search_certify(load_validation_split(manifest["data"], labels))[1]
    path = tmp_path / "data.csv"
    columns = list(reversed(labels)) + ["sarcasm"]  # other order, one label the model lacks
    lines = ["text," + ",".join(columns)]
    for text, row in zip(val.texts[:120], val.labels[:120]):
        values = [str(int(row[labels.index(c)])) for c in reversed(labels)] + ["0"]
        lines.append(json.dumps(text) + "," + ",".join(values))
    path.write_text("\n".join(lines) + "\n")
    caplog.set_level("INFO", logger="toolkit")  # toolkit.data.align_labels logs the dropped label
    result = validate_export(_cfg(tiny_export, data=path, variants=(Variant.FP32,), max_samples=100))
    assert result.n_samples == 100
    assert "sarcasm" in caplog.text
    recorded = validate_export(_cfg(tiny_export, variants=(Variant.FP32,), max_samples=100))
    assert result.reference.metrics.macro_f1 == pytest.approx(recorded.reference.metrics.macro_f1, abs=1e-9)

    path.write_text("text," + ",".join(labels[1:]) + "\nhello," + ",".join("0" for _ in labels[1:]) + "\n")
    with pytest.raises(DataError, match=rf"no column for model label\(s\) {labels[0]}"):
        validate_export(_cfg(tiny_export, data=path))


def test_missing_source_checkpoint_is_a_clear_error(tiny_export):
    manifest = artifacts.read_manifest(tiny_export)
    manifest["source"] = dict(manifest["source"], path="/nonexistent/ckpt", checkpoint="/nonexistent/ckpt")
    artifacts.write_manifest(tiny_export, manifest)
    with pytest.raises(ModelError, match=r"/nonexistent/ckpt: the source checkpoint .* is gone.*toolkit export"):
        validate_export(_cfg(tiny_export))


def test_unavailable_gpu_provider_fails_fast(tiny_export):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime has CUDA here")
    with pytest.raises(ProviderError, match=r"onnxruntime-gpu"):
        validate_export(ValidateConfig(export=tiny_export, provider="cuda"))
    assert "validation" not in artifacts.read_manifest(tiny_export)  # nothing was run or written


def test_cli_exit_codes(tiny_export, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", "--export", str(tiny_export), "--provider", "cpu", "--variants", "fp32",
                             "--markdown", str(tmp_path / "v.md")])
    assert ok.exit_code == 0, ok.output
    assert "pytorch" in ok.output and "PASS" in ok.output
    assert (tmp_path / "v.md").is_file()

    manifest = artifacts.read_manifest(tiny_export)
    manifest["thresholds"][0] = 0.99
    artifacts.write_manifest(tiny_export, manifest)
    bad = runner.invoke(cli, ["validate", "--export", str(tiny_export), "--provider", "cpu", "--variants", "fp32"])
    assert bad.exit_code == 1, bad.output
    assert "fp32 thresholds" in bad.output and "fp32 agreement" in bad.output

    missing = runner.invoke(cli, ["validate", "--export", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "export directory not found" in missing.output
    usage = runner.invoke(cli, ["validate", "--export", str(tiny_export), "--batch-size", "0"])
    assert usage.exit_code == 2 and "--batch-size" in usage.output
    helped = runner.invoke(cli, ["validate", "--help"])
    assert helped.exit_code == 0 and "exit 1 if any gate fails" in helped.output


def test_static_int8_is_validated_and_benched_by_name(tiny_checkpoint, tmp_path):
    INT8_STATIC = Variant.INT8_STATIC.value

    out = tmp_path / "static"
    runner = CliRunner()
    exported = runner.invoke(cli, ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                                   "--variants", "int8", "--int8", "static", "--calibration-samples", "16"])
    assert exported.exit_code == 0, exported.output

    # the exit code states the verdict both ways: limits nothing can break pass, a negative one fails
    only = runner.invoke(cli, ["validate", "--export", str(out), "--provider", "cpu", "--variants", INT8_STATIC,
                               "--max-drop-macro", "1", "--max-drop-label", "1", "--report", str(tmp_path / "only.json")])
    report = json.loads((tmp_path / "only.json").read_text())
    assert only.exit_code == 0 and report["passed"] is True, only.output
    assert list(report["variants"]) == [INT8_STATIC]
    checks = {c["check"] for c in report["variants"][INT8_STATIC]["checks"]}
    assert {"labels", "thresholds", "nan_inf", "macro_f1_drop"} <= checks  # gated like int8

    every = runner.invoke(cli, ["validate", "--export", str(out), "--provider", "cpu", "--max-drop-macro", "-1",
                                "--report", str(tmp_path / "all.json")])
    every_report = json.loads((tmp_path / "all.json").read_text())
    assert every.exit_code == 1 and every_report["passed"] is False, every.output
    assert {(f["variant"], f["check"]) for f in every_report["failures"]} == {
        ("int8", "macro_f1_drop"), (INT8_STATIC, "macro_f1_drop")}
    assert list(every_report["variants"]) == ["int8", INT8_STATIC]

    benched = runner.invoke(cli, ["bench", "--export", str(out), "--variants", INT8_STATIC, "--no-baseline",
                                  "--iterations", "2", "--warmup", "1", "--batch", "2", "--seq-len", "8",
                                  "--provider", "cpu", "--json", str(tmp_path / "b.json"),
                                  "--csv", str(tmp_path / "b.csv")])
    assert benched.exit_code == 0, benched.output
    records = json.loads((tmp_path / "b.json").read_text())["records"]
    assert [r["variant"] for r in records] == [INT8_STATIC]

    unknown = runner.invoke(cli, ["validate", "--export", str(out), "--variants", "int4"])
    assert unknown.exit_code == 2 and "choose from fp32, fp16, int8, int8_static" in unknown.output


# ---------------------------------------------------------------------------- pinned and enough evidence


def test_reports_name_the_fingerprint_and_count_labels_without_evidence(passing):
    result, export, root = passing
    summary = format_summary(result)
    fp = result.evidence.fingerprint["rows_sha256"][:12]
    assert f"certified texts: certify part, 160 rows, sha256 {fp} (of 300 rows, sha256" in summary
    # certify part positives: anger 39, fear 34, joy 33, sadness 36, surprise 41; int8 needs 34, fp16 100
    int8 = next(v for v in result.variants if v.variant == "int8")
    assert int8.insufficient == {"joy": 33} and not int8.restricted
    assert "int8: 1 label(s) NOT ENOUGH EVIDENCE (positives: joy 33)" in summary
    assert all(c.label != "joy" for c in int8.checks if c.check == "label_f1_drop")
    fp16 = next(v for v in result.variants if v.variant == "fp16")
    assert len(fp16.insufficient) == 5 and fp16.restricted.startswith("only 0 of 5 labels have the 100 positives")
    status = artifacts.read_manifest(export)[artifacts.VALIDATION_STATUS]
    assert status["int8"]["passed"] is True and status["int8"]["fingerprint"] == result.evidence.fingerprint
    assert status["int8"]["part"] == "certify" and status["int8"]["not_enough_evidence"] == {"joy": 33}
    assert status["fp16"]["passed"] is None and "too few texts" in status["fp16"]["restricted"]  # never a pass
    assert "fp16 | " in format_markdown(result) and "PASS (smoke)" in format_markdown(result)


@pytest.fixture(scope="module")
def file_trained(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint as if trained on a CSV file, exported (fp32, int8) while the file is intact,
    then exported again after the file's rows were shuffled: (checkpoint, csv, gated export, export after)."""
    from toolkit.config import DataConfig
    from toolkit.data import load_splits
    from toolkit.demo_corpus import generate_demo_corpus

    root = tmp_path_factory.mktemp("file_trained")
    texts, labels, names = generate_demo_corpus()
    csv = root / "d.csv"
    csv.write_text("text," + ",".join(names) + "\n" + "".join(
        json.dumps(t) + "," + ",".join(str(int(v)) for v in row) + "\n" for t, row in zip(texts, labels)),
        encoding="utf-8")
    checkpoint = root / "ckpt"
    shutil.copytree(tiny_checkpoint, checkpoint)
    meta = artifacts.read_checkpoint_meta(checkpoint)
    meta["data"] = json.loads(json.dumps(load_splits(DataConfig(path=csv, val_fraction=0.2)).spec))
    artifacts.write_checkpoint_meta(checkpoint, meta)
    runner = CliRunner()
    gated = runner.invoke(cli, ["export", "--checkpoint", str(checkpoint), "--out", str(root / "gated"),
                                "--variants", "fp32,int8"])
    assert gated.exit_code == 0, gated.output
    lines = csv.read_text(encoding="utf-8").splitlines()
    order = np.random.default_rng(0).permutation(len(lines) - 1)
    csv.write_text("\n".join([lines[0]] + [lines[1 + i] for i in order]) + "\n", encoding="utf-8")
    after = runner.invoke(cli, ["export", "--checkpoint", str(checkpoint), "--out", str(root / "after"),
                                "--variants", "fp32,int8"])
    return checkpoint, csv, root / "gated", after, root / "after"


def test_export_gates_int8_on_the_search_part_and_validate_certifies_on_the_rest(file_trained, tmp_path):
    from toolkit.data import fingerprint, load_validation_split, split_search_certify

    checkpoint, csv, gated, _, _ = file_trained
    gate = artifacts.read_manifest(gated)["variants"]["int8"]["settings"]["gate"]
    assert gate["part"] == "search" and gate["fingerprint"]["rows"] == 600  # val_fraction 0.2 of 3000
    assert 0 < gate["part_fingerprint"]["rows"] < 600


def test_a_shuffled_training_file_is_refused_and_export_ships_int8_not_gated(file_trained, tmp_path):
    from toolkit.runtime import EmotionClassifier

    checkpoint, csv, gated, after, after_dir = file_trained
    runner = CliRunner()
    validated = runner.invoke(cli, ["validate", "--export", str(gated), "--provider", "cpu"])
    assert validated.exit_code == 2, validated.output
    assert "d.csv: changed since training (sha256" in validated.output
    assert "pass the data explicitly with --data PATH" in validated.output
    evaluated = runner.invoke(cli, ["evaluate", "--checkpoint", str(checkpoint)])
    assert evaluated.exit_code == 2 and "d.csv: changed since training" in evaluated.output
    # export does not fail as a whole: int8 is written, marked not gated, and auto skips it
    assert after.exit_code == 0, after.output
    assert "int8 is NOT GATED (" in after.output and "changed since training" in after.output
    entry = artifacts.read_manifest(after_dir)["variants"]["int8"]
    assert entry["status"] == "not gated" and "changed since training" in entry["not_gated"]
    assert (after_dir / entry["file"]).is_file()
    assert EmotionClassifier.load(after_dir, provider="cpu").variant == "fp32"
    assert EmotionClassifier.load(after_dir, variant="int8", provider="cpu").variant == "int8"


def test_max_samples_is_a_smoke_test_that_auto_does_not_trust(file_trained, tmp_path):
    from toolkit.runtime import EmotionClassifier

    checkpoint, csv, _, _, after_dir = file_trained
    export = tmp_path / "export"
    shutil.copytree(after_dir, export)
    runner = CliRunner()
    # 10 texts: one flipped decision moves a label's F1 by up to 0.2 and macro-F1 by 0.04, so the smoke
    # runs get limits a flip or two cannot break; what is tested is what a smoke pass certifies (nothing)
    smoke_limits = ["--max-samples", "10", "--max-drop-macro", "0.1", "--max-drop-label", "0.5"]
    smoke = runner.invoke(cli, ["validate", "--export", str(export), "--provider", "cpu", "--data", str(csv),
                                *smoke_limits])
    assert smoke.exit_code == 0, smoke.output
    assert "PASS (smoke)" in smoke.output and "its pass is not recorded as a certificate" in smoke.output
    manifest = artifacts.read_manifest(export)
    assert all(s["passed"] is not True for s in manifest[artifacts.VALIDATION_STATUS].values())
    assert "validation" not in manifest and manifest["validation_smoke"]["certificate"] is False
    assert EmotionClassifier.load(export, provider="cpu").variant == "fp32"  # int8: not gated, not certified
    # the whole file (the user's own data: used whole) certifies, and auto trusts int8 from then on
    full = runner.invoke(cli, ["validate", "--export", str(export), "--provider", "cpu", "--data", str(csv),
                               "--max-drop-macro", "0.05", "--max-drop-label", "0.1"])
    assert full.exit_code == 0, full.output
    assert "certified texts: all part, 3000 rows" in full.output
    status = artifacts.read_manifest(export)[artifacts.VALIDATION_STATUS]
    assert status["int8"]["passed"] is True and status["int8"]["fingerprint"]["rows"] == 3000
    assert EmotionClassifier.load(export, provider="cpu").variant == "int8"
    # a later smoke test does not erase that certificate
    again = runner.invoke(cli, ["validate", "--export", str(export), "--provider", "cpu", "--data", str(csv),
                                *smoke_limits])
    assert again.exit_code == 0, again.output
    assert artifacts.read_manifest(export)[artifacts.VALIDATION_STATUS]["int8"]["passed"] is True


def test_validating_on_the_gate_data_uses_its_certify_part(file_trained, tmp_path):
    checkpoint, csv, gated, _, _ = file_trained
    from toolkit.data import split_search_certify, read_dataset

    gate_file = tmp_path / "gate.csv"
    shutil.copy(csv, gate_file)
    out = tmp_path / "export"
    runner = CliRunner()
    exported = runner.invoke(cli, ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--variants",
                                   "fp32,int8", "--gate-data", str(gate_file), "--int8-search-seconds", "30"])
    assert exported.exit_code == 0, exported.output
    gate = artifacts.read_manifest(out)["variants"]["int8"]["settings"]["gate"]
    search, certify = split_search_certify(read_dataset(gate_file))
    assert gate["fingerprint"]["rows"] == 3000 and gate["part_fingerprint"]["rows"] == len(search)
    assert f"int8 gated on the search half of {gate_file} ({len(search)} rows, sha256" in exported.output
    validated = runner.invoke(cli, ["validate", "--export", str(out), "--provider", "cpu", "--data", str(gate_file),
                                    "--variants", "fp32"])
    assert validated.exit_code == 0, validated.output
    assert f"certified texts: certify part, {len(certify)} rows" in validated.output


def test_static_int8_calibration_refuses_a_changed_training_file(file_trained, tmp_path):
    checkpoint, csv, _, _, _ = file_trained  # the file was shuffled after training
    result = CliRunner().invoke(cli, ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "s"),
                                      "--variants", "int8", "--int8", "static"])
    assert result.exit_code != 0 and not (tmp_path / "s").exists()
    assert "d.csv: changed since training" in result.output and "pass --calibration-data PATH" in result.output
