"""Write a chart to HTML (interactive, self-contained), SVG, PNG or JSON, offline (vl-convert)."""
from __future__ import annotations

import json
import os

import altair as alt
import vl_convert as vlc

from ..errors import UsageError

EXTENSIONS = (".html", ".svg", ".png", ".json")
# Every chart embeds its data; refusing external URLs makes rendering provably offline.
OFFLINE = {"allowed_base_urls": []}


def spec_of(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict(validate=True)


def svg_of(spec: dict) -> str:
    return vlc.vegalite_to_svg(spec, **OFFLINE)


def png_of(spec: dict, scale: float = 2) -> bytes:
    return vlc.vegalite_to_png(spec, scale=scale, **OFFLINE)


def save(chart: alt.TopLevelMixin, path: str | os.PathLike, png_scale: float = 2) -> None:
    """Write by extension; PNG at png_scale x the chart's CSS pixel size (2: sharp on HiDPI screens)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise UsageError(f"{path}: unknown chart file type (use {', '.join(EXTENSIONS)})")
    spec = spec_of(chart)
    if ext == ".json":
        data, mode = json.dumps(spec, indent=1), "w"
    elif ext == ".svg":
        data, mode = svg_of(spec), "w"
    elif ext == ".png":
        data, mode = png_of(spec, png_scale), "wb"
    else:
        data, mode = vlc.vegalite_to_html(spec, bundle=True), "w"
    with open(path, mode) as fh:
        fh.write(data)
