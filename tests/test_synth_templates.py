"""Templates: the shipped linux-6.18 one is exactly what a real recording carries; the linux-4.19 one
has the older kvm_exit generation, laid out as a C compiler lays out the kernel's struct."""
from __future__ import annotations

import numpy as np

from exitreplay.formats.ringbuffer import decode_pages
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.synth.kernelsrc import build_formats
from exitreplay.synth.payloads import payload_size
from exitreplay.synth.templates import extract_template, load_template, template_names


def _fields(fmt):
    return [(f.name, f.type, f.offset, f.size, f.signed) for f in fmt.own_fields]


def test_shipped_6_18_template_is_the_real_files_sections(tmp_path, real_dir):
    src = real_dir / "pvm-pio-small.v7zstd.dat"
    again = load_template(str(extract_template(src, tmp_path / "t")))
    shipped = load_template("linux-6.18")
    f = TraceDatFile(src)
    assert shipped.header_page == f.header_page_text and shipped.header_event == f.header_event_text
    assert shipped.ftrace_formats == again.ftrace_formats == f.ftrace_formats
    for system in ("kvm", "sched"):
        assert sorted(shipped.event_formats[system]) == sorted(f.event_format_texts[system])
    assert shipped.event_formats == again.event_formats
    exit_ = shipped.format("kvm_exit")
    assert [x.name for x in exit_.own_fields][-2:] == ["vcpu_id", "requests"]


def test_record_sizes_are_the_kernels(real_dir):
    """payload_size (sizeof the event struct) matches the record sizes in a real recording."""
    f = TraceDatFile(real_dir / "pvm-longmode-msr.v6.dat")
    data = np.frombuffer(f._mm, np.uint8)
    seen = {}
    for cpu in range(f.cpus):
        arr, off, _ = f.cpu_data(cpu)
        ev = decode_pages(arr, f.page_size, f.header_page, "little", 8, cpu, f.header_event, base_offset=off)
        ids = data[ev.offset].astype(int) | data[ev.offset + 1].astype(int) << 8
        for i, s in zip(ids.tolist(), ev.size.tolist()):
            seen[i] = s
    fmts = f.formats
    assert len(seen) >= 8
    for eid, size in seen.items():
        assert payload_size(fmts[eid]) == size, fmts[eid].name


def test_4_19_template_has_the_old_layouts():
    t = load_template("linux-4.19")
    assert "linux-4.19" in template_names()
    assert _fields(t.format("kvm_exit")) == [
        ("exit_reason", "unsigned int", 8, 4, False), ("guest_rip", "unsigned long", 16, 8, False),
        ("isa", "u32", 24, 4, False), ("info1", "u64", 32, 8, False), ("info2", "u64", 40, 8, False)]
    assert _fields(t.format("kvm_entry")) == [("vcpu_id", "unsigned int", 8, 4, False)]
    assert not t.has("kvm_nested_vmenter") and t.has("kvm_nested_vmrun")
    # Before Linux 6.2 x86 char was signed: comm arrays say so.
    assert ("prev_comm", "char", 8, 16, True) == _fields(t.format("sched_switch"))[0]
    assert b"signed:1;" in t.header_page.splitlines()[-1]
    text = next(x for x in t.event_formats["kvm"] if x.startswith(b"name: kvm_exit\n")).decode()
    assert 'print fmt: "reason %s rip 0x%lx info %llx %llx", (REC->isa == 1) ? __print_symbolic(REC->exit_reason, ' \
           '{ 0, "EXCEPTION_NMI" }' in text
    assert '{ 0x040 + 14, "PF excp" }' in text and '{ 0x07c, "msr" }' in text


def test_formats_built_from_a_source_tree(tmp_path):
    """A made-up tree: fields at C alignment, macros expanded into the print format, stringified
    arguments and pasted tokens as the preprocessor makes them."""
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "defs.h").write_text(
        "#define ANSWER 42\n#define BASE 0x040\n#define E_VECTOR 3\n#define NAME(x) { BASE + x##_VECTOR, \"#\" #x }\n"
        "#define TABLE NAME(E), \\\n\t{ ANSWER, \"answer\" }\n")
    (tmp_path / "inc" / "ev.h").write_text(
        "TRACE_EVENT(demo,\n\tTP_PROTO(int a),\n\tTP_ARGS(a),\n\tTP_STRUCT__entry(\n"
        "\t\t__field(\tu8,\tsmall\t)\n\t\t__field(\tunsigned long,\tbig\t)\n"
        "\t\t__array(\tchar,\tname,\t16\t)\n\t\t__field(\tbool,\tflag\t)\n\t),\n"
        "\tTP_fast_assign(__entry->small = a;),\n"
        "\tTP_printk(\"s %u b %lx\" \" %s\", __entry->small,\n\t\t__print_symbolic(__entry->big, TABLE),\n"
        "\t\t__entry->name /* a comment */)\n);\n")
    out = build_formats(tmp_path, {"demo": ["inc/ev.h"]}, ["inc/defs.h"], {"demo": 77})
    [(name, text)] = out["demo"]
    assert name == "demo"
    lines = text.splitlines()
    assert lines[:3] == ["name: demo", "ID: 77", "format:"]
    assert "\tfield:u8 small;\toffset:8;\tsize:1;\tsigned:0;" in lines
    assert "\tfield:unsigned long big;\toffset:16;\tsize:8;\tsigned:0;" in lines
    assert "\tfield:char name[16];\toffset:24;\tsize:16;\tsigned:1;" in lines
    assert "\tfield:bool flag;\toffset:40;\tsize:1;\tsigned:0;" in lines
    assert lines[-1] == ('print fmt: "s %u b %lx %s", REC->small, __print_symbolic(REC->big, '
                         '{ 0x040 + 3, "#" "E" }, { 42, "answer" }), REC->name')
