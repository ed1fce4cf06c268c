"""Which fp32/int8 ONNX recipe is fastest on this CPU? Evidence for the export settings.

Starts from a preset export (default the random-weights BERT-base shape), rebuilds candidate
graphs from its unfused fp32 `model.onnx`, and times them against PyTorch eager fp32 with
`toolkit.bench.round_robin` (interleaved, warm-up excluded), at the issue's shape by default:

    python benchmarks/int8_recipes.py --batch 32 --seq-len 128 --iterations 20

Recipes (all dynamic int8: per-channel int8 weights, reduce_range, uint8 activations):
  fp32-unfused   model.onnx as optimum exports it; onnxruntime fuses at load (ORT_ENABLE_ALL)
  fp32-fused     the same after onnxruntime.transformers.optimizer (opt_level 1), as export fuses it
  int8-export    model_int8.onnx of the export: fused graph, MatMul + Attention (QAttention) +
                 EmbedLayerNormalization + Gather quantized
  int8-unfused   the unfused graph, MatMul + Gather quantized; onnxruntime fuses
                 DynamicQuantizeMatMul at load

Prints a Markdown table and writes benchmarks/results/int8-recipes-<preset>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bert-base", choices=["bert-base", "minilm", "tiny"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from toolkit import artifacts, bench, runtime
    from toolkit.modeling import load_classifier

    export_dir = bench.prepare_preset(args.preset)
    manifest = artifacts.read_manifest(export_dir)
    config = json.loads((export_dir / artifacts.HF_CONFIG).read_text())
    threads = args.threads or runtime.physical_cores()
    fp32 = export_dir / manifest["variants"]["fp32"]["file"]
    work = Path(tempfile.mkdtemp(prefix="int8-recipes-"))
    print(f"building recipes in {work} ...", file=sys.stderr)
    fused = work / "fp32_fused.onnx"
    optimize_model(str(fp32), model_type="bert", num_heads=config["num_attention_heads"],
                   hidden_size=config["hidden_size"], opt_level=1, use_gpu=False).save_model_to_file(str(fused))
    int8_unfused = work / "int8_unfused.onnx"
    quantize_dynamic(fp32, int8_unfused, op_types_to_quantize=["MatMul", "Gather"], per_channel=True,
                     reduce_range=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    files = {"fp32-unfused": fp32, "fp32-fused": fused,
             "int8-export": export_dir / manifest["variants"]["int8"]["file"], "int8-unfused": int8_unfused}

    rng = np.random.default_rng(bench.INPUT_SEED)
    ids = rng.integers(0, config["vocab_size"], size=(args.batch, args.seq_len), dtype=np.int64)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    torch.set_num_threads(threads)
    model = load_classifier(export_dir.parent / "checkpoint").model.eval()
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def pytorch():
        with torch.inference_mode():
            model(**tensors)

    steps = {"pytorch-fp32": pytorch}
    for name, path in files.items():
        session = runtime.open_session(path, "cpu", threads)
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        steps[name] = (lambda s=session, f=feeds: s.run(None, f))
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = bench.round_robin([[s] for s in steps.values()], args.iterations)
    stats = {name: bench.timing_stats(t) for name, t in zip(steps, times)}
    base = stats["pytorch-fp32"].mean_ms
    rows = []
    for name, st in stats.items():
        size = files[name].stat().st_size / 1e6 if name in files else None
        rows.append({"recipe": name, "p50_ms": st.p50_ms, "mean_ms": st.mean_ms, "p99_ms": st.p99_ms,
                     "sequences_per_s": args.batch / (st.mean_ms / 1e3), "speedup": base / st.mean_ms,
                     "size_mb": size})
    machine = bench.machine_info()
    print(f"\n{args.preset}, batch {args.batch}, seq {args.seq_len}, {threads} threads, {args.iterations} interleaved "
          f"runs each; {machine.cpu}, {machine.physical_cores} physical cores\n")
    print("| recipe | size MB | seq/s | mean ms | p50 ms | p99 ms | speedup vs PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        size = f"{r['size_mb']:.0f}" if r["size_mb"] else "-"
        print(f"| {r['recipe']} | {size} | {r['sequences_per_s']:.1f} | {r['mean_ms']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['speedup']:.2f}x |")
    out = args.json or bench.RESULTS_DIR / f"int8-recipes-{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(out, {"command": " ".join(["python"] + sys.argv), "date": artifacts.utc_now(),
                               "machine": vars(machine), "batch": args.batch, "seq_len": args.seq_len,
                               "threads": threads, "iterations": args.iterations, "rows": rows,
                               "versions": artifacts.library_versions()})
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
