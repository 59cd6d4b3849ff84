# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aiohttp application: one port for AWS, Alibaba and the admin API.

Every API call arrives as ``POST /`` (Alibaba's older tools may use GET). The request tells which
cloud it is for: an ``X-Amz-Target`` header means AWS JSON 1.1; otherwise it is an Alibaba RPC call
whose ``Version`` (header ``x-acs-version`` with ACS3 signing, query/form parameter with the old
signature) names the product. The pipeline for each call is: identify product and action, count
it, verify the signature, apply injected faults, run the handler.
"""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from . import (admin, ali_eci, ali_ecs, alisign, aws_ecs, aws_kms, aws_query, aws_ssm, eci_exec, sigv4, ssm_agent, ssm_commands,
               ssm_documents, ssm_nodes, ssm_sessions)
from .context import STATE_KEY, ActionTable, CallContext, EmulatorState
from .errors import ApiError, ali_error_response, ali_response, aws_error_response, aws_response, new_request_id

LOG = logging.getLogger(__name__)

# Alibaba products served, by API version: (service name used by faults and counters, actions).
ALI_PRODUCTS: dict[str, tuple[str, ActionTable]] = {
    ali_ecs.VERSION: (ali_ecs.SERVICE, ali_ecs.ACTIONS),
    ali_eci.VERSION: (ali_eci.SERVICE, ali_eci.ACTIONS),
}
AWS_SERVICE = 'aws-ecs'
# The modules that register SSM actions on aws_ssm.ACTIONS (importing them is what registers them; see aws_ssm).
SSM_PARTS = (ssm_nodes, ssm_documents, ssm_sessions, ssm_commands)
# AWS JSON 1.1 products by X-Amz-Target prefix: (service name for counters and faults, actions, SigV4 signing name).
AWS_JSON_PRODUCTS = {
    aws_ecs.TARGET_PREFIX: (AWS_SERVICE, aws_ecs.ACTIONS, aws_ecs.SIGNING_NAME),
    aws_kms.TARGET_PREFIX: ('aws-kms', aws_kms.ACTIONS, aws_kms.SIGNING_NAME),
    aws_ssm.TARGET_PREFIX: (aws_ssm.SERVICE, aws_ssm.ACTIONS, aws_ssm.SIGNING_NAME),
}


def _split_raw_path(request: web.Request) -> tuple[str, str]:
    # The signatures cover the bytes as sent, so work from the undecoded path and query.
    path, _sep, query = request.raw_path.partition('?')
    return path, query


async def _run_handler(handler: Any, ctx: CallContext) -> dict[str, Any]:
    try:
        return await handler(ctx)
    except ApiError:
        raise
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # A bug in a handler must still answer like a service (and be visible in the log), not drop the connection.
        LOG.exception('handler %s/%s failed', ctx.service, ctx.action)
        raise ApiError('InternalError' if ctx.service.startswith('ali') else 'ServerException',
                       f'emulator handler failed: {exc!r}', 500) from exc


async def handle_aws(request: web.Request, state: EmulatorState, body: bytes) -> web.Response:
    request_id = new_request_id()
    prefix, _sep, action = request.headers['X-Amz-Target'].partition('.')
    service, actions, signing_name = AWS_JSON_PRODUCTS.get(prefix, (AWS_SERVICE, {}, aws_ecs.SIGNING_NAME))
    state.stats.count_call(service, action or '?')
    try:
        if action not in actions:
            raise ApiError('UnknownOperationException', f'Unknown operation {request.headers["X-Amz-Target"]}', 400)
        path, query = _split_raw_path(request)
        verified = sigv4.verify(
            sigv4.SignedRequest(method=request.method, raw_path=path, raw_query=query, headers=request.headers,
                                getall=lambda name: request.headers.getall(name, []), body=body),
            state.world.aws.credential, signing_name)
        state.stats.count_signature(service, sigv4.ALGORITHM)
        if verified.credential.denies(action, signing_name):
            raise ApiError('AccessDeniedException',
                           f'User: {verified.credential.principal} is not authorized to perform: {signing_name}:{action} on '
                           f'resource: * because no identity-based policy allows the {signing_name}:{action} action', 400)
        try:
            params = json.loads(body or b'{}')
        except ValueError as exc:
            raise ApiError('SerializationException', 'Start of structure or map found where not expected.', 400) from exc
        if not isinstance(params, dict):
            raise ApiError('SerializationException', 'Expected a JSON object.', 400)
        await state.faults.apply(service, action)
        ctx = CallContext(state=state, request=request, service=service, action=action, params=params,
                          request_id=request_id, credential=verified.credential, region=verified.region)
        return aws_response(await _run_handler(actions[action], ctx), request_id)
    except ApiError as err:
        state.stats.count_error(service, action or '?', err.code)
        return aws_error_response(err, request_id)


async def handle_alibaba(request: web.Request, state: EmulatorState, body: bytes) -> web.Response:
    request_id = new_request_id()
    path, raw_query = _split_raw_path(request)
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    form: dict[str, str] = {}
    if request.content_type == 'application/x-www-form-urlencoded' and body:
        form = dict(parse_qsl(body.decode('utf-8'), keep_blank_values=True))
    params = {**query, **form}
    action = request.headers.get('x-acs-action') or params.get('Action') or ''
    version = request.headers.get('x-acs-version') or params.get('Version') or ''
    service = 'ali'
    try:
        if not action:
            raise ApiError('MissingParameter', 'The input parameter "Action" that is mandatory for processing this request is not supplied.', 400)
        if version not in ALI_PRODUCTS:
            raise ApiError('InvalidVersion', f'Specified parameter Version is not valid: {version!r}.', 400)
        service, actions = ALI_PRODUCTS[version]
        state.stats.count_call(service, action)
        if action not in actions:
            raise ApiError('InvalidAction.NotFound', 'Specified api is not found, please check your url and method.', 404)
        signed = alisign.AliRequest(method=request.method, path=path, query=query, form=form, headers=request.headers,
                                    getall=lambda name: request.headers.getall(name, []), body=body)
        credential = alisign.verify(signed, state.world.alicloud.credential, state.nonces)
        state.stats.count_signature(service, alisign.ACS3_ALGORITHM if alisign.uses_acs3(signed) else alisign.RPC_ALGORITHM)
        await state.faults.apply(service, action)
        ctx = CallContext(state=state, request=request, service=service, action=action, params=params,
                          request_id=request_id, credential=credential, region=params.get('RegionId'))
        result = await _run_handler(actions[action], ctx)
        return ali_response({'RequestId': request_id, **result}, request_id)
    except ApiError as err:
        state.stats.count_error(service, action or '?', err.code)
        return ali_error_response(err, request_id)


async def handle_api(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.read()
    if 'X-Amz-Target' in request.headers:
        return await handle_aws(request, state, body)
    query_service = aws_query.scope_service(request.headers.get('Authorization', ''))
    if query_service in aws_query.SERVICES:
        # STS, IAM and EC2 (query protocol, for the ECS Exec preflight check): the SigV4 scope names the service.
        return await aws_query.handle(request, state, body, query_service)
    return await handle_alibaba(request, state, body)


async def _on_shutdown(app: web.Application) -> None:
    await app[STATE_KEY].runner.kill_all()


def create_app(state: EmulatorState) -> web.Application:
    """The application for one emulator; the world's fault rules are installed here (bad ones fail start-up)."""
    for spec in state.world.faults:
        state.faults.add(spec)
    # Generous body limit: later exec paths carry file transfers in API parameters.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    admin.add_routes(app)
    # ECS Exec's data channel (ssm_agent imports aws_exec, which adds ExecuteCommand to aws_ecs.ACTIONS).
    ssm_agent.add_routes(app)
    # ECI exec's websocket (eci_exec adds ExecContainerCommand to ali_eci.ACTIONS).
    eci_exec.add_routes(app)
    app.router.add_route('POST', '/', handle_api)
    app.router.add_route('GET', '/', handle_api)
    app.on_shutdown.append(_on_shutdown)
    return app
