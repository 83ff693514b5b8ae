"""MSO Hub: practice feeds in, one common model, consolidated MSO KPIs out.

Plugin authors import the marker from here, never from pluggy::

    from hub import hookimpl
"""

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

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
