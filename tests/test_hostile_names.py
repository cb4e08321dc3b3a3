"""Names a trace or a user controls (file names, labels, policy names, comm names, event names)
reach the HTML report and convert's output file names. In the report they must stay text (no tag
of theirs becomes a tag, no script block closes early); as file names they must stay inside the
output directory, never make a hidden file, and never collide with another type's file."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hostile import fmt, model, tiny_dat
from test_compare_metrics import A, write_ftrace

import exitreplay
from exitreplay.convert import convert, convert_file
from exitreplay.errors import TraceError
from exitreplay.report.html import build_html

SCRIPT = "</script><img src=x onerror=alert(1)>"
HOSTILE = [SCRIPT, '"><svg onload=alert(2)>', "../../x", "<!--", "]]></style>"]


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.starts: list[tuple[str, list]] = []
        self.ends: list[str] = []
        self.text: list[str] = []
        self.comments = 0

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, attrs))

    def handle_endtag(self, tag):
        self.ends.append(tag)

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.comments += 1

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.starts if t == tag)


def parse(page: str) -> Tags:
    t = Tags()
    t.feed(page)
    return t


def report_page(tmp_path, label: str, policy: str, comm: str) -> str:
    """The HTML report of a hand-written trace whose file name and vCPU thread name hold `comm`,
    replayed with a policy named `policy` (for VMX on an SVM trace, so a warning names it too)."""
    trace = tmp_path / f"trace-{comm.replace('/', '_')}.txt"
    write_ftrace(trace, A)
    trace.write_text(trace.read_text().replace("CPU 0/KVM", comm.replace("-", "_")))
    pol = tmp_path / "p.toml"
    quoted = "'" + policy + "'" if '"' in policy else '"' + policy + '"'
    pol.write_text(f'name = {quoted}\nisa = "vmx"\n[ops.exit]\nvmload = 1\n')
    r = exitreplay.analyze(trace, ["kvm-today", str(pol)])
    return build_html([r], [label])


@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    return parse(report_page(tmp_path_factory.mktemp("plain"), "plain", "mine", "CPU 0/KVM"))


@pytest.mark.parametrize("shift", [0, 2])
def test_hostile_names_stay_text_in_the_report(tmp_path, benign, shift):
    """The oracle is Python's HTML parser: the page with hostile names has the same tags that can
    run or hide code as the page with plain ones (charts' SVG may wrap a long title differently),
    no event-handler attribute, no comment, and shows every name as text."""
    names = HOSTILE[shift:] + HOSTILE[:shift]
    tags = parse(report_page(tmp_path, names[0], names[1], names[2]))
    for tag in ("script", "style", "img", "iframe", "object", "embed", "svg", "a", "body", "html"):
        assert tags.count(tag) == benign.count(tag), tag
    assert tags.ends.count("script") == benign.ends.count("script")
    assert not [a for _, attrs in tags.starts for a, _ in attrs if a.startswith("on")]
    assert tags.comments == benign.comments == 0
    for name in names[:2]:
        assert any(name in t for t in tags.text), name
    assert any(names[2].replace("/", "_") in t for t in tags.text)  # the file name


BAD = {
    "../../x": "would be hidden",
    ".hidden": "would be hidden",
    "x" * 300: "bytes long",
    "events": "is also that of",
}


@pytest.mark.parametrize("name", list(BAD))
def test_convert_refuses_names_that_would_escape_or_hide(tmp_path, name):
    p = tiny_dat(tmp_path / "t.dat", formats=(fmt(name=name),))
    for source in (p, exitreplay.read_trace(p)):
        with pytest.raises(TraceError) as exc:
            convert_file(p, tmp_path / "out") if source is p else convert(source, tmp_path / "out2")
        assert BAD[name] in str(exc.value) and str(p) in str(exc.value)
    outside = {q.name for q in tmp_path.iterdir()} - {"t.dat", "out", "out2"}
    assert not outside
    assert not [q for d in ("out", "out2") for q in (tmp_path / d).iterdir() if q.name.startswith(".")]


def test_convert_refuses_two_names_that_sanitise_alike(tmp_path):
    m = model(formats=(fmt(name="a/b"), fmt(name="a_b", ident=38)), events_per_cpu=(2,))
    m.pages.append(model(events_per_cpu=(2,), type_id=38).pages[0])  # CPU 1: events of type 38
    m.write(tmp_path / "t.dat")
    with pytest.raises(TraceError, match="is also that of 'a/b'"):
        convert_file(tmp_path / "t.dat", tmp_path / "out")


def test_hostile_but_harmless_names_are_written_inside(tmp_path):
    p = tiny_dat(tmp_path / "t.dat", formats=(fmt(name=SCRIPT),))
    paths, rows = convert_file(p, tmp_path / "out")
    assert rows == 5
    assert all(q.parent == tmp_path / "out" and not q.name.startswith(".") for q in paths)
    assert re.sub(r"[^A-Za-z0-9_.-]", "_", SCRIPT) + ".parquet" in {q.name for q in paths}
