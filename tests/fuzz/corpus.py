"""The seed corpus: small inputs made from real recordings and the project's samples.

A trace.dat seed is a `DatModel`: the header texts, event formats, command lines and ring-buffer
pages of a real file (only its first pages, and only the formats of the events in them), written
by the project's own trace.dat writer as v6, v7, v7+zstd or v7+zlib. Keeping the model lets the
mutator edit format texts and pages even where the file will compress them. Text seeds are the
first lines of the real `trace-cmd report`, ftrace and `perf script` files; TOML seeds are the
built-in policies and cost profiles. Every seed is built the same way each time (no clock, no
randomness), so a campaign is reproducible from its seed number.
"""
from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "data" / "real"
SAMPLES = ROOT / "sample_traces"
PUBLIC = ROOT.parent / "shared" / "public-traces"  # read in place, never copied (no licence)
PACKAGE = ROOT / "exitreplay"

CONTAINERS = ((6, "none"), (7, "none"), (7, "zstd"), (7, "zlib"))
# Byte offset of the compression name in a v7 header: magic (10), "7\0", endian, long size, page size.
COMPRESSION_AT = 18


@dataclasses.dataclass
class DatModel:
    """What a trace.dat holds, before it is written."""

    header_page: bytes
    header_event: bytes
    ftrace: list[bytes]
    events: dict[str, list[bytes]]  # system -> format texts
    cmdlines: bytes
    pages: list[np.ndarray]  # per CPU, uint8, whole pages
    page_size: int = 4096
    writer_page_size: int | None = None  # the page size the writer is told (a mutation may lie)
    clock: str = "local"
    uname: str = "Linux fuzz 6.18 x86_64"
    version: int = 7
    compression: str = "none"

    def copy(self) -> DatModel:
        return dataclasses.replace(self, ftrace=list(self.ftrace),
                                   events={k: list(v) for k, v in self.events.items()},
                                   pages=[p.copy() for p in self.pages])

    def write(self, path: Path) -> None:
        from exitreplay.synth.templates import Template
        from exitreplay.synth.writer import write_tracedat

        tpl = Template("fuzz", self.header_page, self.header_event, self.ftrace, self.events, {})
        comp = "zstd" if self.compression == "zlib" else self.compression
        with _zlib_for_zstd(self.compression == "zlib"):
            write_tracedat(path, self.pages, tpl, version=self.version, compression=comp,
                           cmdlines=self.cmdlines, clock=self.clock, uname=self.uname,
                           page_size=self.writer_page_size or self.page_size)
        if self.compression == "zlib":
            with open(path, "r+b") as fh:
                fh.seek(COMPRESSION_AT)
                fh.write(b"zlib\0")


class _ZlibCompressor:
    def __init__(self, level: int = 6):
        self.level = level

    def compress(self, data) -> bytes:
        return zlib.compress(bytes(data), self.level)


@contextlib.contextmanager
def _zlib_for_zstd(active: bool) -> Iterator[None]:
    """The project's writer compresses with zstd only; for a zlib file it gets a zlib compressor
    under zstd's name, and the header's "zstd" (same length) is then overwritten with "zlib"."""
    if not active:
        yield
        return
    import zstandard

    saved = zstandard.ZstdCompressor
    zstandard.ZstdCompressor = _ZlibCompressor  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        zstandard.ZstdCompressor = saved  # type: ignore[misc]


@dataclasses.dataclass
class Seed:
    name: str
    kind: str  # "dat", "perf", "text", "policy", "costs"
    data: bytes
    model: object = None  # a DatModel (dat) or a perfseed.PerfModel (perf)


def model_from(path: Path, pages_per_cpu: int = 3, max_cpus: int = 4, cmdline_lines: int = 40) -> DatModel:
    """The first pages of a real trace.dat with the formats of the events in them."""
    from exitreplay.formats.ringbuffer import decode_pages
    from exitreplay.formats.tracedat_file import OPT_UNAME, TraceDatFile

    tdf = TraceDatFile(path)
    try:
        ps = tdf.page_size
        pages, ids = [], set()
        for i in range(min(len(tdf.buffers[0].cpus), max_cpus)):
            data, _, _ = tdf.cpu_data(i)
            n = data.size // ps
            # Pages spread over the recording, in order: more kinds of events than the first few.
            picks = sorted({int(k) for k in np.linspace(0, n - 1, pages_per_cpu)}) if n else []
            part = np.concatenate([np.asarray(data[k * ps: (k + 1) * ps], np.uint8) for k in picks]) \
                if picks else np.empty(0, np.uint8)
            ev = decode_pages(part, ps, tdf.header_page, tdf.endian, tdf.long_size, i, tdf.header_event)
            off = ev.offset.astype(np.int64)
            ids |= set(part[off].astype(np.int64) | (part[off + 1].astype(np.int64) << 8)) if off.size else set()
            pages.append(part)
        formats = tdf.formats
        keep = {fid for fid in formats if fid in ids}
        events: dict[str, list[bytes]] = {}
        for system, texts in tdf.event_format_texts.items():
            from exitreplay.formats.eventformat import parse_format

            kept = [t for t in texts if parse_format(t, system).id in keep]
            if kept:
                events[system] = kept
        lines = tdf.cmdlines.splitlines(keepends=True)[:cmdline_lines]
        return DatModel(tdf.header_page_text, tdf.header_event_text, tdf.ftrace_formats[:2], events,
                        b"".join(lines), pages, ps, clock=tdf.trace_clock or "local",
                        uname=tdf.option_text(OPT_UNAME) or "Linux fuzz")
    finally:
        tdf.close()


def text_head(path: Path, events: int = 32, blocks: int = 4) -> bytes:
    """The header lines and `events` other lines of a text trace, taken in `blocks` runs spread
    over the file (in file order)."""
    lines = path.read_bytes().splitlines(keepends=True)
    head = [ln for ln in lines[:40] if ln.startswith((b"#", b"cpus=", b"version ="))]
    body = [i for i, ln in enumerate(lines) if not ln.startswith((b"#", b"cpus=", b"version ="))]
    run = max(1, events // blocks)
    starts = np.linspace(0, max(0, len(body) - run), blocks).astype(int)
    keep = sorted({body[j] for s in starts for j in range(s, min(s + run, len(body)))})
    return b"".join(head + [lines[i] for i in keep])


# (file, containers) of the trace.dat models: the real recordings in every container, samples
# (SVM, VMX, nested, Linux 4.19 layouts) in one each.
DAT_SOURCES = (
    (REAL / "pvm-pio-small.v7zstd.dat", CONTAINERS),
    (REAL / "pvm-longmode-msr.v6.dat", ((6, "none"), (7, "zstd"))),
    (SAMPLES / "svm-nested-linux4.19.v7zstd.dat", ((7, "zstd"),)),
    (SAMPLES / "svm-syscall-heavy-linux4.19.v6.dat", ((6, "none"),)),
    (SAMPLES / "vmx-syscall-heavy.v7zstd.dat", ((7, "zlib"),)),
    (SAMPLES / "svm-netio.v7zstd.dat", ((7, "none"),)),
    (SAMPLES / "svm-mixed.v7zstd.dat", ((7, "zstd"),)),
)
TEXT_SOURCES = tuple(REAL / f"{rec}.{kind}.txt" for rec in ("pvm-pio-small", "pvm-longmode-msr")
                     for kind in ("report", "ftrace", "perf-script"))


def build_seeds(tmp: Path) -> list[Seed]:
    """Every seed, in a fixed order (the mutator picks them by index)."""
    seeds: list[Seed] = []
    sources = list(DAT_SOURCES)
    if (PUBLIC / "vmx-host-6.5.v7zlib.dat").is_file():
        sources.append((PUBLIC / "vmx-host-6.5.v7zlib.dat", ((7, "zlib"),)))
    for src, containers in sources:
        base = model_from(src)
        for version, comp in containers:
            m = dataclasses.replace(base.copy(), version=version, compression=comp)
            p = tmp / f"seed-{src.stem}-v{version}{comp}.dat"
            m.write(p)
            seeds.append(Seed(p.name, "dat", p.read_bytes(), m))
    for src in TEXT_SOURCES:
        seeds.append(Seed(src.name, "text", text_head(src)))
    if (PUBLIC / "vmx-host-3.2-report.txt").is_file():
        seeds.append(Seed("vmx-host-3.2-report.txt", "text", text_head(PUBLIC / "vmx-host-3.2-report.txt", 48)))
    for p in sorted((PACKAGE / "replay" / "policies").glob("*.toml")):
        seeds.append(Seed(p.name, "policy", p.read_bytes()))
    for p in sorted((PACKAGE / "replay" / "costs").glob("*.toml")):
        seeds.append(Seed(p.name, "costs", p.read_bytes()))
    seeds += perf_seeds(tmp)
    return seeds


# perf.data made by `exitreplay synth --output-format perf`: (profile, pipe mode, records per
# COMPRESSED record), besides the real recordings.
PERF_SYNTH = (("mixed", False, 0), ("nested", True, 16), ("syscall-heavy", False, 8))


def perf_seeds(tmp: Path) -> list[Seed]:
    from .perfseed import model_of, synthesized

    models = [(p.name, model_of(p)) for p in sorted(REAL.glob("*.perf.data"))]
    models += [(f"synth-{prof}.perf.data", synthesized(tmp, prof, 0.005, pipe, comp)) for prof, pipe, comp in PERF_SYNTH]
    return [Seed(f"seed-{name}", "perf", m.write(), m) for name, m in models]
