"""`toolkit web`: turn an export into a folder any static host can serve, where the page scores texts on the device.

The folder holds the page (examples/web/), the JavaScript runtime (js/src/, the same code Node runs),
one onnxruntime-web build with its WASM binary and the tokenizer library (from js/node_modules, so the
page needs no CDN), and `model/`: one variant, `tokenizer.json` and a manifest trimmed to what is
shipped (still checksummed, so both runtimes verify it). Everything else in the export is left out and
listed in `web.json`, with every part's size. Built in a temporary directory and renamed into place.

The browser has no file system to check and no npm: the web assets are copied from the repository's
js/ folder (`npm ci --ignore-scripts` there), which a pip install of the runtime alone does not have.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from toolkit import artifacts
from toolkit.errors import ArtifactError, ToolkitError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JS_DIR = REPO / "js"
DEFAULT_PAGE_DIR = REPO / "examples" / "web"
PAGE_FILES = ("index.html", "app.js")
LIB_FILES = ("classifier.js", "browser.js", "errors.js", "measure.js")  # js/src: the browser runtime and its timer
TOKENIZERS_FILE = "tokenizers.min.mjs"  # @huggingface/tokenizers' self-contained ES module
# onnxruntime-web builds: the module, its Emscripten loader and its binary. wasm is WASM only (15 MB);
# webgpu runs WebGPU with WASM fallback from one larger binary (29 MB), so it is shipped on request.
ORT_BUILDS = {"wasm": ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
              "webgpu": ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
                         "ort-wasm-simd-threaded.asyncify.wasm")}
# Static hosts that read a _headers file (Netlify, Cloudflare Pages) send these: cross-origin isolation
# is what lets onnxruntime-web use more than one WASM thread (SharedArrayBuffer).
HEADERS_FILE = "_headers"
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
WEB_JSON = "web.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class WebBuild:
    """What `build_web` wrote: the folder, the variant, every part's size and what was left out."""

    out: Path
    variant: str
    parts: dict[str, int]  # bytes per part: model, tokenizer, runtime, onnxruntime-web, page
    excluded: dict[str, int] = field(default_factory=dict)  # export files left out -> bytes

    @property
    def total_bytes(self) -> int:
        return sum(self.parts.values())


def build_web(export_dir: Path, out: Path, variant: str = "auto", webgpu: bool = False, force: bool = False,
              js_dir: Optional[Path] = None, page_dir: Optional[Path] = None) -> WebBuild:
    """Write a static web folder for an export: page, runtime, onnxruntime-web, one variant and its tokenizer.

    Args:
        export_dir: a `toolkit export` directory.
        out: the folder to write (replaced only with `force`).
        variant: "auto" (the variant the runtime picks on a CPU: fastest that passed validation) or a name.
        webgpu: also ship onnxruntime-web's WebGPU build; the page uses it where the browser has an adapter.
        js_dir: the js/ package with node_modules installed; default: this repository's.
        page_dir: the page's files; default: this repository's examples/web.

    Returns:
        A WebBuild with the sizes and the excluded files.

    Raises:
        ArtifactError: the export is missing, corrupt or has no such variant.
        ToolkitError: js/node_modules is not installed.
    """
    from toolkit.runtime import check_manifest_labels, choose_variant, verify_files  # the runtime's own rules

    export_dir, out = Path(export_dir), Path(out)
    manifest = artifacts.read_manifest(export_dir)
    check_manifest_labels(export_dir, manifest)
    # onnxruntime-web runs ONNX files only: an OpenVINO IR variant (backend "openvino") is not a candidate
    onnx = {k: v for k, v in (manifest.get("variants") or {}).items()
            if isinstance(v, dict) and v.get("backend", "onnxruntime") == "onnxruntime"}
    other = (manifest.get("variants") or {}).get(str(variant).strip().lower())
    if str(variant).strip().lower() not in onnx and isinstance(other, dict):
        raise ArtifactError(f"{export_dir}: variant {variant} runs on {other.get('backend')}, not onnxruntime; a "
                            f"browser runs the ONNX variants: {', '.join(onnx) or 'none in this export'} (or auto)")
    name, model_file = choose_variant(export_dir, {**manifest, "variants": onnx}, variant, "cpu")
    js_root = Path(js_dir) if js_dir else DEFAULT_JS_DIR
    builds = ("wasm", "webgpu") if webgpu else ("wasm",)
    sources = _web_sources(js_root, Path(page_dir) if page_dir else DEFAULT_PAGE_DIR, builds)
    shipped = (model_file, artifacts.TOKENIZER_JSON)
    verify_files(export_dir, manifest, shipped)  # what ships; the variants left out are never read
    excluded = {rel: entry.get("bytes", 0) for rel, entry in (manifest.get("files") or {}).items() if rel not in shipped}
    with artifacts.atomic_directory(out, force=force) as tmp:
        for part, files in sources.items():
            for src, rel in files:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)
        (tmp / MODEL_DIR).mkdir()
        for rel in shipped:
            shutil.copyfile(export_dir / rel, tmp / MODEL_DIR / rel)
        artifacts.write_manifest(tmp / MODEL_DIR, _web_manifest(export_dir, manifest, name, shipped, excluded))
        (tmp / HEADERS_FILE).write_text("/*\n" + "".join(f"  {k}: {v}\n" for k, v in ISOLATION_HEADERS.items()),
                                        encoding="utf-8")
        parts = {part: sum(src.stat().st_size for src, _ in files) for part, files in sources.items()}
        parts["model"] = (tmp / MODEL_DIR / model_file).stat().st_size
        parts["tokenizer"] = (tmp / MODEL_DIR / artifacts.TOKENIZER_JSON).stat().st_size
        artifacts.write_json(tmp / WEB_JSON, {
            "variant": name, "source": export_dir.name, "created": artifacts.utc_now(),
            "ort": {build: f"vendor/{ORT_BUILDS[build][0]}" if build in builds else None for build in ORT_BUILDS},
            "versions": {pkg: _npm_version(js_root, pkg) for pkg in ("onnxruntime-web", "@huggingface/tokenizers")},
            "bytes": {**parts, "total": sum(parts.values())}, "excluded": excluded,
        })
    log.info("wrote %s: %s, %.1f MB", out, name, sum(parts.values()) / 1e6)
    return WebBuild(out=out, variant=name, parts=parts, excluded=excluded)


def describe(build: WebBuild) -> list[str]:
    """Summary lines for the CLI: total size, each part, and what was left out."""
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    lines = [f"wrote {build.out}: {mb(build.total_bytes)}, variant {build.variant}",
             "  " + ", ".join(f"{part} {mb(size)}" for part, size in sorted(build.parts.items(), key=lambda x: -x[1]))]
    if build.excluded:
        lines.append(f"  excluded from the export ({mb(sum(build.excluded.values()))}): {', '.join(sorted(build.excluded))}")
    lines.append("  serve it with any static host; COOP/COEP headers (see _headers) enable WASM threads")
    return lines


# ---------------------------------------------------------------------------- helpers


def _web_sources(js_dir: Path, page_dir: Path, builds: tuple[str, ...]) -> dict[str, list[tuple[Path, str]]]:
    """(source file, path in the web folder) per part; every source must exist before anything is written."""
    modules = js_dir / "node_modules"
    dist = modules / "onnxruntime-web" / "dist"
    tokenizers = modules / "@huggingface" / "tokenizers" / "dist" / TOKENIZERS_FILE
    if not dist.is_dir() or not tokenizers.is_file():
        raise ToolkitError(f"{modules}: onnxruntime-web and @huggingface/tokenizers are not installed; "
                           f"run `npm ci --ignore-scripts` in {js_dir}")
    sources = {
        "page": [(page_dir / name, name) for name in PAGE_FILES],
        "runtime": [(js_dir / "src" / name, f"lib/{name}") for name in LIB_FILES]
                   + [(tokenizers, f"vendor/{TOKENIZERS_FILE}")],
        "onnxruntime-web": [(dist / name, f"vendor/{name}") for build in builds for name in ORT_BUILDS[build]],
    }
    missing = [str(src) for files in sources.values() for src, _ in files if not src.is_file()]
    if missing:
        raise ToolkitError(f"{missing[0]}: missing ({len(missing)} web file(s) in all); the page lives in "
                           f"{page_dir} and the packages in {modules} (`npm ci --ignore-scripts` in {js_dir})")
    return sources


def _web_manifest(export_dir: Path, manifest: dict, name: str, shipped: tuple[str, ...], excluded: dict) -> dict:
    """The export's manifest, keeping only the shipped variant and files (both runtimes check every listed file)."""
    trimmed = dict(manifest)
    trimmed["variants"] = {name: manifest["variants"][name]}
    trimmed["files"] = {rel: manifest["files"][rel] for rel in shipped}
    status = manifest.get(artifacts.VALIDATION_STATUS)
    if status is not None:
        trimmed[artifacts.VALIDATION_STATUS] = {k: v for k, v in status.items() if k == name}
    trimmed["web"] = {"source": export_dir.name,
                      "source_manifest_sha256": artifacts.sha256_file(export_dir / artifacts.MANIFEST),
                      "excluded": sorted(excluded)}
    return trimmed


def _npm_version(js_dir: Path, package: str) -> Optional[str]:
    try:
        return json.loads((js_dir / "node_modules" / package / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None
