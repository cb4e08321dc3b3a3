"""A v7 file cut anywhere in its data keeps every complete event before the cut, as a v6 file does,
although the BUFFER option that locates each CPU's data comes after the data.

For every real v7, v7+zstd and (public) v7+zlib recording and the sample v7 files, at many cut
offsets: the events read are, per CPU, exactly a prefix of the uncut file's events (time stamp,
pid, event, comm, flags), and, where the data is uncompressed, as many as decoding that CPU's
bytes before the cut gives (the uncut file's own BUFFER option says where they are), so no
complete event is lost. Compressed data keeps at least every chunk wholly before the cut.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from conftest import PUBLIC, REAL, SAMPLES

import exitreplay
from exitreplay.errors import TraceError, TraceWarning
from exitreplay.formats.ringbuffer import decode_pages
from exitreplay.formats.tracedat_file import TraceDatFile

FILES = [REAL / f"{rec}.{v}.dat" for rec in ("pvm-pio-small", "pvm-longmode-msr") for v in ("v7", "v7zstd")]
FILES += [SAMPLES / n for n in ("svm-idle.v7.dat", "vmx-cpu.v7.dat", "svm-mixed.v7zstd.dat", "svm-nested.v7.dat")]
ZLIB = PUBLIC / "vmx-host-6.5.v7zlib.dat"
CUTS = 12  # evenly over the data, plus random ones and the CPU boundaries


def per_cpu(tr) -> dict[int, list[tuple]]:
    cols = [tr.events.column(c).to_pylist() for c in ("ts", "cpu", "pid", "event", "comm", "flags")]
    out: dict[int, list[tuple]] = {}
    for ts, cpu, pid, ev, comm, flags in zip(*cols):
        out.setdefault(cpu, []).append((ts, pid, ev, comm, flags))
    return out


def expected_counts(tdf: TraceDatFile, cut: int) -> dict[int, int]:
    """Events per CPU in the bytes before `cut`: whole pages and the complete records of a cut page
    (uncompressed), or whole chunks (compressed), decoded from the uncut file's own CPU table."""
    out = {}
    for i, cd in enumerate(tdf.buffers[0].cpus):
        if tdf.compression == "none":
            data, _, _ = tdf.cpu_data(i)
            have = np.asarray(data[: max(0, min(cd.size, cut - cd.offset))])
        else:
            whole = [ch for ch in tdf._chunk_table(cd) if ch.pos + ch.csize <= cut]
            have = np.concatenate([np.frombuffer(tdf._chunk_bytes(cd, ch), np.uint8) for ch in whole]) \
                if whole else np.empty(0, np.uint8)
        ev = decode_pages(have, tdf.page_size, tdf.header_page, tdf.endian, tdf.long_size, cd.cpu, tdf.header_event)
        out[cd.cpu] = ev.count
    return out


def cut_points(tdf: TraceDatFile) -> list[int]:
    cpus = tdf.buffers[0].cpus
    start, end = cpus[0].offset, max(cd.offset + cd.size for cd in cpus)
    pts = {int(x) for x in np.linspace(start, end, CUTS)}
    pts |= {cd.offset + d for cd in cpus for d in (-1, 0, 1, 17)}
    # A cut before a page's time stamp (1-7 bytes in): that page must not look like a CPU boundary.
    ps = tdf.page_size
    pts |= {cd.offset + ps + d for cd in cpus for d in (1, 7) if cd.size > ps}
    pts |= set(random.Random(str(tdf.path)).sample(range(start, tdf.file_size), 4))
    pts |= {end, end + 8, tdf.file_size - 1}
    return sorted(p for p in pts if 0 < p < tdf.file_size)


def check_file(path, tmp_path):
    full = exitreplay.read_trace(path)
    ref = per_cpu(full)
    tdf = TraceDatFile(path)
    data = path.read_bytes()
    data_end = max(cd.offset + cd.size for cd in tdf.buffers[0].cpus)
    try:
        for cut in cut_points(tdf):
            p = tmp_path / "cut.dat"
            p.write_bytes(data[:cut])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tr = exitreplay.read_trace(p)
            warned = any(issubclass(w.category, TraceWarning) and "truncated" in str(w.message) for w in caught)
            assert warned or cut >= data_end + 64, f"{path.name} cut at {cut}: no warning"
            got = per_cpu(tr)
            for cpu, evs in got.items():
                assert evs == ref[cpu][: len(evs)], f"{path.name} cut at {cut}: CPU {cpu} is not a prefix"
            want = expected_counts(tdf, cut)
            for cpu, n in want.items():
                have = len(got.get(cpu, []))
                if tdf.compression == "none":
                    assert have == n, f"{path.name} cut at {cut}: CPU {cpu} has {have} events, {n} complete"
                else:
                    assert have >= n, f"{path.name} cut at {cut}: CPU {cpu} has {have} events, {n} in whole chunks"
    finally:
        tdf.close()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_cut_v7_keeps_an_exact_prefix_per_cpu(path, tmp_path):
    check_file(path, tmp_path)


def test_cut_public_zlib_recording(tmp_path):
    if not ZLIB.is_file():
        pytest.skip(f"public traces not present at {PUBLIC} (they are never copied into the project)")
    check_file(ZLIB, tmp_path)


def test_cut_zlib_file_names_the_cpus_from_cpustat(tmp_path):
    """The zlib recording lists CPUs 5, 6, 8 and 10 of 20; cut, their numbers come from CPUSTAT."""
    if not ZLIB.is_file():
        pytest.skip(f"public traces not present at {PUBLIC}")
    data = ZLIB.read_bytes()
    p = tmp_path / "cut.dat"
    p.write_bytes(data[:len(data) - 300])
    with pytest.warns(TraceWarning):
        tr = exitreplay.read_trace(p)
    assert set(tr.events.column("cpu").to_pylist()) == {5, 6, 8, 10}
    assert any("CPU numbers from the CPUSTAT options" in w for w in tr.meta.warnings)


def test_cut_before_the_data_is_the_projects_error(tmp_path):
    path = REAL / "pvm-pio-small.v7zstd.dat"
    tdf = TraceDatFile(path)
    first = tdf.sections["options"]
    tdf.close()
    p = tmp_path / "head.dat"
    p.write_bytes(path.read_bytes()[: first + 20])
    with pytest.raises(TraceError, match="truncated"):
        exitreplay.read_trace(p)


@pytest.mark.parametrize("name", ["pvm-longmode-msr.v7.dat", "pvm-longmode-msr.v7zstd.dat"])
def test_convert_streams_a_cut_v7_file_as_read_trace_reads_it(tmp_path, name):
    from exitreplay.convert import convert_file

    data = (REAL / name).read_bytes()
    tdf = TraceDatFile(REAL / name)
    cpus = tdf.buffers[0].cpus
    cut = (cpus[0].offset + cpus[-1].offset + cpus[-1].size) // 2
    tdf.close()
    p = tmp_path / "cut.dat"
    p.write_bytes(data[:cut])
    with pytest.warns(TraceWarning):
        n = len(exitreplay.read_trace(p))
    with pytest.warns(TraceWarning):
        _paths, rows = convert_file(p, tmp_path / "out", chunk_bytes=1 << 15)
    assert rows == n > 0
