"""Results cache for compare: data only (JSON and Arrow IPC), never code.

An entry's key is the SHA-256 of: the trace file's content hash, the options with every policy
or cost argument that names a file replaced by that file's bytes, and a digest of exitreplay's
own code and built-in policy/cost files. Editing a trace, a policy file, a cost file or the code
therefore misses; moving a file does not.

An entry is one Arrow IPC file, `<key>.arrow`: its schema metadata holds the key and the result
as JSON (a dataclass as its class name and fields; scalars, lists and dicts as themselves), and
every NumPy array, Arrow array or table and Polars frame in it is a column of the file's one row.
Reading an entry parses data and nothing else, so whoever can write to the cache directory (a
shared `EXITREPLAY_CACHE`, a CI cache restored from elsewhere) cannot make `compare` run code.
An entry that does not parse, carries another key, names a class outside exitreplay or one whose
fields differ, is a miss. The directory is created private to the user (0700), entries 0600.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

PACKAGE = Path(__file__).resolve().parent
FORMAT = "exitreplay-cache/1"
SUFFIX = ".arrow"
MAX_ENTRY = 256 << 20  # bytes: anything larger was not written by store()
_HEX64 = re.compile(r"[0-9a-f]{64}")


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


def private_dir(path: Path) -> Path:
    """`path`, created (with its parents) readable and writable by the user alone."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def content_hash(path: str | os.PathLike, cache_dir: Path | None = None) -> str:
    """file_hash, remembered per (path, inode, size, mtime) so a big unchanged trace is hashed once."""
    if cache_dir is None:
        return file_hash(path)
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
    memo = cache_dir / "hashes" / hashlib.sha256(ident.encode()).hexdigest()
    try:
        text = memo.read_text()
        if _HEX64.fullmatch(text):
            return text
    except (OSError, UnicodeDecodeError):
        pass
    digest = file_hash(path)
    try:
        private_dir(cache_dir)
        _write_atomic(private_dir(memo.parent), memo.name, digest.encode())
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
    """The value stored under key `k`, or None (absent, damaged, foreign or stale: a miss)."""
    p = cache_dir / f"{k}{SUFFIX}"
    try:
        if not _HEX64.fullmatch(k) or p.stat().st_size > MAX_ENTRY:
            return None
        return unpack(k, p.read_bytes())
    except OSError:
        return None


def unpack(k: str, data: bytes) -> Any | None:
    """The value an entry's bytes hold for key `k`, or None (damaged, foreign or stale). Workers
    send their results in this form too, so nothing but data crosses from them."""
    try:
        table = ipc.open_file(pa.BufferReader(data)).read_all()
        table.validate(full=True)
        meta = table.schema.metadata or {}
        if meta.get(b"format") != FORMAT.encode() or meta.get(b"key") != k.encode():
            return None
        return _decode(json.loads(meta[b"value"]), table)
    except Exception:  # anything at all wrong with an entry: recompute, never fail, never trust it
        return None


def pack(k: str, value: Any) -> bytes | None:
    """`value` (a dataclass, dict, list or scalar holding arrays anywhere) as the bytes of an
    entry under key `k`; None for a value that is not plain data."""
    columns: list[pa.Array] = []
    try:
        doc = json.dumps(_encode(value, columns), allow_nan=True)
    except (TypeError, ValueError):
        return None
    names = [f"c{i}" for i in range(len(columns))]
    meta = {b"format": FORMAT.encode(), b"key": k.encode(), b"value": doc.encode()}
    table = pa.Table.from_arrays(columns, names=names).replace_schema_metadata(meta) if columns else \
        pa.table({"_": pa.array([None])}).replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def store(cache_dir: Path, k: str, value: Any) -> None:
    """Store `value` under key `k` (a value that is not plain data is not cached)."""
    store_bytes(cache_dir, k, pack(k, value))


def store_bytes(cache_dir: Path, k: str, data: bytes | None) -> None:
    """Store an entry already packed (by a worker) under key `k`."""
    if data is None or not _HEX64.fullmatch(k):
        return
    try:
        _write_atomic(private_dir(cache_dir), f"{k}{SUFFIX}", data)
    except OSError:  # an unwritable cache costs speed, not the result
        pass


def _write_atomic(directory: Path, name: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- values <-> JSON plus columns -----------------------------------------------------------------------
def _one_row(arr: pa.Array) -> pa.Array:
    """A whole array as the single value of a list column."""
    return pa.ListArray.from_arrays(pa.array([0, len(arr)], pa.int32()), arr)


def _encode(v: Any, cols: list[pa.Array]) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        cls = type(v)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(v, f.name), cols) for f in dataclasses.fields(v)}}
    if isinstance(v, np.ndarray):
        cols.append(_one_row(pa.array(v.reshape(-1))))
        return {"__array__": len(cols) - 1, "dtype": v.dtype.str, "shape": list(v.shape)}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pa.ChunkedArray | pa.Array):
        cols.append(_one_row(v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v))
        return {"__arrow__": len(cols) - 1}
    if _is_frame(v):
        table = v.to_arrow() if not isinstance(v, pa.Table) else v
        cols.append(_one_row(table.to_struct_array().combine_chunks() if table.num_columns else pa.array([], pa.null())))
        return {"__table__": len(cols) - 1, "polars": not isinstance(v, pa.Table),
                "columns": table.column_names}
    if isinstance(v, dict):
        if all(isinstance(x, str) and not x.startswith("__") for x in v):
            return {x: _encode(y, cols) for x, y in v.items()}
        return {"__dict__": [[_encode(x, cols), _encode(y, cols)] for x, y in v.items()]}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x, cols) for x in v]}
    if isinstance(v, list):
        return [_encode(x, cols) for x in v]
    if v is None or isinstance(v, str | bool | int | float):
        return v
    raise TypeError(f"cannot cache a {type(v).__name__}")


def _is_frame(v: Any) -> bool:
    if isinstance(v, pa.Table):
        return True
    import polars as pl

    return isinstance(v, pl.DataFrame)


def _decode(d: Any, table: pa.Table) -> Any:
    if isinstance(d, list):
        return [_decode(x, table) for x in d]
    if not isinstance(d, dict):
        return d
    if "__dataclass__" in d:
        cls = _dataclass(d["__dataclass__"])
        fields = {k: _decode(v, table) for k, v in d["fields"].items()}
        hints = typing.get_type_hints(cls)
        if set(fields) != {f.name for f in dataclasses.fields(cls) if f.init} or not all(
                _fits(v, hints.get(k, Any)) for k, v in fields.items()):
            raise ValueError("fields differ")
        return cls(**fields)
    if "__array__" in d:
        values = table.column(d["__array__"])[0].values
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.dtype(d["dtype"])).reshape(d["shape"])
    if "__arrow__" in d:
        return table.column(d["__arrow__"])[0].values
    if "__table__" in d:
        structs = table.column(d["__table__"])[0].values
        t = pa.Table.from_struct_array(structs) if d["columns"] else pa.table({})
        if d["polars"]:
            import polars as pl

            return pl.from_arrow(t)
        return t
    if "__dict__" in d:
        return {_hashable(_decode(x, table)): _decode(y, table) for x, y in d["__dict__"]}
    if "__tuple__" in d:
        return tuple(_decode(x, table) for x in d["__tuple__"])
    return {k: _decode(v, table) for k, v in d.items()}


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _fits(value: Any, hint: Any, depth: int = 0) -> bool:
    """Whether a decoded value has the shape its field's annotation says (containers one level in)."""
    origin = typing.get_origin(hint)
    if hint is Any or depth > 2:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h, depth) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    args = typing.get_args(hint)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0], depth + 1) and _fits(v, args[1], depth + 1)
                                               for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0], depth + 1) for v in value)
    return isinstance(value, origin or hint) if isinstance(origin or hint, type) else True


def _dataclass(name: str) -> type:
    """A dataclass of an exitreplay module already imported, by "module:qualname"; anything else
    is refused (nothing is imported because an entry names it)."""
    module, _, qual = name.partition(":")
    if not (module == "exitreplay" or module.startswith("exitreplay.")) or not qual or "<" in qual:
        raise ValueError(f"not an exitreplay class: {name}")
    obj: Any = sys.modules[module]
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise ValueError(f"not a dataclass: {name}")
    return obj
