# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS Signature Version 4 verification (Authorization-header form), written from the public spec.

The server recomputes the signature from what actually arrived on the wire and compares it with the
client's, so a wrong secret, a tampered body or a client that signs a different canonical request is
refused the way AWS refuses it. Error codes are those of AWS JSON-protocol services such as ECS.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import parse_qsl, quote

from .errors import ApiError
from .world import AwsCredential

ALGORITHM = 'AWS4-HMAC-SHA256'
# AWS accepts requests signed up to 5 minutes before or after its own clock.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
_AMZ_DATE_FORMAT = '%Y%m%dT%H%M%SZ'


@dataclass(frozen=True)
class SignedRequest:
    """What the verifier needs from an HTTP request; ``raw_path`` and ``raw_query`` as sent (still encoded)."""
    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    getall: Callable[[str], list[str]]
    body: bytes


@dataclass(frozen=True)
class Verified:
    credential: AwsCredential
    region: str
    service: str


def _incomplete(message: str) -> ApiError:
    return ApiError('IncompleteSignatureException', message, 400)


def _uri_encode(value: str, safe: str = '') -> str:
    # SigV4 "UriEncode": every byte except the unreserved set A-Z a-z 0-9 - _ . ~ is percent-encoded.
    return quote(value, safe='-_.~' + safe)


def canonical_query(raw_query: str) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    encoded = sorted((_uri_encode(k), _uri_encode(v)) for k, v in pairs)
    return '&'.join(f'{k}={v}' for k, v in encoded)


def canonical_uri(raw_path: str) -> str:
    # Services other than S3 encode the (already encoded) path a second time, segment by segment.
    return _uri_encode(raw_path or '/', safe='/')


def _header_value(values: list[str]) -> str:
    return ','.join(re.sub(r'\s+', ' ', v.strip()) for v in values)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ('AWS4' + secret).encode('utf-8')
    for part in (date, region, service, 'aws4_request'):
        key = hmac.new(key, part.encode('utf-8'), hashlib.sha256).digest()
    return key


def parse_authorization(header: str) -> dict[str, str]:
    """Split ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` into its parts."""
    algorithm, _sep, rest = header.strip().partition(' ')
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'")
    parts: dict[str, str] = {}
    for item in rest.split(','):
        key, sep, value = item.strip().partition('=')
        if sep:
            parts[key] = value
    for required in ('Credential', 'SignedHeaders', 'Signature'):
        if not parts.get(required):
            raise _incomplete(f"Authorization header requires '{required}' parameter. Authorization={header}")
    return parts


def verify(request: SignedRequest, lookup: Callable[[str], AwsCredential | None], service: str,
           now: datetime.datetime | None = None) -> Verified:
    """Check a SigV4-signed request; returns the caller's credential and the signed region, or raises ApiError."""
    header = request.headers.get('Authorization')
    if not header:
        if 'X-Amz-Signature' in request.raw_query:
            raise _incomplete('Query-string (presigned) authentication is not supported for this API.')
        raise ApiError('MissingAuthenticationTokenException', 'Missing Authentication Token', 403)
    parts = parse_authorization(header)

    scope = parts['Credential'].split('/')
    if len(scope) != 5 or scope[4] != 'aws4_request':
        raise _incomplete(f"Credential should be scoped to a valid region, service and 'aws4_request'. Credential={parts['Credential']}")
    access_key, scope_date, region, scope_service = scope[0], scope[1], scope[2], scope[3]

    amz_date = request.headers.get('X-Amz-Date')
    if not amz_date:
        raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=" + header)
    try:
        signed_at = datetime.datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError as exc:
        raise _incomplete(f"Invalid X-Amz-Date '{amz_date}': expected the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'") from exc

    credential = lookup(access_key)
    if credential is None:
        raise ApiError('UnrecognizedClientException', 'The security token included in the request is invalid.', 400)

    signed_headers = parts['SignedHeaders'].split(';')
    if 'host' not in signed_headers:
        raise ApiError('InvalidSignatureException', "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", 400)
    if scope_service != service:
        raise ApiError('InvalidSignatureException', f"Credential should be scoped to correct service: '{service}'. ", 400)
    if scope_date != amz_date[:8]:
        raise ApiError('InvalidSignatureException',
                       f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{amz_date[:8]}'",
                       400)

    canonical_headers = ''.join(f'{name}:{_header_value(request.getall(name))}\n' for name in signed_headers)
    canonical_request = '\n'.join((
        request.method.upper(),
        canonical_uri(request.raw_path),
        canonical_query(request.raw_query),
        canonical_headers,
        parts['SignedHeaders'],
        hashlib.sha256(request.body).hexdigest(),
    ))
    credential_scope = '/'.join(scope[1:])
    string_to_sign = '\n'.join((ALGORITHM, amz_date, credential_scope, hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()))
    expected = hmac.new(signing_key(credential.secret_key, scope_date, region, scope_service),
                        string_to_sign.encode('utf-8'), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts['Signature'].lower()):
        raise ApiError('InvalidSignatureException',
                       'The request signature we calculated does not match the signature you provided. '
                       'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.', 400)

    # Checked after the signature, like AWS: an unsigned clock is not worth reporting.
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if signed_at < now - MAX_CLOCK_SKEW:
        raise ApiError('InvalidSignatureException',
                       f'Signature expired: {amz_date} is now earlier than {(now - MAX_CLOCK_SKEW).strftime(_AMZ_DATE_FORMAT)} '
                       f'({now.strftime(_AMZ_DATE_FORMAT)} - 5 min.)', 400)
    if signed_at > now + MAX_CLOCK_SKEW:
        raise ApiError('InvalidSignatureException',
                       f'Signature not yet current: {amz_date} is still later than {(now + MAX_CLOCK_SKEW).strftime(_AMZ_DATE_FORMAT)} '
                       f'({now.strftime(_AMZ_DATE_FORMAT)} + 5 min.)', 400)

    # A temporary credential is only valid with its session token; a long-term key must not send one.
    token = request.headers.get('X-Amz-Security-Token')
    if (credential.session_token or None) != (token or None):
        raise ApiError('UnrecognizedClientException', 'The security token included in the request is invalid.', 400)
    return Verified(credential=credential, region=region, service=scope_service)
