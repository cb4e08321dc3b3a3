"""A user's TOML file (policy, cost profile) as plain data, or one UsageError naming the file.

tomllib accepts integers of any size, recurses once per nesting level and takes time quadratic in
the parts of a dotted key, so a hostile file can raise OverflowError or RecursionError deep in the
code that reads the values, or hold a loader for minutes. TOML itself says an integer that is not
64-bit must be an error (toml.io, v1.0.0 "Integer"), and no policy or cost file nests more than a
few tables; both are checked here, once, for every loader.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import UsageError

MAX_DEPTH = 32
I64 = (-(2**63), 2**63 - 1)


def load_toml(path: Path, what: str) -> dict[str, Any]:
    """`what` names the kind of file in messages ("policy file", "cost profile")."""
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist")
    try:
        text = path.read_text()
        if _dotted_too_deep(text):  # tomllib takes time quadratic in a dotted key's parts
            raise UsageError(f"{what} {path}: nested more than {MAX_DEPTH} levels deep")
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path}: not valid TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise UsageError(f"{what} {path}: not valid TOML: nested too deeply") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it: {exc.strerror}") from None
    problem = _check(data)
    if problem:
        raise UsageError(f"{what} {path}: {problem}")
    return data


def _dotted_too_deep(text: str) -> bool:
    """A key or table header of more parts than MAX_DEPTH allows (dots before any "=")."""
    return any(line.split("=", 1)[0].count(".") > MAX_DEPTH for line in text.splitlines())


def _check(data: dict) -> str | None:
    """Walk the values without recursion: nesting depth and integer range."""
    todo: list[tuple[Any, int]] = [(data, 0)]
    while todo:
        v, depth = todo.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(v, dict):
            todo.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, depth + 1) for x in v)
        elif isinstance(v, int) and not isinstance(v, bool) and not I64[0] <= v <= I64[1]:
            return f"the integer {str(v)[:20]}... is beyond TOML's 64-bit integers"
    return None
