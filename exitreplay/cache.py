"""Results cache for compare.

An entry's key is the SHA-256 of: the trace file's content hash, the options with every policy
or cost argument that names a file replaced by that file's bytes, and a digest of exitreplay's
own code and built-in policy/cost files. Editing a trace, a policy file, a cost file or the code
therefore misses; moving a file does not.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent


def default_dir() -> Path:
    """$EXITREPLAY_CACHE, else $XDG_CACHE_HOME/exitreplay, else ~/.cache/exitreplay."""
    if os.environ.get("EXITREPLAY_CACHE"):
        return Path(os.environ["EXITREPLAY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "exitreplay"


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(path: str | os.PathLike, cache_dir: Path | None = None) -> str:
    """file_hash, remembered per (path, inode, size, mtime) so a big unchanged trace is hashed once."""
    if cache_dir is None:
        return file_hash(path)
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
    memo = cache_dir / "hashes" / hashlib.sha256(ident.encode()).hexdigest()
    try:
        text = memo.read_text()
        if len(text) == 64:
            return text
    except OSError:
        pass
    digest = file_hash(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(digest)
    except OSError:  # a read-only cache still works, it just hashes again
        pass
    return digest


@functools.cache
def code_digest() -> str:
    """The package's Python sources and built-in TOML files: results depend on all of them."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE.rglob("*")):
        if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(PACKAGE)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _spec_text(item: str | None) -> str:
    """A policy/cost argument: the file's bytes when it is a file, else the built-in's name."""
    if item and os.path.isfile(item):
        return "file:" + Path(item).read_bytes().hex()
    return item or ""


def key(path: str, options: dict[str, Any], cache_dir: Path | None = None) -> str:
    parts = {}
    for k, v in sorted(options.items()):
        if k in ("policies", "baseline", "costs"):
            parts[k] = [_spec_text(x) for x in v] if isinstance(v, list) else _spec_text(v)
        else:
            parts[k] = v
    blob = json.dumps({"file": content_hash(path, cache_dir), "options": parts, "code": code_digest()},
                      sort_keys=True, default=str)
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
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{k}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh)
        os.replace(tmp, cache_dir / f"{k}.pkl")
    except OSError:  # an unwritable cache costs speed, not the result
        pass
