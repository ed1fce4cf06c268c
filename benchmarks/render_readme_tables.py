"""Render `toolkit bench` result JSON files as Markdown sections for benchmarks/README.md.

    python benchmarks/render_readme_tables.py benchmarks/results/gpu-bert-base-cuda.json \
        --title "BERT-base, H100, CUDA EP" >> benchmarks/README.md

Each section holds the exact command, the date, the machine (CPU, cores, GPU and driver),
the onnxruntime/torch versions and one table row per record, with the notes of the run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.bench import format_markdown, load_result
from toolkit.errors import ToolkitError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="result JSON files written by `toolkit bench`")
    parser.add_argument("--title", action="append", default=[],
                        help="section title, once per file in order (default: the benchmarked source)")
    args = parser.parse_args(argv)
    if args.title and len(args.title) != len(args.results):
        parser.error(f"{len(args.title)} --title for {len(args.results)} files: give one per file or none")
    titles = args.title or [None] * len(args.results)
    try:
        sections = [format_markdown(load_result(path), title) for path, title in zip(args.results, titles)]
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
