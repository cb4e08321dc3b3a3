"""Every chart kind: valid Vega-Lite (checked against the schema Altair ships), a title, a caption
naming its trace, axis titles with units, tooltips and legend filters; rendered offline to SVG
(with marks) and PNG; and bounded in size on a big trace."""
from __future__ import annotations

import json
import os
import re
import struct
import xml.etree.ElementTree as ET

import altair as alt
import jsonschema
import pytest
from conftest import SAMPLES

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.compare import compare, expand
from exitreplay.report import charts, style
from exitreplay.report.export import png_of, save, svg_of
from exitreplay.synth.generator import generate

TRACE = "svm-mixed.v7zstd.dat"
COMPARED = ["svm-idle.v7.dat", "svm-netio.v7zstd.dat", TRACE]
ALL_KINDS = [*charts.TRACE_KINDS, "deltas", "mix", "savings", "reasons-per-trace"]
UNIT = re.compile(r"\([^)]*(count|%|µs|ms|millions|cycles)")


@pytest.fixture(scope="module")
def schema_validator():
    path = os.path.join(os.path.dirname(alt.__file__), "vegalite", alt.SCHEMA_VERSION.split(".")[0], "schema",
                        "vega-lite-schema.json")
    with open(path) as fh:
        return jsonschema.Draft7Validator(json.load(fh))


@pytest.fixture(scope="module")
def report():
    return analyze(exitreplay.read_trace(SAMPLES / TRACE))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    return compare(expand([str(SAMPLES / n) for n in COMPARED]), jobs=1, cache_dir=tmp_path_factory.mktemp("c"))


@pytest.fixture(scope="module")
def built(report, comparison):
    out = {k: charts.chart(k, [report], [TRACE]) for k in charts.TRACE_KINDS}
    out["deltas"] = charts.deltas(comparison.deltas, comparison.reference)
    out["mix"] = charts.mix(comparison)
    out["savings"] = charts.savings(comparison)
    others = [analyze(exitreplay.read_trace(SAMPLES / n)) for n in COMPARED[:2]]
    out["reasons-per-trace"] = charts.chart("reasons", [*others, report], COMPARED)
    return out


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _labels(kind):
    return COMPARED if kind in ("deltas", "mix", "savings", "reasons-per-trace") else [TRACE]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_valid_vega_lite(built, schema_validator, kind):
    spec = built[kind].to_dict()
    errors = sorted(schema_validator.iter_errors(spec), key=lambda e: list(e.path))
    assert not errors, errors[0].message[:500]
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_titles_captions_and_units(built, kind):
    spec = built[kind].to_dict()
    titles = [n["title"] for n in _walk(spec) if isinstance(n.get("title"), dict) and "text" in n["title"]]
    assert titles, "no chart title"
    for t in titles:
        assert t["text"] and t.get("subtitle"), t
        caption = " ".join(t["subtitle"])
        assert "Source:" in caption or "Reference:" in caption, caption
        for lab in _labels(kind):
            assert lab in caption, (lab, caption)
    quantitative = [(ch, n["encoding"][ch]) for n in _walk(spec) if isinstance(n.get("encoding"), dict)
                    for ch in ("x", "y") if isinstance(n["encoding"].get(ch), dict)
                    and n["encoding"][ch].get("type") == "quantitative"]
    assert quantitative
    for ch, enc in quantitative:
        assert UNIT.search(enc.get("title") or ""), f"{ch} axis {enc.get('field')!r} has no unit: {enc.get('title')!r}"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_interactive(built, kind):
    spec = built[kind].to_dict()
    nodes = list(_walk(spec))
    bound = [p for n in nodes for p in n.get("params", []) if isinstance(p, dict) and p.get("bind") == "legend"]
    assert bound, "no legend-bound selection"
    names = {p["name"] for p in bound}
    uses = [n for n in nodes if n.get("param") in names]  # conditions that fade what is not selected
    assert uses
    assert any("tooltip" in n.get("encoding", {}) for n in nodes if isinstance(n.get("encoding"), dict))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_renders_offline_to_svg_and_png(built, kind, tmp_path):
    spec = built[kind].to_dict(validate=True)
    root = ET.fromstring(svg_of(spec))
    assert root.tag.endswith("svg")
    marks = [g for g in root.iter() if "role-mark" in (g.get("class") or "")]
    drawn = [el for g in marks for el in g if el.tag.split("}")[-1] in ("path", "line", "text", "rect")]
    assert len(drawn) >= 3, f"{kind}: only {len(drawn)} marks drawn"
    png = png_of(spec, 1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert 500 <= width <= 2500 and 200 <= height <= 3000, (width, height)
    assert 5_000 < len(png) < 3_000_000
    save(built[kind], tmp_path / "c.png", png_scale=1)
    assert (tmp_path / "c.png").read_bytes() == png


def test_big_trace_is_aggregated():
    big = analyze(generate("netio", vcpus=24, seconds=0.3, seed=2))
    assert big.summary["exits"] > 100_000 and big.summary["vcpus"] > 16
    for kind in charts.TRACE_KINDS:
        spec = charts.chart(kind, [big], ["big"]).to_dict()
        rows = charts.data_rows(spec)
        assert 0 < rows <= style.ROW_BUDGET, (kind, rows)
    tl = charts.chart("timeline", [big], ["big"]).to_dict()
    assert "the 16 busiest of" in " ".join(tl["title"]["subtitle"])


def test_data_rows_counts_inline_and_named_data():
    assert charts.data_rows({"datasets": {"a": [{}] * 3}, "data": {"values": [{}] * 2}}) == 5
