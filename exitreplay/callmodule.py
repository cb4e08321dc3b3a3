"""`exitreplay.compare(...)` and `exitreplay.convert(...)` are calls, yet `exitreplay.compare` is also
a module: importing it (as the CLI does) makes the package attribute the module. A module whose
class is callable serves both: calling it calls the function it names."""
from __future__ import annotations

import sys
import types


def make_callable(module_name: str, function_name: str) -> None:
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    _CallableModule.__doc__ = module.__doc__
    module.__class__ = _CallableModule
