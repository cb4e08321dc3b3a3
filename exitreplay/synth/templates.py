"""Templates: the header and event-format sections a generated trace.dat carries, as small files.

A generated file must carry the kernel's own layouts, so the writer copies these texts verbatim.
A template is a directory:

    template.toml          where the texts came from (docs/templates.md says the same)
    header_page.txt        events/header_page (ring-buffer page header layout)
    header_event.txt       events/header_event (record header bit layout)
    ftrace/NNN-name.txt    ftrace's own event formats, in file order
    events/SYSTEM/NAME.txt the formats of the kept event systems

`extract_template` takes them from a real trace.dat (kallsyms and printk formats left out: they
are most of a file's size and nothing we write refers to them); `build_template_from_source`
makes them from a kernel source tree, for a kernel generation we have no recording of.
"""
from __future__ import annotations

import dataclasses
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..formats.eventformat import EventFormat, parse_format

DEFAULT_TEMPLATE = "linux-6.18"
SYSTEMS = ("kvm", "sched")


@dataclasses.dataclass
class Template:
    name: str
    header_page: bytes
    header_event: bytes
    ftrace_formats: list[bytes]
    event_formats: dict[str, list[bytes]]  # system -> format texts
    info: dict

    @cached_property
    def formats(self) -> dict[str, EventFormat]:
        """Event name -> parsed format (every system of the template)."""
        out = {}
        for system, texts in self.event_formats.items():
            for t in texts:
                f = parse_format(t, system)
                out[f.name] = f
        return out

    def has(self, event: str) -> bool:
        return event in self.formats

    def format(self, event: str) -> EventFormat:
        try:
            return self.formats[event]
        except KeyError:
            raise UsageError(f"template {self.name} has no format for event {event!r}") from None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_dir(out: Path, header_page: bytes, header_event: bytes, ftrace: list[tuple[str, bytes]],
               events: dict[str, list[tuple[str, bytes]]], info: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "header_page.txt").write_bytes(header_page)
    (out / "header_event.txt").write_bytes(header_event)
    (out / "ftrace").mkdir(exist_ok=True)
    for i, (name, text) in enumerate(ftrace):
        (out / "ftrace" / f"{i:03d}-{name}.txt").write_bytes(text)
    for system, texts in events.items():
        d = out / "events" / system
        d.mkdir(parents=True, exist_ok=True)
        for name, text in texts:
            (d / f"{name}.txt").write_bytes(text)
    lines = [f"{k} = {_toml_value(v)}" for k, v in info.items()]
    (out / "template.toml").write_text("\n".join(lines) + "\n")
    return out


def extract_template(trace_dat: str | Path, out_dir: str | Path, systems: tuple[str, ...] = SYSTEMS,
                     description: str | None = None) -> Path:
    """Copy the header, ftrace and `systems` event-format sections of a real trace.dat into out_dir."""
    from ..formats.tracedat_file import OPT_UNAME, OPT_VERSION, TraceDatFile

    f = TraceDatFile(trace_dat)
    try:
        ftrace = [(parse_format(t, "ftrace").name, t) for t in f.ftrace_formats]
        events = {s: [(parse_format(t, s).name, t) for t in f.event_format_texts.get(s, [])] for s in systems}
        missing = [s for s in systems if not events[s]]
        if missing:
            raise UsageError(f"{trace_dat}: no event formats for system(s) {', '.join(missing)}")
        info = {
            "description": description or f"sections of {Path(trace_dat).name}",
            "source": Path(trace_dat).name,
            "uname": f.option_text(OPT_UNAME) or "",
            "trace_cmd": f.option_text(OPT_VERSION) or "",
            "page_size": f.page_size,
            "long_size": f.long_size,
            "endian": f.endian,
            "systems": list(systems),
        }
    finally:
        f.close()
    return _write_dir(Path(out_dir), f.header_page_text, f.header_event_text, ftrace, events, info)


# The files of a 4.19 tree that define the kvm and sched events and the macros their print
# formats expand (reason tables, APIC registers, task states, vectors, errno).
SOURCE_HEADERS = {"kvm": ["include/trace/events/kvm.h", "arch/x86/kvm/trace.h"],
                  "sched": ["include/trace/events/sched.h"]}
SOURCE_MACROS = ["arch/x86/include/uapi/asm/vmx.h", "arch/x86/include/uapi/asm/svm.h",
                 "arch/x86/include/asm/apicdef.h", "arch/x86/include/uapi/asm/kvm.h",
                 "include/uapi/linux/kvm.h", "include/uapi/asm-generic/errno-base.h", "include/linux/sched.h"]
# Event IDs are handed out at boot in registration order (built-in sched before the kvm module);
# the source does not fix them, so these bases are ours.
SOURCE_FIRST_IDS = {"sched": 300, "kvm": 1000}


def _header_page_text(page_size: int, long_size: int, char_signed: bool) -> bytes:
    """kernel/trace/ring_buffer.c ring_buffer_print_page_header() (unchanged from 2.6.3x to 6.x
    except the signedness of `char`, which follows the compiler's)."""
    data_off = 8 + long_size
    return (f"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            f"\tfield: local_t commit;\toffset:8;\tsize:{long_size};\tsigned:1;\n"
            f"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            f"\tfield: char data;\toffset:{data_off};\tsize:{page_size - data_off};\tsigned:{int(char_signed)};\n"
            ).encode()


HEADER_EVENT_TEXT = (b"# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
                     b"\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n"
                     b"\ttime_stamp : type == 31\n\tdata max type_len  == 28\n")


def build_template_from_source(tree: str | Path, out_dir: str | Path, kernel: str, *,
                               description: str, source: str) -> Path:
    """A template from an x86-64 kernel source tree (see exitreplay.synth.kernelsrc).

    header_page/header_event: the texts kernel/trace/ring_buffer.c prints (x86-64, 4 KiB pages,
    signed char as before Linux 6.2). No ftrace formats: trace-cmd needs none to read kvm/sched events.
    """
    from .kernelsrc import build_formats

    tree = Path(tree)
    missing = [p for p in [*SOURCE_MACROS, *(h for hs in SOURCE_HEADERS.values() for h in hs)]
               if not (tree / p).is_file()]
    if missing:
        raise UsageError(f"{tree} is not a kernel tree with {', '.join(missing)}")
    fmts = build_formats(tree, SOURCE_HEADERS, SOURCE_MACROS, SOURCE_FIRST_IDS)
    events = {s: [(n, t.encode()) for n, t in texts] for s, texts in fmts.items()}
    info = {"description": description, "source": source, "kernel": kernel,
            "uname": f"Linux synth {kernel} x86_64", "trace_cmd": "", "page_size": 4096, "long_size": 8,
            "endian": "little", "systems": list(SOURCE_HEADERS), "event_ids": "assigned by exitreplay"}
    return _write_dir(Path(out_dir), _header_page_text(4096, 8, True), HEADER_EVENT_TEXT, [], events, info)


def _root(name_or_dir: str) -> Path:
    p = Path(name_or_dir)
    if p.is_dir() and (p / "template.toml").is_file():
        return p
    root = resources.files(__package__).joinpath("templates", name_or_dir)
    if not root.is_dir():
        raise UsageError(f"unknown template {name_or_dir!r} (built-ins: {', '.join(template_names())}, "
                         "or a template directory)")
    return Path(str(root))


def load_template(name_or_dir: str = DEFAULT_TEMPLATE) -> Template:
    """A built-in template by name (`template_names()`), or a template directory."""
    p = _root(name_or_dir)
    fmts: dict[str, list[bytes]] = {}
    events = p / "events"
    if events.is_dir():
        for sysdir in sorted(events.iterdir()):
            if sysdir.is_dir():
                fmts[sysdir.name] = [f.read_bytes() for f in sorted(sysdir.glob("*.txt"))]
    ftrace = sorted((p / "ftrace").glob("*.txt")) if (p / "ftrace").is_dir() else []
    info = tomllib.loads((p / "template.toml").read_text())
    return Template(p.name, (p / "header_page.txt").read_bytes(), (p / "header_event.txt").read_bytes(),
                    [f.read_bytes() for f in ftrace], fmts, info)


def template_names() -> list[str]:
    root = resources.files(__package__).joinpath("templates")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.joinpath("template.toml").is_file())


def main(argv: list[str] | None = None) -> None:
    """python -m exitreplay.synth.templates extract TRACE.dat OUT_DIR | source KERNEL_TREE OUT_DIR KERNEL"""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m exitreplay.synth.templates", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="a template from the sections of a real trace.dat")
    ex.add_argument("trace_dat")
    ex.add_argument("out_dir")
    ex.add_argument("--systems", default=",".join(SYSTEMS))
    ex.add_argument("--description")
    src = sub.add_parser("source", help="a template from a kernel source tree (kvm and sched formats)")
    src.add_argument("tree")
    src.add_argument("out_dir")
    src.add_argument("kernel", help="kernel version, e.g. 4.19.124")
    src.add_argument("--description", default="")
    src.add_argument("--source", default="", help="where the tree came from, for template.toml")
    a = ap.parse_args(argv)
    if a.cmd == "extract":
        out = extract_template(a.trace_dat, a.out_dir, tuple(a.systems.split(",")), a.description)
    else:
        out = build_template_from_source(a.tree, a.out_dir, a.kernel, description=a.description, source=a.source)
    print(out)


if __name__ == "__main__":
    main()
