"""Run the real `exitreplay` entry point inside the test process (exit status, stdout, stderr), which
saves the interpreter start-up that a subprocess per case would cost."""
from __future__ import annotations

import subprocess
import sys


def run_main(capsys, monkeypatch, args, cache) -> subprocess.CompletedProcess:
    from exitreplay.cli import main

    monkeypatch.setenv("EXITREPLAY_CACHE", str(cache))
    monkeypatch.setattr(sys, "argv", ["exitreplay", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)
