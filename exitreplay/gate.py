"""`--fail-if "METRIC[.abs|.rel] OP VALUE[%]"`: CI gates on compare results.

`exits_per_s.rel > 5%` fails when a trace has more than 5% more exits per second than the
reference; `p99_ns > 20000` compares the value itself (for every trace, the reference too);
`.abs` compares the difference from the reference.
"""
from __future__ import annotations

import dataclasses
import operator
import re

from .errors import UsageError

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
GATE_RE = re.compile(rf"^\s*([\w:.\-]+?)(?:\.(abs|rel))?\s*(>=|<=|==|!=|>|<)\s*({NUMBER})\s*(%?)\s*$")


@dataclasses.dataclass(frozen=True)
class Gate:
    metric: str
    mode: str  # "value" | "abs" | "rel"
    op: str
    threshold: float
    text: str

    def check(self, value: float | None, ref: float | None) -> bool | None:
        """True when the gate trips; None when it cannot be evaluated (metric missing)."""
        if value is None:
            return None
        if self.mode == "value":
            x = value
        elif ref is None:
            return None
        elif self.mode == "abs":
            x = value - ref
        else:
            if ref == 0:
                return None
            x = (value - ref) / abs(ref)
        return OPS[self.op](x, self.threshold)


def parse_gate(text: str) -> Gate:
    m = GATE_RE.match(text)
    if not m:
        raise UsageError(f"cannot read --fail-if {text!r} (form: 'METRIC[.rel|.abs] OP VALUE[%]', "
                         "e.g. 'exits_per_s.rel > 5%')")
    metric, mode, op, num, pct = m.groups()
    thr = float(num) / 100 if pct else float(num)
    if pct and mode != "rel":
        raise UsageError(f"--fail-if {text!r}: a percentage needs .rel")
    return Gate(metric, mode or "value", op, thr, text.strip())
