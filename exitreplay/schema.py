"""The Arrow contract every reader returns and every later stage consumes.

`events`: one row per event, in timestamp order (ties keep per-CPU order, lower CPU first).
Per-event-type tables carry `row` (the index into `events`) plus `ts`, `cpu`, `pid` and the
event's own fields named as in the kernel's format (the `common_*` fields live in `events`).
"""
from __future__ import annotations

import pyarrow as pa

DICT_STR = pa.dictionary(pa.int32(), pa.string())

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),  # ns of the trace clock
        pa.field("cpu", pa.int32(), nullable=False),
        pa.field("pid", pa.int32(), nullable=False),
        pa.field("comm", DICT_STR),  # null where the recorder did not know the task name
        pa.field("system", DICT_STR),  # e.g. "kvm", "sched"; null where the format does not say
        pa.field("event", DICT_STR, nullable=False),  # e.g. "kvm_exit"
        pa.field("flags", pa.uint8()),  # common_flags (irqs-off, need-resched, hardirq, softirq)
        pa.field("preempt_count", pa.uint8()),
    ]
)

# Columns every per-event table starts with, before the event's own fields.
TABLE_KEY_COLUMNS = ("row", "ts", "cpu", "pid")

SOURCE_FORMATS = ("trace.dat", "perf.data", "trace-cmd-report", "ftrace-text", "perf-script")


def empty_events() -> pa.Table:
    return EVENTS_SCHEMA.empty_table()


def conform_events(table: pa.Table) -> pa.Table:
    """Cast a reader's events table to EVENTS_SCHEMA (adding null columns it lacks)."""
    cols = []
    for field in EVENTS_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
        else:
            col = pa.nulls(table.num_rows, field.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=EVENTS_SCHEMA)
