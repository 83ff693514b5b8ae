"""The operations console at ``/console/``: feeds, messages, errors, onboarding, keys and the audit log,
for admins (``hub.console.signin``), server-rendered, with no script and nothing from the network."""

from hub.console.views import bp

__all__ = ["bp"]
