"""Backend options for the Haystack components: credentials must be `haystack.utils.Secret`s.

A plain string under a credential-looking key (password, api_key, token, ...) is refused at init so it
can never end up in a serialised pipeline; Secrets serialise as their env var names (token secrets
refuse to serialise) and are resolved only when the backend is opened.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from haystack.utils import Secret

_CREDENTIAL_KEY = re.compile(r"(password|passwd|secret|token|api_?key|credential|basic_auth|bearer)", re.I)


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of `options`, refusing clear-text credentials."""
    options = dict(options or {})
    for key, value in options.items():
        if _CREDENTIAL_KEY.search(key) and value is not None and not isinstance(value, Secret):
            raise ValueError(
                f"backend option {key!r} looks like a credential: pass it as haystack.utils.Secret "
                f"(e.g. Secret.from_env_var(...)) so it is never serialised in clear"
            )
    hosts = options.get("hosts")
    for url in [hosts] if isinstance(hosts, str) else hosts if isinstance(hosts, (list, tuple)) else []:
        if isinstance(url, str) and _url_password(url) is not None:
            raise ValueError(
                "backend option 'hosts' has a URL with a password in it: give the host without credentials "
                "and the password as haystack.utils.Secret (e.g. password=Secret.from_env_var(...))"
            )
    return options


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url if "://" in url else f"//{url}").password
    except ValueError:  # unparsable URL (e.g. bad port): the backend reports it when connecting
        return None


def serialize_options(options: dict[str, Any]) -> dict[str, Any]:
    """Secrets become their `to_dict()` form (token secrets raise, as Haystack intends)."""
    return {key: value.to_dict() if isinstance(value, Secret) else value for key, value in options.items()}


def _looks_like_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "env_var" and "env_vars" in value


def deserialize_options(options: dict[str, Any] | None) -> dict[str, Any]:
    return {
        key: Secret.from_dict(value) if _looks_like_secret(value) else value for key, value in (options or {}).items()
    }


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Plain values for the backend's `open`: Secrets resolved now, not earlier."""
    return {key: value.resolve_value() if isinstance(value, Secret) else value for key, value in options.items()}
