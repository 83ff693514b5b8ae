"""MSO Hub: practice feeds in, one common model, consolidated MSO KPIs out.

Plugin authors import the marker from here, never from pluggy::

    from hub import hookimpl
"""

import importlib
from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "hub"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__version__: str  # read from the installed metadata when first asked for (importlib.metadata is slow to import)


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("mso-hub")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0.0.0"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'hub' has no attribute {name!r}")



def lazy_attributes(package: str, module: str = "connector") -> Callable[[str], Any]:
    """A plugin package's module ``__getattr__`` that finds a name in one of its modules when first asked
    for: the package (its hooks) imports quickly, and ``from package import SomeConnector`` still works.

        __getattr__ = lazy_attributes(__name__)
    """

    def find(name: str) -> Any:
        if not name.startswith("_"):
            try:
                return getattr(importlib.import_module(f"{package}.{module}"), name)
            except AttributeError:
                pass
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return find


__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "lazy_attributes"]
