"""Write a chart to HTML (interactive, self-contained), SVG, PNG or JSON, offline (vl-convert)."""
from __future__ import annotations

import json
import os

import altair as alt
import vl_convert as vlc

from ..errors import UsageError

EXTENSIONS = (".html", ".svg", ".png", ".json")


def spec_of(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict(validate=True)


def save(chart: alt.TopLevelMixin, path: str | os.PathLike) -> None:
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise UsageError(f"{path}: unknown chart file type (use {', '.join(EXTENSIONS)})")
    spec = spec_of(chart)
    if ext == ".json":
        data = json.dumps(spec, indent=1)
        mode = "w"
    elif ext == ".svg":
        data, mode = vlc.vegalite_to_svg(spec), "w"
    elif ext == ".png":
        data, mode = vlc.vegalite_to_png(spec, scale=2), "wb"
    else:
        data, mode = vlc.vegalite_to_html(spec, bundle=True), "w"
    with open(path, mode) as fh:
        fh.write(data)
