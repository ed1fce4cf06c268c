"""The on-disk contract: file names, metadata, manifest, checksums and atomic writes.

Only this module spells a file name. A training checkpoint is a standard Hugging Face
directory plus `toolkit.json`; an export is ONNX files, the tokenizer, `config.json`
and `manifest.json`, which lists every file with its sha256.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from toolkit.errors import ArtifactError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_META = "toolkit.json"
MANIFEST = "manifest.json"
VALIDATION_STATUS = "validation_status"  # manifest key: {variant: {passed, failures, validated, data, provider}}
NOT_GATED = "not gated"  # manifest variants[v].status of an int8 that no labelled data gated at export
HF_CONFIG = "config.json"
TOKENIZER_JSON = "tokenizer.json"
# One file per toolkit.config.Variant, keyed by its value (`model_<suffix>.onnx`, fp32 plain).
VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx",
                 "int8_static": "model_int8_static.onnx"}
STATIC_INT8_FILE = VARIANT_FILES["int8_static"]
TEMP_PREFIX = ".toolkit-tmp-"
# A build dir is `.toolkit-tmp-<target>-<pid>@<host>-<random>`, so a later run can tell whether its
# owner is still alive; names without an owner come from versions before it was recorded.
_OWNED_TEMP = re.compile(r"^(\d+)@(.+)-[a-z0-9_]+$")
_UNOWNED_TEMP = re.compile(r"^[a-z0-9_]+$")  # mkdtemp's random suffix only
# An export of BERT-base (fp32, fp16, int8) takes minutes; a build dir untouched for a day belongs
# to nobody, also when its owner cannot be checked (another host, or a name without an owner).
STALE_TEMP_AGE_S = 24 * 3600


def variant_file(variant: str) -> str:
    """File name of an ONNX variant inside an export directory."""
    return VARIANT_FILES[str(getattr(variant, "value", variant))]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so GB-sized models need no GB of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(directory: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, dict[str, Any]]:
    """sha256 and size of every regular file below `directory`, keyed by relative POSIX path."""
    out = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel in exclude:
            continue
        out[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def verify_checksums(directory: Path, manifest: dict) -> None:
    """Raise ArtifactError naming the first file that is missing or whose sha256 differs."""
    directory = Path(directory)
    for rel, entry in manifest.get("files", {}).items():
        path = directory / rel
        if not path.is_file():
            raise ArtifactError(f"{path}: file listed in {MANIFEST} is missing; re-run `toolkit export --force`")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ArtifactError(
                f"{path}: sha256 {actual[:12]}… does not match {MANIFEST} ({entry['sha256'][:12]}…); "
                "the file is corrupt or was modified, re-run `toolkit export --force`"
            )


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, default=_json_default)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; readers may be other users (a service)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path, what: str = "file") -> Any:
    """Read JSON, raising ArtifactError with the file name on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: {what} is not valid JSON ({e}); regenerate it") from e


def read_manifest(export_dir: Path) -> dict:
    """Load `manifest.json` of an export directory and check its format version."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise ArtifactError(f"{export_dir}: export directory not found; run `toolkit export --out {export_dir}` first")
    manifest = read_json(export_dir / MANIFEST, "export manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{export_dir / MANIFEST}: format_version {manifest.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION}); re-export with this toolkit version"
        )
    return manifest


def write_manifest(export_dir: Path, manifest: dict) -> None:
    """Write `manifest.json` (atomically)."""
    manifest = dict(manifest)
    manifest.setdefault("format_version", FORMAT_VERSION)
    write_json(Path(export_dir) / MANIFEST, manifest)


def read_checkpoint_meta(checkpoint_dir: Path) -> dict | None:
    """The toolkit metadata of a training checkpoint, or None for a plain HF checkpoint."""
    path = Path(checkpoint_dir) / CHECKPOINT_META
    return read_json(path, "checkpoint metadata") if path.is_file() else None


def write_checkpoint_meta(checkpoint_dir: Path, meta: dict) -> None:
    write_json(Path(checkpoint_dir) / CHECKPOINT_META, meta)


@contextlib.contextmanager
def atomic_directory(target: Path, force: bool = False) -> Iterator[Path]:
    """Build a directory in a temp dir beside `target`, then rename it into place.

    An exception or Ctrl-C removes the temp dir and leaves `target` untouched. An existing
    `target` is replaced only with `force`, and only after the new one is complete.

    Raises:
        ArtifactError: `target` exists without `force`, or its parent is not writable.
    """
    target = Path(target)
    if target.exists() and not force:
        raise ArtifactError(f"{target}: already exists; pass --force to replace it or choose another --out")
    if target.exists() and not target.is_dir():
        raise ArtifactError(f"{target}: exists and is not a directory; choose another --out")
    parent = target.parent if str(target.parent) else Path(".")
    remove_stale_temps(target)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-{_owner()}-", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary directory
    except OSError as e:
        raise ArtifactError(f"{parent}: cannot create the output directory ({e.strerror}); choose a writable --out") from e
    try:
        yield tmp
        if target.exists():
            # named apart from build dirs: never taken for a stale build, it may hold the only copy
            backup = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}.old-", dir=parent))
            os.replace(target, backup / "old")
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the build dirs that killed runs (SIGKILL, power loss) left beside `target`; log each one.

    Only `target`'s own build dirs are touched, and only stale ones: those whose owner process
    (pid recorded in the name) is gone from this host, and any not modified for STALE_TEMP_AGE_S
    (owner on another host, or a name from before owners were recorded). A live build is left alone.

    Returns:
        The directories removed.
    """
    target = Path(target)
    prefix = f"{TEMP_PREFIX}{target.name}-"
    parent = target.parent if str(target.parent) else Path(".")
    try:
        candidates = [p for p in parent.iterdir()
                      if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()]
    except OSError:  # no parent yet: nothing left behind
        return []
    removed = []
    for path in sorted(candidates):
        reason = _stale_reason(path, path.name[len(prefix):])
        if reason is None:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            log.warning("removed %s, left by an interrupted build of %s (%s)", path, target, reason)
            removed.append(path)
    return removed


def _stale_reason(path: Path, rest: str) -> Optional[str]:
    """Why a build dir is stale (its name after the target's prefix is `rest`), or None."""
    owned = _OWNED_TEMP.match(rest)
    if owned is None and not _UNOWNED_TEMP.match(rest):
        return None  # another target's dir: `<target>-2`'s, say
    if owned is not None and owned.group(2) == socket.gethostname() and not _pid_alive(int(owned.group(1))):
        return f"its process {owned.group(1)} is gone"
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return None
    return f"untouched for {age / 3600:.0f} h" if age > STALE_TEMP_AGE_S else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence and permission check only
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def _owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def library_versions(names: tuple[str, ...] = (
    "toolkit", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
    "onnxruntime-gpu", "tokenizers", "numpy", "scikit-learn",
)) -> dict[str, str]:
    """Installed versions of the packages that shape results (absent ones are left out)."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "value"):  # enums
        return obj.value
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
