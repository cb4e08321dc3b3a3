"""Long text traces made from short ones: a text trace's event lines repeated with their
timestamps shifted past the previous copy's, so the copy is in time order like the original."""
from __future__ import annotations

from pathlib import Path

import polars as pl

# "... [cpu] <lat> sec.frac: event..." (trace-cmd report, ftrace) and perf script's "[cpu] sec.frac:"
_TS = r"^(?P<pre>.*?\]\s+(?:\S+\s+)?)(?P<sec>[0-9]+)\.(?P<frac>[0-9]+)(?P<post>:\s.*)$"


def repeat_text(src: Path, dst: Path, copies: int) -> int:
    """Write `copies` copies of src's event lines (its other lines once, first) to dst; the event lines written."""
    lines = pl.Series("l", src.read_text().splitlines())
    parts = pl.DataFrame({"l": lines}).select(pl.col("l").str.extract_groups(_TS)).unnest("l")
    is_event = parts["sec"].is_not_null()
    ev = parts.filter(is_event)
    width = ev["frac"].str.len_chars().max()
    assert ev["frac"].str.len_chars().min() == width
    unit = 10 ** width
    ticks = ev.select((pl.col("sec").cast(pl.Int64) * unit + pl.col("frac").cast(pl.Int64)).alias("t"))["t"]
    span = int(ticks.max() - ticks.min()) + 1
    with open(dst, "w") as out:
        out.write("\n".join(lines.filter(~is_event).to_list()) + "\n")
        for k in range(copies):
            t = ticks + k * span
            text = ev.select(pl.concat_str(pl.col("pre"), (t // unit).cast(pl.String), pl.lit("."),
                                           (t % unit).cast(pl.String).str.zfill(width), pl.col("post")))
            out.write("\n".join(text.to_series().to_list()) + "\n")
    return ev.height * copies
