# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Alibaba Cloud clients for cloudexec.core, on the official Tea SDKs and alibabacloud-credentials.

Option names and environment variables follow alibaba.alicloud (ALICLOUD_*), and the SDK's own
ALIBABA_CLOUD_* names work too. Signing and HTTP are the SDK's; we pick the credential provider,
point each product at its endpoint, and map TeaException to CloudExecError.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import traceback
import typing as t
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ansible_collections.cloudexec.core.plugins.module_utils import auth_options
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.version import USER_AGENT


class _TeaSdk:
    """The Tea SDK's names, imported on first use.

    Importing the SDK takes about half a second (it loads aiohttp and the credential providers). The
    modules need it at once; a connection plugin's task worker must not pay for it, since Cloud Assistant
    calls are made by the per-host broker process (plugin_utils/broker.py), which imports it once.
    """

    CredentialClient: t.Any = None
    CredentialConfig: t.Any = None
    CLIProfileCredentialsProvider: t.Any = None
    OpenApiConfig: t.Any = None
    RuntimeOptions: t.Any = None
    TeaException: t.Any = None
    UnretryableException: t.Any = None

    def __init__(self) -> None:
        self.loaded = False
        self.error: str | None = None
        # Threads call at once (parallel RunCommand starts, the broker's callers): one imports, the others wait for it.
        self._lock = threading.Lock()

    def load(self) -> bool:
        """Import the SDK once; whether it is there (self.error holds the traceback when it is not)."""
        if self.loaded:
            return self.error is None
        with self._lock:
            if not self.loaded:
                self._import()
                self.loaded = True
        return self.error is None

    def _import(self) -> None:
        """Import the names; only load() calls it, under the lock."""
        try:
            # pylint: disable=import-outside-toplevel
            from alibabacloud_credentials.client import Client as CredentialClient
            from alibabacloud_credentials.models import Config as CredentialConfig
            from alibabacloud_credentials.provider.cli_profile import CLIProfileCredentialsProvider
            from alibabacloud_tea_openapi.utils_models import Config as OpenApiConfig
            from darabonba.runtime import RuntimeOptions
            from Tea.exceptions import TeaException, UnretryableException
        except ImportError:
            self.error = traceback.format_exc()
        else:
            self.CredentialClient, self.CredentialConfig = CredentialClient, CredentialConfig
            self.CLIProfileCredentialsProvider, self.OpenApiConfig = CLIProfileCredentialsProvider, OpenApiConfig
            self.RuntimeOptions, self.TeaException, self.UnretryableException = RuntimeOptions, TeaException, UnretryableException


_TEA = _TeaSdk()


def has_tea() -> bool:
    """Whether the Tea SDKs can be imported (importing them if not done yet)."""
    return _TEA.load()


def tea_import_error() -> str | None:
    """The traceback of the failed SDK import, None when the SDK is there."""
    _TEA.load()
    return _TEA.error


def _tea_exception_types() -> tuple[type, type] | None:
    """(TeaException, UnretryableException) once the SDK is loaded; None before (then no exception can be one)."""
    if 'Tea.exceptions' not in sys.modules or not _TEA.load():
        return None
    return _TEA.TeaException, _TEA.UnretryableException


def _forget_inherited_connections() -> None:
    """In a forked child, drop the HTTP sessions the Tea SDK pooled in the parent.

    The SDK keeps its requests sessions (and their keep-alive sockets) in class attributes for the
    whole process. Ansible forks one worker per host after the inventory plugin has already talked
    to the API, so without this every worker would inherit the same socket and write its requests on
    it: responses then cross between hosts (one host reads another's RunCommand answer) or never
    arrive. Dropping the references leaves the parent's sockets to the parent; the child opens its own.
    """
    for module_name, class_name in (('darabonba.core', 'DaraCore'), ('Tea.core', 'TeaCore')):
        module = sys.modules.get(module_name)
        core = getattr(module, class_name, None)
        if core is None:
            continue
        core._sessions = {}  # pylint: disable=protected-access
        for attr in ('http_adapter', 'https_adapter'):
            inherited = getattr(core, attr, None)
            if hasattr(inherited, 'poolmanager'):  # a requests HTTPAdapter: a fresh one, same pool sizes
                setattr(core, attr, type(inherited)(pool_connections=inherited._pool_connections,  # pylint: disable=protected-access
                                                    pool_maxsize=inherited._pool_maxsize))  # pylint: disable=protected-access


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_inherited_connections)

# alibabacloud-credentials gives its 'credentials' logger a stderr handler of its own, which prints a traceback for
# every failed probe of its default chain; the failure reaches the user once, as a CredentialError with its remedy.
logging.getLogger('credentials').setLevel(logging.CRITICAL)

# The auth options live apart from the Tea SDK so connection plugins can name them without importing it.
ALICLOUD_AUTH_ENV = auth_options.ALICLOUD_AUTH_ENV
ALICLOUD_AUTH_ARGSPEC = auth_options.ALICLOUD_AUTH_ARGSPEC

# Public endpoint patterns per product; the ECI SDK maps every region to one global host, so we
# always set the regional endpoint ourselves.
_DEFAULT_ENDPOINTS = {'ecs': 'ecs.{region}.aliyuncs.com', 'eci': 'eci.{region}.aliyuncs.com'}
# The endpoint options, one per product; a plugin documents only its own.
PRODUCT_ENDPOINT_OPTIONS = frozenset(f'{product}_endpoint' for product in _DEFAULT_ENDPOINTS)
# Seconds to wait for a TCP (and TLS) connection to an endpoint; read_timeout bounds the wait for the answer.
CONNECT_TIMEOUT = 10

CREDENTIALS_REMEDY = ('Give credentials: alicloud_access_key and alicloud_secret_key (ALICLOUD_ACCESS_KEY and ALICLOUD_SECRET_KEY, '
                      'plus alicloud_security_token for STS), a CLI profile (profile, ALICLOUD_PROFILE), or an instance RAM '
                      'role (ecs_role_name); the connection plugins also read ansible_alicloud_access_key and '
                      'ansible_alicloud_secret_key or ansible_alicloud_profile (an inventory passes its profile to its hosts, '
                      'never its keys); in AWX, attach the Alibaba Cloud credential to the job template or inventory source')

ALICLOUD_REMEDIES = {
    'InvalidAccessKeyId.NotFound': 'The AccessKey ID is not known: check alicloud_access_key (or ALICLOUD_ACCESS_KEY) '
                                   'and that the key is enabled in the RAM console',
    'InvalidAccessKeyId.Inactive': 'The AccessKey is disabled: enable it in the RAM console or use another key',
    'SignatureDoesNotMatch': 'The AccessKey secret does not match the AccessKey ID: check alicloud_secret_key '
                             '(or ALICLOUD_SECRET_KEY)',
    'IncompleteSignature': 'The request signature was incomplete: check that the credentials are complete',
    'InvalidSecurityToken.Expired': 'The STS token has expired: refresh alicloud_security_token and retry',
    'InvalidSecurityToken.Malformed': 'The STS token is malformed: check alicloud_security_token',
    'InvalidSecurityToken.MismatchWithAccessKey': 'The STS token belongs to another AccessKey: use the token issued '
                                                  'with this AccessKey',
    'SignatureNonceUsed': 'A request was replayed: retry',
    'InvalidTimeStamp.Expired': 'The request time is out of range: check the controller clock',
    'Forbidden.RAM': 'The RAM user or role may not call this action: grant it in a RAM policy '
                     '(see the collection docs for a least-privilege policy)',
    'Forbidden': 'The account may not call this action: check its RAM policies',
    'NoPermission': 'The account may not call this action: check its RAM policies',
    'InvalidRegionId.NotFound': 'No such region: check alicloud_region',
    'Throttling': 'Alibaba Cloud throttled the calls of this account: retry later or lower forks',
    'Throttling.User': 'Alibaba Cloud throttled the calls of this account: retry later or lower forks',
    'Throttling.Api': 'Alibaba Cloud throttled this API for the account: retry later or lower forks',
    'ServiceUnavailable': 'The service is unavailable: retry later',
    'InternalError': 'The service had an internal error: retry later',
}


@dataclass
class AlicloudAuth:
    """Everything needed to build Alibaba clients; secrets stay out of repr()."""

    alicloud_access_key: str | None = None
    alicloud_secret_key: str | None = field(default=None, repr=False)
    alicloud_security_token: str | None = field(default=None, repr=False)
    alicloud_region: str | None = None
    alicloud_assume_role_arn: str | None = None
    alicloud_assume_role_session_name: str | None = None
    ecs_role_name: str | None = None
    profile: str | None = None
    shared_credentials_file: str | None = None
    ecs_endpoint: str | None = None
    eci_endpoint: str | None = None
    validate_certs: bool = True
    read_timeout: int = 60

    @classmethod
    def from_options(cls, get: t.Callable[[str], t.Any]) -> 'AlicloudAuth':
        """Build from module params (params.get) or plugin options (a get_option wrapper).

        A plugin documents only the endpoint of the API it calls: the other one is unset (get raises KeyError).
        """
        def value(name: str) -> t.Any:
            try:
                return get(name)
            except KeyError:
                if name in PRODUCT_ENDPOINT_OPTIONS:
                    return None
                raise

        values = {name: value(name) for name in ALICLOUD_AUTH_ARGSPEC}
        auth = cls(**{k: v for k, v in values.items() if v is not None})
        auth.validate()
        return auth

    def validate(self) -> None:
        """Refuse incomplete credentials before any call."""
        if bool(self.alicloud_access_key) != bool(self.alicloud_secret_key):
            missing = 'alicloud_secret_key' if self.alicloud_access_key else 'alicloud_access_key'
            raise ValidationError(missing, 'alicloud_access_key and alicloud_secret_key must be given together')
        if self.alicloud_security_token and not self.alicloud_access_key:
            raise ValidationError('alicloud_security_token', 'it needs alicloud_access_key and alicloud_secret_key too')
        if not self.alicloud_region:
            raise ValidationError('alicloud_region', 'no region is set',
                                  remedy='Set alicloud_region, or ALICLOUD_REGION in the environment')
        if self.read_timeout < 1:
            raise ValidationError('read_timeout', f'{self.read_timeout} is below the minimum of 1 second')


def require_tea() -> None:
    """Raise a clear error when the Alibaba Cloud SDKs are missing."""
    if not has_tea():
        raise CloudExecError('the Alibaba Cloud Tea SDKs are required on the controller', code='MissingDependency',
                             provider='cloudexec',
                             remedy='pip install alibabacloud-ecs20140526 alibabacloud-eci20180808 alibabacloud-credentials')


def credential_client(auth: AlicloudAuth) -> t.Any:
    """Pick the credential provider: explicit keys, an assumed role, an instance role, a profile, or the default chain."""
    require_tea()
    if auth.alicloud_assume_role_arn:
        if not auth.alicloud_access_key:
            raise ValidationError('alicloud_assume_role_arn', 'assuming a role needs alicloud_access_key and alicloud_secret_key')
        return _TEA.CredentialClient(_TEA.CredentialConfig(
            type='ram_role_arn', access_key_id=auth.alicloud_access_key, access_key_secret=auth.alicloud_secret_key,
            security_token=auth.alicloud_security_token, role_arn=auth.alicloud_assume_role_arn,
            role_session_name=auth.alicloud_assume_role_session_name or 'cloudexec-core'))
    if auth.alicloud_access_key:
        kind = 'sts' if auth.alicloud_security_token else 'access_key'
        return _TEA.CredentialClient(_TEA.CredentialConfig(type=kind, access_key_id=auth.alicloud_access_key,
                                                           access_key_secret=auth.alicloud_secret_key,
                                                           security_token=auth.alicloud_security_token))
    if auth.ecs_role_name:
        return _TEA.CredentialClient(_TEA.CredentialConfig(type='ecs_ram_role', role_name=auth.ecs_role_name))
    if auth.profile or auth.shared_credentials_file:
        return _TEA.CredentialClient(provider=_TEA.CLIProfileCredentialsProvider(profile_name=auth.profile,
                                                                                 profile_file=auth.shared_credentials_file))
    # The SDK's default chain (ALIBABA_CLOUD_* variables, ~/.aliyun, OIDC, instance roles).
    return _TEA.CredentialClient()


def endpoint_config(auth: AlicloudAuth, product: str) -> tuple[str, str]:
    """(host[:port], protocol) for a product, from an override URL/host or the regional default."""
    override = getattr(auth, f'{product}_endpoint', None)
    if not override:
        return _DEFAULT_ENDPOINTS[product].format(region=auth.alicloud_region), 'https'
    if '://' in override:
        parts = urlsplit(override)
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            raise ValidationError(f'{product}_endpoint', f'{override!r} is not an http(s) URL or a host name')
        return parts.netloc, parts.scheme
    return override, 'https'


def open_api_config(auth: AlicloudAuth, product: str) -> t.Any:
    """The Tea SDK Config for one product client."""
    host, protocol = endpoint_config(auth, product)
    return _TEA.OpenApiConfig(credential=credential_client(auth), region_id=auth.alicloud_region, endpoint=host,
                              protocol=protocol, user_agent=USER_AGENT, read_timeout=auth.read_timeout * 1000,
                              connect_timeout=CONNECT_TIMEOUT * 1000)


def ecs_client(auth: AlicloudAuth) -> t.Any:
    """An ECS (2014-05-26) client: instances and Cloud Assistant."""
    require_tea()
    try:
        from alibabacloud_ecs20140526.client import Client as EcsClient
    except ImportError:
        raise CloudExecError('alibabacloud-ecs20140526 is required on the controller', code='MissingDependency',
                             provider='cloudexec', remedy='pip install alibabacloud-ecs20140526') from None
    return EcsClient(open_api_config(auth, 'ecs'))


def eci_client(auth: AlicloudAuth) -> t.Any:
    """An ECI (2018-08-08) client: container groups and exec."""
    require_tea()
    try:
        from alibabacloud_eci20180808.client import Client as EciClient
    except ImportError:
        raise CloudExecError('alibabacloud-eci20180808 is required on the controller', code='MissingDependency',
                             provider='cloudexec', remedy='pip install alibabacloud-eci20180808') from None
    return EciClient(open_api_config(auth, 'eci'))


def runtime_options(auth: AlicloudAuth, read_timeout: int | None = None) -> t.Any:
    """Per-call options: TLS verification and timeouts. The SDK's own retries stay off; the poller retries."""
    require_tea()
    seconds = read_timeout or auth.read_timeout
    return _TEA.RuntimeOptions(ignore_ssl=not auth.validate_certs, read_timeout=seconds * 1000, connect_timeout=CONNECT_TIMEOUT * 1000,
                               autoretry=False)


# --------------------------------------------------------------------------- network errors
# The SDK turns every requests/urllib3 failure into a RetryError holding only the text of the original
# exception (which names the URL, query string included), so the cause is read back from that text.

# (text to look for, code, retries allowed before the error is reported); the first match wins.
_NETWORK_KINDS: tuple[tuple[tuple[str, ...], str, int | None], ...] = (
    (('Read timed out',), 'Connection.ReadTimeout', 0),
    (('Connection refused',), 'Connection.Refused', 2),
    (('NameResolutionError', 'Failed to resolve', 'Name or service not known', 'nodename nor servname',
      'name resolution', 'getaddrinfo failed'), 'Connection.NameResolution', 2),
    (('ConnectTimeoutError', 'connect timeout='), 'Connection.Timeout', 1),
    (('SSLError', 'SSL:', 'CERTIFICATE_VERIFY_FAILED'), 'Connection.TLS', 0),
)
# A reset or dropped connection: transient, worth a few retries (the poller's back-off spaces them).
_OTHER_NETWORK_RETRIES = 3


def _inner_text(inner: BaseException | None) -> str:
    if inner is None:
        return ''
    message = getattr(inner, 'message', None)
    return str(message if isinstance(message, str) else inner)


def _request_url(request: t.Any) -> str | None:
    """scheme://host[:port] of the failed request: never its path, query string or user info."""
    headers = getattr(request, 'headers', None) or {}
    host = str(headers.get('host') or '').rsplit('@', 1)[-1].strip().rstrip('/')
    if not host:
        return None
    return f'{getattr(request, "protocol", None) or "https"}://{host}'.lower()


def _url_from_text(text: str) -> str | None:
    match = re.search(r"(HTTPS?)ConnectionPool\(host='([^']+)', port=(\d+)\)", text)
    return f'{match.group(1).lower()}://{match.group(2)}:{match.group(3)}' if match else None


def _without_urls(text: str) -> str:
    """text without anything that may be a URL, a query string or a path (they may carry signed parameters)."""
    text = re.sub(r'\b\w+://\S+', '<url>', text)
    text = re.sub(r'url: \S+', 'url: <url>', text)
    text = re.sub(r'\?[^\s\'"]*', '', text)
    return ' '.join(text.split())


def network_cause(text: str) -> str:
    """The cause of a network failure in a few words ("Connection refused", "Read timed out"), without any URL."""
    if 'Read timed out' in text:
        return 'Read timed out'
    if 'CERTIFICATE_VERIFY_FAILED' in text:
        return 'TLS certificate verify failed'
    match = re.search(r'\[Errno -?\d+\] ([^\'"()\[\]]+)', text)
    if match:
        return _without_urls(match.group(1)).rstrip('. ')
    if 'ConnectTimeoutError' in text or 'connect timeout=' in text:
        return 'Connection timed out'
    match = re.search(r"(\w+)\('([^']{1,200})'\)", text)
    if match:
        return _without_urls(f'{match.group(1)}: {match.group(2)}')
    return _without_urls(text)[:200] or 'network error'


def network_error(prefix: str, url: str | None, text: str, *, read_timeout: int | None = None,
                  endpoint_option: str | None = None) -> CloudExecError:
    """A CloudExecError for a failed HTTP exchange with an Alibaba Cloud endpoint: the URL (host and port only),
    the cause, and how often it is worth retrying (a read timeout: never, it already cost read_timeout seconds)."""
    url = url or _url_from_text(text) or 'the endpoint'
    cause = network_cause(text)
    option = endpoint_option or 'ecs_endpoint or eci_endpoint'
    variables = ' or '.join(f'ALICLOUD_{name.split("_")[0].upper()}_ENDPOINT' for name in option.split(' or '))
    check = f'check {option} ({variables}) and alicloud_region'
    code, retries = next(((kind, limit) for needles, kind, limit in _NETWORK_KINDS if any(n in text for n in needles)),
                         ('Connection.Error', _OTHER_NETWORK_RETRIES))
    if code == 'Connection.ReadTimeout':
        waited = f' within the read timeout of {read_timeout} seconds' if read_timeout else ' within the read timeout'
        message = f'no answer from {url}{waited} ({cause})'
        remedy = (f'If the service is slow to answer, raise read_timeout (ALICLOUD_READ_TIMEOUT; ansible_alicloud_read_timeout '
                  f'for the connection plugins); else {check}: the endpoint accepts connections but does not answer')
    elif code == 'Connection.Refused':
        message = f'cannot connect to {url}: {cause}'
        remedy = f'Nothing accepts connections at {url}: {check}, and that the controller can reach it'
    elif code == 'Connection.NameResolution':
        message = f'cannot resolve the host of {url}: {cause}'
        remedy = f'The default endpoints are ecs.<region>.aliyuncs.com and eci.<region>.aliyuncs.com: {check}, and the DNS of the controller'
    elif code == 'Connection.Timeout':
        message = f'cannot connect to {url}: no answer to the connection within {CONNECT_TIMEOUT} seconds ({cause})'
        remedy = f'A firewall or a missing route may drop the traffic: {check}, and that the controller can reach it'
    elif code == 'Connection.TLS':
        message = f'the TLS handshake with {url} failed ({cause})'
        remedy = ('Check the endpoint\'s certificate and the CA bundle of the controller; turn off validate_certs only '
                  'for a trusted test endpoint')
    else:
        message = f'the connection to {url} failed ({cause})'
        remedy = f'Check the network between the controller and {url}; {check}'
    return CloudExecError(prefix + message, code=code, provider='alicloud', remedy=remedy, retryable=bool(retries),
                          retry_limit=retries or None)


def alicloud_error(exc: BaseException, action: str | None = None, *, read_timeout: int | None = None,
                   endpoint_option: str | None = None) -> CloudExecError:
    """Map a Tea SDK exception to CloudExecError, with the remedy for its code.

    read_timeout (seconds) and endpoint_option (ecs_endpoint, eci_endpoint) only shape the text of network errors.
    """
    prefix = f'{action} failed: ' if action else ''
    tea = _tea_exception_types()
    if tea and isinstance(exc, tea[1]):
        inner = getattr(exc, 'inner_exception', None)
        if type(inner).__name__ == 'CredentialException':
            # No credential was found, or the chosen source refused one: not a network problem, and retrying
            # (the SDK's default chain probes the instance metadata service) only delays the same answer.
            detail = str(getattr(inner, 'message', '') or inner)
            return CloudExecError(prefix + f'no Alibaba Cloud credentials could be obtained ({detail[:300]})', code='CredentialError',
                                  provider='alicloud', retryable=False, remedy=CREDENTIALS_REMEDY)
        return network_error(prefix, _request_url(getattr(exc, 'last_request', None)), _inner_text(inner),
                             read_timeout=read_timeout, endpoint_option=endpoint_option)
    if tea and isinstance(exc, tea[0]):
        data = exc.data if isinstance(exc.data, dict) else {}
        status = getattr(exc, 'status_code', None) or getattr(exc, 'statusCode', None) or data.get('statusCode')
        code = exc.code or 'Unknown'
        message = exc.message or code
        # The SDK wraps the service's sentence as "code: <status>, <sentence> request id: <id>"
        # (older releases: "... message: <sentence> ..."); keep the sentence, the id is reported apart.
        if isinstance(message, str):
            message = re.sub(r'^code: \S+, ', '', message.split('message: ', 1)[-1])
            message = message.split(' request id:', 1)[0].strip()
        return CloudExecError(prefix + message, code=code, provider='alicloud', remedy=ALICLOUD_REMEDIES.get(code),
                              status=int(status) if status else None, request_id=data.get('RequestId'))
    return CloudExecError(prefix + str(exc), code=type(exc).__name__, provider='alicloud', retryable=False)


def call(client: t.Any, method: str, request: t.Any, auth: AlicloudAuth, read_timeout: int | None = None) -> t.Any:
    """Call `<method>_with_options(request, runtime)` on a Tea client and return the response body."""
    try:
        response = getattr(client, f'{method}_with_options')(request, runtime_options(auth, read_timeout))
    except Exception as exc:  # pylint: disable=broad-exception-caught  # the SDK's TeaException, imported lazily
        tea = _tea_exception_types()
        if not tea or not isinstance(exc, tea[0]):
            raise
        raise alicloud_error(exc, action=action_name(method), read_timeout=read_timeout or auth.read_timeout,
                             endpoint_option=_endpoint_option(client)) from None
    return response.body


def _endpoint_option(client: t.Any) -> str | None:
    """The option that sets this client's endpoint, from its SDK package (None for anything else)."""
    package = type(client).__module__.split('.', 1)[0]
    return {'alibabacloud_ecs20140526': 'ecs_endpoint', 'alibabacloud_eci20180808': 'eci_endpoint'}.get(package)


def action_name(method: str) -> str:
    """The API action of an SDK method name: describe_instances -> DescribeInstances."""
    return ''.join(part.capitalize() for part in method.split('_'))
