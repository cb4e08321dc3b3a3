"""Results cache for compare: keyed by the trace's content hash and everything that shapes a result."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

from . import __version__


def default_dir() -> Path:
    return Path(os.environ.get("EXITREPLAY_CACHE") or Path.home() / ".cache" / "exitreplay")


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _spec_text(item: str | None) -> str:
    """A policy/cost argument: the file's bytes when it is a file, else the built-in's name."""
    if item and os.path.exists(item):
        return Path(item).read_text()
    return item or ""


def key(path: str, options: dict[str, Any]) -> str:
    parts = {k: ([_spec_text(x) for x in v] if isinstance(v, list) else _spec_text(v) if k in (
        "baseline", "costs") else v) for k, v in sorted(options.items())}
    blob = json.dumps({"file": file_hash(path), "options": parts, "version": __version__}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(cache_dir: Path, k: str) -> Any | None:
    p = cache_dir / f"{k}.pkl"
    if not p.exists():
        return None
    try:
        with open(p, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # a damaged entry is recomputed, never fatal
        return None


def store(cache_dir: Path, k: str, value: Any) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f"{k}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh)
    os.replace(tmp, cache_dir / f"{k}.pkl")
