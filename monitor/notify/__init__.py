"""Notifiers: where alert transitions leave the building (SPEC §7).

An explicit registry maps a config ``type`` to its class, named as ``"module:Class"`` so that
importing this package imports no notifier module, and so no aiohttp, slack-sdk or jinja2::

    cls = notifier_class("slack")            # imports monitor.notify.slack only now
    notifier = cls("team-slack", settings, timeout=30.0)
    payload = notifier.render_alerts(notices, group_id=..., created_at=...)   # stored
    await notifier.send(payload, group_id=...)   # raises RetryableError / PermanentError
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.notify.base import Notifier

NOTIFIERS: dict[str, str] = {
    "console": "monitor.notify.console:ConsoleNotifier",
    "slack": "monitor.notify.slack:SlackNotifier",
    "email": "monitor.notify.email:EmailNotifier",
    "webhook": "monitor.notify.webhook:WebhookNotifier",
}

# Which notifier types take the weekly digest when the config does not say (SPEC §5).
DIGEST_BY_DEFAULT = frozenset({"email"})


def notifier_class(type_: str) -> type[Notifier]:
    """The class registered for a config ``type``; ``ValueError`` for an unknown one."""
    try:
        target = NOTIFIERS[type_]
    except (KeyError, TypeError):
        known = ", ".join(NOTIFIERS)
        raise ValueError(f"unknown notifier type {type_!r} (expected one of: {known})") from None
    module_name, _, class_name = target.partition(":")
    cls: type[Notifier] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_notifier(
    name: str, settings: Mapping[str, Any], *, timeout: float = 30.0, **options: Any
) -> Notifier:
    """Build the notifier of one config table (``settings["type"]`` picks the class)."""
    return notifier_class(settings.get("type", "console"))(
        name, settings, timeout=timeout, **options
    )


__all__ = ["DIGEST_BY_DEFAULT", "NOTIFIERS", "create_notifier", "notifier_class"]
