"""Building the Elasticsearch client from arguments or environment variables.

Arguments win over the environment: `ELASTICSEARCH_URL` (comma-separated hosts), `ELASTICSEARCH_CLOUD_ID`,
`ELASTICSEARCH_API_KEY`, `ELASTICSEARCH_USERNAME` / `ELASTICSEARCH_PASSWORD`, `ELASTICSEARCH_CA_CERTS`.
Secrets are handed to the client only: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "http://localhost:9200"
CONNECTION_KEYS = (
    "hosts",
    "cloud_id",
    "api_key",
    "basic_auth",
    "username",
    "password",
    "ca_certs",
    "verify_certs",
    "request_timeout",
    "max_retries",
    "client",
)


class ElasticsearchConnectionError(ConnectionError):
    """The cluster cannot be reached or refused our credentials."""


def redact_url(url: str) -> str:
    """`http://user:secret@host:9200` -> `http://user:***@host:9200` (for messages and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def backend_options_from_args(
    es_url: str | list[str] | None = None,
    *,
    cloud_id: str | None = None,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool | None = None,
    request_timeout: float | None = None,
) -> dict[str, Any]:
    """Connection options for `ElasticsearchBackend.open`, filled from the environment where None."""
    hosts: str | list[str] | None = es_url or _env("ELASTICSEARCH_URL")
    if isinstance(hosts, str):
        hosts = [h.strip() for h in hosts.split(",") if h.strip()]
    cloud_id = cloud_id or _env("ELASTICSEARCH_CLOUD_ID")
    if not hosts and not cloud_id:
        hosts = [DEFAULT_URL]
    options: dict[str, Any] = {"hosts": hosts, "cloud_id": cloud_id}
    if not (api_key or username or password):  # explicit credentials of either kind beat the environment
        api_key = _env("ELASTICSEARCH_API_KEY")
        if not api_key:
            username, password = _env("ELASTICSEARCH_USERNAME"), _env("ELASTICSEARCH_PASSWORD")
    if api_key:
        options["api_key"] = api_key
    elif username or password:
        if not (username and password):
            raise ValueError("Elasticsearch basic auth needs both a username and a password")
        options["basic_auth"] = (username, password)
    options["ca_certs"] = ca_certs or _env("ELASTICSEARCH_CA_CERTS")
    options["verify_certs"] = verify_certs
    options["request_timeout"] = request_timeout
    return {k: v for k, v in options.items() if v is not None}


def describe(options: dict[str, Any]) -> str:
    """Where we connect, without secrets (the environment fills in what the options leave out)."""
    if not options.get("hosts") and not options.get("cloud_id"):
        try:
            found = backend_options_from_args()
        except ValueError:
            found = {}
        options = {**options, "hosts": found.get("hosts"), "cloud_id": found.get("cloud_id")}
    if options.get("cloud_id"):
        return f"cloud id {options['cloud_id'].split(':')[0]}"
    hosts = options.get("hosts") or [DEFAULT_URL]
    hosts = [hosts] if isinstance(hosts, str) else hosts
    return ", ".join(redact_url(str(h)) for h in hosts)


def split_basic_auth(value: Any) -> tuple[str, str]:
    """`basic_auth` as a `(user, password)` pair or a `"user:password"` string (what a Haystack `Secret`
    resolves to; split on the first ':', passwords may contain ':')."""
    if isinstance(value, str):
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise ValueError("basic_auth string must look like 'user:password' (value not shown)")
        return user, password
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    raise ValueError(
        f"basic_auth must be a (user, password) pair or a 'user:password' string, got a {type(value).__name__}"
    )


def long_running(client: Any) -> Any:
    """The client for server-side jobs (`_reindex`, `_delete_by_query`) that may outlast the request
    timeout: no timeout and no retries, so a slow job is never sent a second time while the first runs."""
    return client.options(request_timeout=None, max_retries=0, retry_on_timeout=False)


def connect(**options: Any) -> Any:
    """An `Elasticsearch` client. Missing options come from the environment; `client=` passes one through."""
    if options.get("client") is not None:
        return options["client"]
    from elasticsearch import Elasticsearch

    auth_given = {k: options.pop(k) for k in ("api_key", "basic_auth") if options.get(k) is not None}
    username, password = options.pop("username", None), options.pop("password", None)
    basic = split_basic_auth(auth_given["basic_auth"]) if "basic_auth" in auth_given else (None, None)
    resolved = backend_options_from_args(
        options.pop("hosts", None),
        cloud_id=options.pop("cloud_id", None),
        api_key=auth_given.get("api_key"),
        username=username or basic[0],
        password=password or basic[1],
        ca_certs=options.pop("ca_certs", None),
        verify_certs=options.pop("verify_certs", None),
        request_timeout=options.pop("request_timeout", None),
    )
    options.pop("client", None)
    kwargs = {**resolved, **options}
    kwargs.setdefault("request_timeout", 30)
    kwargs.setdefault("max_retries", 3)
    kwargs.setdefault("retry_on_timeout", True)
    if kwargs.get("cloud_id"):
        kwargs.pop("hosts", None)
    return Elasticsearch(**kwargs)


def check_connection(client: Any, where: str) -> None:
    """Fail early and clearly on a bad address or bad credentials (uses `_security/_authenticate`,
    falling back to cluster health where security is off)."""
    from elasticsearch import ApiError, AuthenticationException, AuthorizationException
    from elasticsearch import ConnectionError as TransportConnectionError

    try:
        try:
            client.security.authenticate()
        except ApiError as exc:
            if isinstance(exc, (AuthenticationException, AuthorizationException)):
                raise
            client.cluster.health()  # security disabled: _security endpoints answer 4xx/5xx
    except AuthenticationException as exc:
        raise ElasticsearchConnectionError(
            f"Elasticsearch at {where} rejected the credentials (HTTP 401): check the API key or "
            "username/password (ELASTICSEARCH_API_KEY, ELASTICSEARCH_USERNAME, ELASTICSEARCH_PASSWORD)"
        ) from exc
    except AuthorizationException as exc:
        raise ElasticsearchConnectionError(
            f"Elasticsearch at {where}: permission denied (HTTP 403): {exc.message}"
        ) from exc
    except TransportConnectionError as exc:
        raise ElasticsearchConnectionError(f"cannot reach Elasticsearch at {where}: {exc.message}") from exc
