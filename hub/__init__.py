"""MSO Hub: practice feeds in, one common model, consolidated MSO KPIs out.

Plugin authors import the marker from here, never from pluggy::

    from hub import hookimpl
"""

import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

PROJECT_NAME = "hub"

hookimpl: "pluggy.HookimplMarker"  # made when first asked for: hub --version needs no pluggy
__version__: str  # read from the installed metadata when first asked for (importlib.metadata is slow to import)


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker(PROJECT_NAME)
        globals()["hookimpl"] = marker
        return marker
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("mso-hub")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0.0.0"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'hub' has no attribute {name!r}")



def names_from(source: str, names: tuple[str, ...], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that gives ``names`` of module ``source``, imported when one is first asked for
    and kept in ``namespace`` (the module's ``globals()``): its users need not pay that import.

        __getattr__ = names_from("hub.model.schemas", ("validate_record",), globals())
    """
    owner = namespace["__name__"]

    def find(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    return find


def lazy_attributes(package: str, *modules: str) -> Callable[[str], Any]:
    """A plugin package's module ``__getattr__`` that finds a name in one of its modules (``connector``
    unless named, else the first of ``modules`` that has it) when first asked for: the package (its
    hooks) imports quickly, and ``from package import SomeConnector`` still works.

        __getattr__ = lazy_attributes(__name__)
        __getattr__ = lazy_attributes(__name__, "connector", "settings")
    """

    def find(name: str) -> Any:
        # a submodule (``from . import er7``) is the import system's to load, not a name to look for here
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is None:
            for module in modules or ("connector",):
                try:
                    return getattr(importlib.import_module(f"{package}.{module}"), name)
                except AttributeError:
                    pass
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return find


__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "lazy_attributes"]
