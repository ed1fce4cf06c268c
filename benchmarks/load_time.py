"""Load time of `EmotionClassifier.load(verify=True)`: every file hashed (before) vs only the opened ones (after).

    python benchmarks/load_time.py --preset bert-base --rounds 7

A Ray replica loads one variant, but the runtime used to hash every variant of the export first
(fp32 + fp16 + int8: ~720 MB for BERT-base). "before" is the runtime of --before-commit, unpacked
from git into a temporary directory; "after" is the working tree, and "no verify" the working tree
with verify=False (the session and tokenizer alone, nothing hashed). Each load runs in a fresh
interpreter (as a replica does), the two alternate round by round, and each process reports only
the time spent in `load` (imports excluded). Files are in the page cache after the first round:
this measures hashing and session creation, not disk reads.

Writes JSON to benchmarks/results/load-time-<preset>.json (or --json) with machine, versions,
load average and the command.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import toolkit.runtime as runtime
assert runtime.__file__.startswith(sys.argv[1]), runtime.__file__
start = time.perf_counter()
clf = runtime.EmotionClassifier.load(sys.argv[2], variant=sys.argv[3], provider="cpu", threads=1,
                                     verify=sys.argv[4] == "1")
print(json.dumps({"seconds": time.perf_counter() - start, "variant": clf.variant, "module": runtime.__file__}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bert-base", help="toolkit bench preset to export (cached)")
    parser.add_argument("--variant", default="int8", help="the variant each load opens (a replica on CPU: int8)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before-commit", default="8f98eee", help="a commit whose runtime hashes every file")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from toolkit import artifacts, bench
    from toolkit.bench.scenarios import prepare_preset

    export_dir = prepare_preset(args.preset)
    manifest = artifacts.read_manifest(export_dir)
    sizes = {rel: (export_dir / rel).stat().st_size for rel in manifest["files"]}
    with tempfile.TemporaryDirectory(prefix="load-time-") as tmp:
        before_root = Path(tmp) / "before"
        before_root.mkdir()
        archive = subprocess.run(["git", "archive", args.before_commit, "toolkit"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        archive_path = Path(tmp) / "before.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(before_root)
        # name -> (code, verify); "no verify" is what is left when nothing is hashed: the session
        roots = {"before": (str(before_root), True), "after": (str(ROOT), True), "no verify": (str(ROOT), False)}
        times = {name: [] for name in roots}
        load_before = os.getloadavg()
        for _ in range(args.rounds):
            for name, (root, verify) in roots.items():  # interleaved: a noisy moment hits all alike
                times[name].append(_probe(root, export_dir, args.variant, verify))
    summary = {name: _stats(values) for name, values in times.items()}
    summary["speedup_median"] = summary["before"]["median_s"] / summary["after"]["median_s"]
    pairs = [b / a for b, a in zip(times["before"], times["after"])]
    summary["speedup_per_round_median"] = statistics.median(pairs)
    result = {
        "what": "EmotionClassifier.load(verify=True) time, fresh interpreter per load, imports excluded",
        "export": str(export_dir), "preset": args.preset, "variant": args.variant,
        "file_mb": {rel: round(size / 1e6, 1) for rel, size in sizes.items()},
        "hashed_mb": {"before": round(sum(sizes.values()) / 1e6, 1),
                      "after": round((sizes[manifest["variants"][args.variant]["file"]]
                                      + sizes[artifacts.TOKENIZER_JSON]) / 1e6, 1)},
        "before_commit": args.before_commit, "rounds": args.rounds, "seconds": times, "summary": summary,
        "loadavg_before_after": [load_before, os.getloadavg()],
        "uptime": bench.uptime(),
        "command": " ".join(["python"] + sys.argv), "date": artifacts.utc_now(),
        "machine": vars(bench.machine_info()), "versions": artifacts.library_versions(),
    }
    out = args.json or bench.RESULTS_DIR / f"load-time-{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(out, result)
    print(json.dumps({"hashed_mb": result["hashed_mb"], "summary": summary}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _probe(root: str, export_dir: Path, variant: str, verify: bool) -> float:
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", PROBE, root, str(export_dir), variant, "1" if verify else "0"],
                         env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median_s": statistics.median(values), "min_s": ordered[0], "max_s": ordered[-1],
            "p90_s": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]}


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"{time.time() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
