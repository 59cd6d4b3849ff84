# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba Cloud request signature verification, written from Alibaba's published signing specs.

Two algorithms reach an RPC API today:

* ACS3-HMAC-SHA256 (what the current Tea SDK sends by default): an ``Authorization`` header over a
  canonical request built from the method, path, query, the signed headers and the payload hash.
* The older RPC signature, HMAC-SHA1 (``signature_algorithm='v2'``, footmark, the aliyun CLI): a
  ``Signature`` parameter over the sorted, percent-encoded parameters.

Both are recomputed from what arrived and refused with the codes and statuses of the real gateway.
"""
from __future__ import annotations

import base64
import collections
import datetime
import hashlib
import hmac
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import quote

from .errors import ApiError
from .world import AliCredential

ACS3_ALGORITHM = 'ACS3-HMAC-SHA256'
RPC_ALGORITHM = 'HMAC-SHA1'
# The gateway refuses timestamps more than 15 minutes away from its clock.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)
_TIMESTAMP_FORMAT = '%Y-%m-%dT%H:%M:%SZ'


@dataclass(frozen=True)
class AliRequest:
    """A request as the verifier sees it: decoded query and form parameters, raw body, headers."""
    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]
    getall: Callable[[str], list[str]]
    body: bytes


def percent_encode(value: str) -> str:
    """RFC 3986 encoding (only A-Z a-z 0-9 - _ . ~ stay), which both Alibaba algorithms use."""
    return quote(value, safe='-_.~')


def _incomplete(message: str) -> ApiError:
    return ApiError('IncompleteSignature', message, 400)


def _mismatch() -> ApiError:
    return ApiError('SignatureDoesNotMatch', 'Specified signature is not matched with our calculation.', 400)


class NonceCache:
    """Remembers recent signature nonces so a replayed request is refused (SignatureNonceUsed)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def use(self, nonce: str) -> None:
        if nonce in self._seen:
            raise ApiError('SignatureNonceUsed', 'Specified signature nonce was used already.', 400)
        self._seen[nonce] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)


def _check_time(value: str | None, now: datetime.datetime, what: str) -> None:
    if not value:
        raise ApiError('MissingParameter', f'{what} is mandatory for this action.', 400)
    try:
        when = datetime.datetime.strptime(value, _TIMESTAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError as exc:
        raise ApiError('InvalidTimeStamp.Format', f'Specified time stamp or date value is not well formatted: {value}', 400) from exc
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise ApiError('InvalidTimeStamp.Expired', 'Specified time stamp or date value is expired.', 400)


def _check_credential(access_key_id: str, lookup: Callable[[str], AliCredential | None], token: str | None) -> AliCredential:
    credential = lookup(access_key_id)
    if credential is None:
        raise ApiError('InvalidAccessKeyId.NotFound', 'Specified access key is not found.', 404)
    if credential.security_token:
        if not token:
            raise ApiError('InvalidSecurityToken.Malformed', 'Specified SecurityToken is malformed: it is missing.', 400)
        if not hmac.compare_digest(token, credential.security_token):
            raise ApiError('InvalidSecurityToken.MismatchWithAccessKey', 'Specified SecurityToken mismatch with the AccessKey.', 400)
        if credential.expired:
            raise ApiError('InvalidSecurityToken.Expired', 'Specified SecurityToken is expired.', 400)
    elif token:
        raise ApiError('InvalidSecurityToken.MismatchWithAccessKey', 'Specified SecurityToken mismatch with the AccessKey.', 400)
    return credential


def uses_acs3(request: AliRequest) -> bool:
    return request.headers.get('Authorization', '').startswith('ACS3-')


def verify(request: AliRequest, lookup: Callable[[str], AliCredential | None], nonces: NonceCache,
           now: datetime.datetime | None = None) -> AliCredential:
    """Verify either signature form; returns the caller's credential or raises ApiError."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if uses_acs3(request):
        return _verify_acs3(request, lookup, nonces, now)
    if 'Signature' in request.query or 'Signature' in request.form or 'AccessKeyId' in request.query or 'AccessKeyId' in request.form:
        return _verify_rpc_v2(request, lookup, nonces, now)
    if request.headers.get('Authorization'):
        raise _incomplete('The request signature does not conform to Aliyun standards: unsupported Authorization scheme.')
    raise _incomplete('The request signature does not conform to Aliyun standards: no signature was sent.')


# --------------------------------------------------------------------------- ACS3-HMAC-SHA256


def _parse_acs3(header: str) -> tuple[str, dict[str, str]]:
    algorithm, _sep, rest = header.strip().partition(' ')
    parts: dict[str, str] = {}
    for item in rest.split(','):
        key, sep, value = item.strip().partition('=')
        if sep:
            parts[key] = value
    return algorithm, parts


def acs3_canonical_request(request: AliRequest, signed_headers: list[str], payload_hash: str) -> str:
    query = '&'.join(f'{percent_encode(k)}={percent_encode(v)}' for k, v in sorted(request.query.items()))
    # Repeated headers are signed as their sorted values joined by commas.
    headers = ''.join(f'{name}:{",".join(sorted(v.strip() for v in request.getall(name)))}\n' for name in signed_headers)
    return '\n'.join((request.method.upper(), request.path or '/', query, headers, ';'.join(signed_headers), payload_hash))


def _verify_acs3(request: AliRequest, lookup: Callable[[str], AliCredential | None], nonces: NonceCache,
                 now: datetime.datetime) -> AliCredential:
    algorithm, parts = _parse_acs3(request.headers['Authorization'])
    if algorithm != ACS3_ALGORITHM:
        raise _incomplete(f'The request signature does not conform to Aliyun standards: algorithm {algorithm} is not supported here.')
    for required in ('Credential', 'SignedHeaders', 'Signature'):
        if not parts.get(required):
            raise _incomplete(f'The request signature does not conform to Aliyun standards: the Authorization header lacks {required}.')
    credential = _check_credential(parts['Credential'], lookup, request.headers.get('x-acs-security-token'))

    signed_headers = parts['SignedHeaders'].split(';')
    if signed_headers != sorted(signed_headers) or 'host' not in signed_headers:
        raise _incomplete('The request signature does not conform to Aliyun standards: SignedHeaders must be sorted and include host.')
    payload_hash = hashlib.sha256(request.body).hexdigest()
    if request.headers.get('x-acs-content-sha256', payload_hash) != payload_hash:
        raise _mismatch()
    canonical = acs3_canonical_request(request, signed_headers, payload_hash)
    string_to_sign = f'{ACS3_ALGORITHM}\n{hashlib.sha256(canonical.encode("utf-8")).hexdigest()}'
    expected = hmac.new(credential.access_key_secret.encode('utf-8'), string_to_sign.encode('utf-8'), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts['Signature'].lower()):
        raise _mismatch()
    _check_time(request.headers.get('x-acs-date'), now, 'x-acs-date')
    if request.headers.get('x-acs-signature-nonce'):
        nonces.use(request.headers['x-acs-signature-nonce'])
    return credential


# --------------------------------------------------------------------------- RPC HMAC-SHA1 (v2)


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = '&'.join(f'{percent_encode(k)}={percent_encode(v)}' for k, v in sorted(params.items()) if k != 'Signature')
    return f'{method.upper()}&{percent_encode("/")}&{percent_encode(canonical)}'


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    digest = hmac.new(f'{secret}&'.encode('utf-8'), rpc_string_to_sign(method, params).encode('utf-8'), hashlib.sha1).digest()
    return base64.b64encode(digest).decode('ascii')


def _verify_rpc_v2(request: AliRequest, lookup: Callable[[str], AliCredential | None], nonces: NonceCache,
                   now: datetime.datetime) -> AliCredential:
    params = {**request.query, **request.form}
    for required in ('AccessKeyId', 'Signature', 'SignatureMethod', 'SignatureNonce'):
        if not params.get(required):
            raise _incomplete(f'The request signature does not conform to Aliyun standards: {required} is missing.')
    if params['SignatureMethod'] != RPC_ALGORITHM:
        raise ApiError('InvalidSignatureMethod', f'Specified signature method {params["SignatureMethod"]} is not supported.', 400)
    if params.get('SignatureVersion', '1.0') != '1.0':
        raise ApiError('InvalidSignatureVersion', f'Specified signature version {params["SignatureVersion"]} is not supported.', 400)
    credential = _check_credential(params['AccessKeyId'], lookup, params.get('SecurityToken'))
    expected = rpc_signature(credential.access_key_secret, request.method, params)
    if not hmac.compare_digest(expected, params['Signature']):
        raise _mismatch()
    _check_time(params.get('Timestamp'), now, 'Timestamp')
    nonces.use(params['SignatureNonce'])
    return credential
