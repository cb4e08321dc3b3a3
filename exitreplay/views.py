"""`--event vmexit|ioport|mmio|msr|npf`: the exit table by what the exit was about, as
`perf kvm stat report --event` groups it.

Each exit counts once, under the first event of the kind in its episode (between its kvm_exit and
its kvm_entry, on its vCPU thread): an IN that goes to QEMU and an MMIO read that QEMU completes
trace kvm_pio / kvm_mmio twice, and the episode is one exit either way. The statistics are the
exit table's (count, share, exit-handling time total, mean, percentiles, max, min), over the
exits the view holds.

- ioport: kvm_pio's port and direction (rw: 1 write, 0 read).
- mmio: kvm_mmio's gpa and direction (type: 2 write; 0 unsatisfied-read and 1 read are reads).
- msr: kvm_msr's index (named, kvm/state.py) and direction (write: 1 wrmsr).
- npf: kvm_page_fault's fault address in 2 MiB regions (the large-page size) and the access from
  its error code (x86 #PF bits, which KVM uses for NPF and EPT violations alike: bit 1 write,
  bit 4 instruction fetch).
"""
from __future__ import annotations

import numpy as np
import polars as pl

from .errors import UsageError
from .kvm import state
from .stats import GroupIndex, latency_tables

KINDS = ("vmexit", "ioport", "mmio", "msr", "npf")
EVENT_OF = {"ioport": "kvm_pio", "mmio": "kvm_mmio", "msr": "kvm_msr", "npf": "kvm_page_fault"}
# Each view's key columns and their types, as _keys gives them (the streamed fold's value counts
# are keyed by them).
KEY_TYPES = {"ioport": {"port": pl.UInt32, "direction": pl.Boolean}, "mmio": {"gpa": pl.UInt64, "direction": pl.Boolean},
             "msr": {"msr": pl.UInt32, "direction": pl.Boolean}, "npf": {"region": pl.UInt64, "access": pl.Utf8}}
KEY_COLUMNS = {"vmexit": ["reason"], **{kind: list(types) for kind, types in KEY_TYPES.items()}}
NPF_REGION_BITS = 21  # 2 MiB
PF_WRITE, PF_FETCH = 1 << 1, 1 << 4


def _keys(kind: str, t: pl.DataFrame) -> pl.DataFrame:
    """The view's key columns of each event, as numbers (labelled once per group, in _label)."""
    if kind == "ioport":
        return t.select(pl.col("port").cast(pl.UInt32), (pl.col("rw") != 0).alias("direction"))
    if kind == "mmio":
        return t.select(pl.col("gpa").cast(pl.UInt64), (pl.col("type") == 2).alias("direction"))
    if kind == "msr":
        return t.select(pl.col("ecx").cast(pl.UInt32).alias("msr"), (pl.col("write") != 0).alias("direction"))
    ec = pl.col("error_code").cast(pl.UInt64)
    return t.select(
        (pl.col("fault_address").cast(pl.UInt64) // (1 << NPF_REGION_BITS) * (1 << NPF_REGION_BITS)).alias("region"),
        pl.when((ec & PF_FETCH) != 0).then(pl.lit("fetch")).when((ec & PF_WRITE) != 0).then(pl.lit("write"))
        .otherwise(pl.lit("read")).alias("access"))


def label(kind: str, df: pl.DataFrame) -> pl.DataFrame:
    """Key columns as people read them: hex addresses and ports, MSR names, read/write."""
    def hexes(col: str, suffix: str = "") -> pl.Series:
        return pl.Series(col, [f"0x{v:x}{suffix}" for v in df[col].to_list()], pl.Utf8)

    rw = pl.when(pl.col("direction")).then(pl.lit("write")).otherwise(pl.lit("read")).alias("direction")
    if kind == "ioport":
        return df.with_columns(hexes("port"), rw)
    if kind == "mmio":
        return df.with_columns(hexes("gpa"), rw)
    if kind == "msr":
        return df.with_columns(pl.Series("msr", [state.msr_label(v) for v in df["msr"].to_list()], pl.Utf8), rw)
    return df.with_columns(hexes("region", "/2M"))


class EpisodeLocator:
    """Which episode of `ep` holds an event: the thread's last exit before the event, if the
    event comes before that exit's entry (or, without one, the thread's next kvm_exit in `exits`,
    the trace's or the view's: `ep` may hold only some of them). Sorted once, asked per kind."""

    def __init__(self, ep: pl.DataFrame, exits: pl.DataFrame):
        e_pid = ep["pid"].to_numpy().astype(np.int64)
        e_row = ep["exit_row"].to_numpy().astype(np.int64)
        self.order = np.lexsort((e_row, e_pid))
        self.k_ep = (e_pid[self.order] << 40) | e_row[self.order]
        end = ep["entry_row"].cast(pl.Int64).fill_null(-1).to_numpy()[self.order]
        if (end < 0).any():
            x_pid, x_row = exits["pid"].to_numpy().astype(np.int64), exits["row"].to_numpy().astype(np.int64)
            k_x = np.sort((x_pid << 40) | x_row)
            at = np.searchsorted(k_x, self.k_ep, "right")
            nxt = k_x[np.minimum(at, k_x.size - 1)] if k_x.size else np.zeros(self.k_ep.size, np.int64)
            same = (at < k_x.size) & ((nxt >> 40) == (self.k_ep >> 40))
            end = np.where(end >= 0, end, np.where(same, nxt & ((1 << 40) - 1), np.iinfo(np.int64).max))
        self.end = end

    def __call__(self, pid: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The index in `ep` of each event's episode (-1: none)."""
        if self.k_ep.size == 0 or row.size == 0:
            return np.full(row.size, -1, np.int64)
        k_ev = (pid.astype(np.int64) << 40) | row.astype(np.int64)
        p = np.maximum(np.searchsorted(self.k_ep, k_ev, "right") - 1, 0)
        ok = ((self.k_ep[p] >> 40) == (k_ev >> 40)) & (row < self.end[p]) & (k_ev >= self.k_ep[0])
        return np.where(ok, self.order[p], -1)


def keyed_episodes(report, kind: str) -> pl.DataFrame:
    """The report's episodes that carry an event of the kind, with the view's key columns."""
    return keyed(report.episodes, report.trace, kind)


def keyed(ep: pl.DataFrame, tr, kind: str, locate: EpisodeLocator | None = None) -> pl.DataFrame:
    """The episodes of `ep` that carry an event of the kind in trace (or view) `tr`, each with the
    key columns of its first such event (`locate`: a locator over ep and tr, to share it)."""
    key_cols = KEY_COLUMNS[kind]
    name = EVENT_OF[kind]
    if tr is None or not tr.has(name) or ep.height == 0 or not tr.has("kvm_exit"):
        return ep.head(0).with_columns(*[pl.lit(None, KEY_TYPES[kind][c]).alias(c) for c in key_cols])
    t = tr.df(name)
    locate = locate or EpisodeLocator(ep, tr.df("kvm_exit").select("pid", "row"))
    idx = locate(t["pid"].to_numpy(), t["row"].to_numpy())
    at = np.flatnonzero(idx >= 0)
    # the event table is in row order: an episode's first index in it is its earliest event
    eps, first = np.unique(idx[at], return_index=True)
    return pl.concat([ep[eps], _keys(kind, t[at[first]])], how="horizontal")


def keyed_views(ep: pl.DataFrame, tr, kinds) -> dict[str, pl.DataFrame]:
    """keyed() for each kind, the episodes located once."""
    locate = None
    if tr is not None and tr.has("kvm_exit") and ep.height:
        locate = EpisodeLocator(ep, tr.df("kvm_exit").select("pid", "row"))
    return {kind: keyed(ep, tr, kind, locate) for kind in kinds}


def event_view(report, kind: str) -> pl.DataFrame:
    """One row per key of the kind: exits, timed, total_ns, mean_ns, p50/p90/p99_ns, max_ns, min_ns,
    exits_pct, time_pct (the exit table's columns)."""
    if kind not in KINDS:
        raise UsageError(f"unknown --event {kind!r} (choose from {', '.join(KINDS)})")
    if kind == "vmexit":
        return report.latency
    if not report.episodes.height and kind in report.event_views:  # a streamed Report's
        return report.event_views[kind]
    ep = keyed_episodes(report, kind)
    keys = KEY_COLUMNS[kind]
    if ep.height == 0:
        return empty_view(kind)
    return label(kind, latency_tables(ep, {"v": keys}, GroupIndex(ep, keys))["v"])


def empty_view(kind: str) -> pl.DataFrame:
    """The table of a view no exit falls in."""
    return pl.DataFrame(schema={**{k: pl.Utf8 for k in KEY_COLUMNS[kind]}, "exits": pl.UInt32})


def sort_view(df: pl.DataFrame, key: str, keys: list[str]) -> pl.DataFrame:
    """--key sample|time|mean|max|min|p50|p90|p99 (perf kvm stat's keys, plus percentiles)."""
    col = SORT_KEYS.get(key)
    if col is None:
        raise UsageError(f"unknown --key {key!r} (choose from {', '.join(SORT_KEYS)})")
    if df.height == 0 or col not in df.columns:
        return df
    return df.sort([col, *keys], descending=[True] + [False] * len(keys), nulls_last=True)


SORT_KEYS = {"sample": "exits", "time": "total_ns", "mean": "mean_ns", "max": "max_ns", "min": "min_ns",
             "p50": "p50_ns", "p90": "p90_ns", "p99": "p99_ns"}
