# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""API errors and how each cloud family puts them on the wire.

Handlers and signature checks raise :class:`ApiError`; the server turns it into the
body and status the real service uses, so the SDKs raise their usual exceptions
(botocore ``ClientError`` with ``Error.Code``, Tea ``ClientException``/``ServerException``
with ``.code``).
"""
from __future__ import annotations

import json
import uuid

from aiohttp import web

AWS_JSON_CONTENT_TYPE = 'application/x-amz-json-1.1'
ALI_HOST_ID = 'emulator.cloudexec.local'


class ApiError(Exception):
    """An error answer: a service error code, a message and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(f'{code}: {message}')
        self.code = code
        self.message = message
        self.status = status
        self.headers = dict(headers or {})


def new_request_id() -> str:
    """A request id in the upper-case UUID form both clouds use."""
    return str(uuid.uuid4()).upper()


def aws_response(payload: dict, request_id: str, status: int = 200) -> web.Response:
    """An AWS JSON 1.1 answer (success or error share the content type)."""
    return web.Response(
        status=status,
        body=json.dumps(payload, default=str).encode('utf-8'),
        headers={'Content-Type': AWS_JSON_CONTENT_TYPE, 'x-amzn-RequestId': request_id},
    )


def aws_error_response(err: ApiError, request_id: str) -> web.Response:
    """``{"__type": code, "message": ...}``: botocore's JSON parser takes the code from ``__type``."""
    resp = aws_response({'__type': err.code, 'message': err.message}, request_id, err.status)
    # Real AWS front doors also name the error in this header; botocore ignores it, curl users like it.
    resp.headers['x-amzn-ErrorType'] = err.code
    resp.headers.update(err.headers)
    return resp


def ali_response(payload: dict, request_id: str, status: int = 200) -> web.Response:
    """An Alibaba RPC JSON answer; ``RequestId`` is both in the body and in a header."""
    return web.Response(
        status=status,
        body=json.dumps(payload, default=str).encode('utf-8'),
        headers={'Content-Type': 'application/json;charset=utf-8', 'x-acs-request-id': request_id},
    )


def ali_error_response(err: ApiError, request_id: str) -> web.Response:
    """The error body every Alibaba RPC product returns."""
    body = {
        'RequestId': request_id,
        'HostId': ALI_HOST_ID,
        'Code': err.code,
        'Message': err.message,
        'Recommend': f'https://api.aliyun.com/troubleshoot?q={err.code}',
    }
    resp = ali_response(body, request_id, err.status)
    resp.headers.update(err.headers)
    return resp
