# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every websocket of the collection shares: the `websockets` library, how a connection is opened, quiet
logging, and keeping the URL's secrets out of every text.

The SSM data channel (ssm/session.py) and the ECI exec stream (eci.py) both connect with the library's sync
client, each driven by its caller (no threads of ours). Their stream URLs locate a session and carry its token,
so nothing but the host is ever named in a log line, an error or a repr.
"""

from __future__ import annotations

import inspect
import logging
import re
import typing as t
import urllib.parse

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.module_utils.version import USER_AGENT

try:
    from websockets.exceptions import ConnectionClosed, ConnectionClosedOK  # pylint: disable=unused-import  # for the streams
    from websockets.sync.client import connect as websockets_connect
except ImportError:
    HAS_WEBSOCKETS = False
    websockets_connect = None  # pylint: disable=invalid-name
    ConnectionClosed = ConnectionClosedOK = None  # pylint: disable=invalid-name
else:
    HAS_WEBSOCKETS = True

# Keepalive: AWS's client pings every 5 minutes; we ping more often so a dead route is noticed within a minute
# rather than at the TCP timeout.
PING_INTERVAL = 30.0
PING_TIMEOUT = 30.0
# Bound on the polite closing handshake, so close() never hangs on a dead peer.
CLOSE_TIMEOUT = 2.0

REDACTED = '<redacted>'
_ANSI_RE = re.compile(r'\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])')
_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f-\x9f]+')


def require(what: str) -> None:
    """Refuse clearly when the websockets library is missing."""
    if not HAS_WEBSOCKETS:
        raise CloudExecError(f'the websockets library is required on the controller for {what}', code='MissingDependency',
                             provider='cloudexec', retryable=False,
                             remedy='pip install "websockets>=12.0" (see the collection requirements.txt)')


def quiet_logger(name: str) -> logging.Logger:
    """A logger for the library's connections that never logs at DEBUG, where it would write request lines (the URL,
    with its path and query) and frame bodies (tokens), whatever the root logger says."""
    logger = logging.getLogger(f'ansible_collections.cloudexec.core.{name}.websocket')
    logger.setLevel(logging.INFO)
    return logger


def host_of(url: str) -> str:
    """The host (and port) of a URL: the only part of a stream URL ever named."""
    parts = urllib.parse.urlsplit(url)
    return str(parts.hostname) if parts.port is None else f'{parts.hostname}:{parts.port}'


def check_url(url: str, what: str, remedy: str) -> None:
    """Refuse anything but a ws:// or wss:// URL with a host, without naming the URL."""
    parts = urllib.parse.urlsplit(url or '')
    if parts.scheme not in ('ws', 'wss') or not parts.hostname:
        raise CloudExecError(f'{what} must be a ws:// or wss:// URL with a host', code='InvalidParameter', provider='cloudexec',
                             retryable=False, remedy=remedy)


def supported_kwargs(func: t.Callable[..., t.Any]) -> frozenset[str] | None:
    """The keyword arguments to hand func: None (all of them) for a function that only takes **kwargs (a wrapper).

    A function that names its keyword parameters gets only those: websockets' own connect() passes anything else to
    socket.create_connection, so an option its version does not know (``legacy``, ``proxy``) must not reach it.
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None
    named = frozenset(name for name, param in params.items() if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD))
    if any(param.kind == param.VAR_KEYWORD for param in params.values()) and not any(
            param.kind == param.KEYWORD_ONLY for param in params.values()):
        return None
    return named


def connect(url: str, *, connect: t.Callable[..., t.Any] | None, connect_timeout: float, logger: logging.Logger,
            user_agent: str = USER_AGENT, proxy: str | bool | None = True, extra_headers: t.Mapping[str, str] | None = None,
            ssl_context: t.Any = None, subprotocols: t.Sequence[str] | None = None) -> t.Any:
    """Open a websocket with the options every stream of ours uses; the library's exceptions go to the caller.

    No compression (AWS's client does not negotiate deflate), no message size limit (the protocols have their
    own), and connect() without a with-block on websockets >= 17.1 (``legacy``), on purpose: the caller closes.
    """
    kwargs: dict[str, t.Any] = {
        'open_timeout': connect_timeout,
        'max_size': None,
        'compression': None,
        'user_agent_header': user_agent,
        'ping_interval': PING_INTERVAL,
        'ping_timeout': PING_TIMEOUT,
        'close_timeout': CLOSE_TIMEOUT,
        'logger': logger,
        'proxy': None if proxy is False else proxy,   # websockets >= 15 only
        'legacy': True,
    }
    if extra_headers:
        kwargs['additional_headers'] = dict(extra_headers)
    if ssl_context is not None:
        kwargs['ssl'] = ssl_context
    if subprotocols:
        kwargs['subprotocols'] = list(subprotocols)
    function = connect or websockets_connect
    supported = supported_kwargs(function)
    if supported is not None:
        kwargs = {key: value for key, value in kwargs.items() if key in supported}
    return function(url, **kwargs)


class Redactor:
    """Replaces tokens and every piece of stream URLs but their host in a text."""

    def __init__(self, *urls_and_tokens: str) -> None:
        self._secrets: list[str] = []
        self.add(*urls_and_tokens)

    def add(self, *urls_and_tokens: str) -> None:
        """Keep these secrets out of texts too (a URL and token from ResumeSession, say)."""
        candidates = set(self._secrets)
        for item in urls_and_tokens:
            if not item:
                continue
            candidates.add(item)
            parts = urllib.parse.urlsplit(item)
            if parts.scheme:
                candidates.update((parts.path, parts.query, parts.path + '?' + parts.query))
                for values in urllib.parse.parse_qs(parts.query).values():
                    candidates.update(values)
        for piece in list(candidates):
            candidates.add(urllib.parse.unquote(piece))
            candidates.add(urllib.parse.quote(piece, safe=''))
        # Longest first, so a URL is replaced whole before its path is; tiny pieces ('/') are not secrets.
        self._secrets = sorted((item for item in candidates if len(item) > 3), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def sanitize(text: str, redact: t.Callable[[str], str], limit: int = 500) -> str:
    """Make peer-supplied text safe for a log line or an error: no escapes, no control characters, bounded."""
    text = _CONTROL_RE.sub(' ', _ANSI_RE.sub('', text))
    text = redact(' '.join(text.split()))
    return text if len(text) <= limit else text[:limit] + '...'
