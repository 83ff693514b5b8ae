"""MSO Hub: practice feeds in, one common model, consolidated MSO KPIs out.

Plugin authors import the marker from here, never from pluggy::

    from hub import hookimpl
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

PROJECT_NAME = "hub"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = version("mso-hub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
