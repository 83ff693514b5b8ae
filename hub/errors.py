"""One exception hierarchy. Every message is meant for a person who can act on it,
and never carries patient data: name the file, segment, field or key, not the value."""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    def __init__(self, message: str, *, source: str | None = None, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source  # the file or request the error is about
        self.location = location  # segment/field, element path, line number, key

    def __str__(self) -> str:
        where = ", ".join(p for p in (self.source, self.location) if p)
        return f"{where}: {self.message}" if where else self.message


class ParseError(HubError):
    """The bytes cannot be read as the connector's wire format."""


class ValidationError(HubError):
    """A record does not fit the common model."""

    def __init__(self, message: str, *, errors: dict | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.errors = errors or {}


class MappingError(HubError):
    """A mapping file is invalid, or a code cannot be mapped where the mapping requires it."""


class ConfigError(HubError):
    """A setting, plugin or command-line argument is wrong."""


class NotFound(HubError):
    """A practice, message or key that does not exist."""


class StoreError(HubError):
    """The database refused or failed an operation."""


class IntegrityError(HubError):
    """Stored bytes no longer match the hash taken when they arrived: the store was altered outside the hub."""

    def __init__(self, message: str, *, ids: list[int] | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.ids = ids or []


class PluginError(HubError):
    """A plugin breaks the plugin contract."""
