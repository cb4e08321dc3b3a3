"""Templates: the header and event-format sections of a real trace.dat, kept as small text files.

A generated file must carry the kernel's own layouts, so the writer copies these sections
verbatim. `extract_template` takes them from any trace.dat; docs/templates.md says where each
shipped template came from.
"""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..formats.eventformat import EventFormat, parse_format

SYSTEMS = ("kvm", "sched")


@dataclasses.dataclass
class Template:
    name: str
    header_page: bytes
    header_event: bytes
    ftrace_formats: list[bytes]
    event_formats: dict[str, list[bytes]]  # system -> format texts
    info: dict

    @property
    def formats(self) -> dict[str, EventFormat]:
        out = {}
        for system, texts in self.event_formats.items():
            for t in texts:
                f = parse_format(t, system)
                out[f.name] = f
        return out


def extract_template(trace_dat: str | Path, out_dir: str | Path, systems: tuple[str, ...] = SYSTEMS) -> Path:
    """Copy the header and event-format sections of `trace_dat` into out_dir (kallsyms/printk left out)."""
    from ..formats.tracedat_file import TraceDatFile

    f = TraceDatFile(trace_dat)
    out = Path(out_dir)
    (out / "events").mkdir(parents=True, exist_ok=True)
    (out / "header_page").write_bytes(f.header_page_text)
    (out / "header_event").write_bytes(f.header_event_text)
    (out / "ftrace").mkdir(exist_ok=True)
    for i, t in enumerate(f.ftrace_formats):
        (out / "ftrace" / f"{i:03d}").write_bytes(t)
    for system in systems:
        d = out / "events" / system
        d.mkdir(parents=True, exist_ok=True)
        for t in f.event_format_texts.get(system, []):
            name = parse_format(t, system).name
            (d / name).write_bytes(t)
    info = {"source": Path(trace_dat).name, "uname": f.option_text(5), "trace_cmd": f.option_text(9),
            "page_size": f.page_size, "long_size": f.long_size, "endian": f.endian}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def load_template(name_or_dir: str = "linux-6.18") -> Template:
    p = Path(name_or_dir)
    if not p.is_dir():
        root = resources.files(__package__).joinpath("templates", name_or_dir)
        if not root.is_dir():
            raise UsageError(f"unknown template {name_or_dir!r} (built-ins: {', '.join(template_names())})")
        p = Path(str(root))
    fmts: dict[str, list[bytes]] = {}
    for sysdir in sorted((p / "events").iterdir()):
        fmts[sysdir.name] = [f.read_bytes() for f in sorted(sysdir.iterdir())]
    return Template(p.name, (p / "header_page").read_bytes(), (p / "header_event").read_bytes(),
                    [f.read_bytes() for f in sorted((p / "ftrace").iterdir())], fmts,
                    json.loads((p / "info.json").read_text()))


def template_names() -> list[str]:
    root = resources.files(__package__).joinpath("templates")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_"))
