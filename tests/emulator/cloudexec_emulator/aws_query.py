# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The few AWS query-protocol calls the collection makes: STS, IAM and EC2, XML answers.

What ``aws_ecs_exec_check`` needs: ``sts:GetCallerIdentity``, ``iam:SimulatePrincipalPolicy`` and
``ec2:DescribeNetworkInterfaces`` / ``ec2:DescribeVpcEndpoints``; ``aws_ssm_exec_check`` also ``iam:ListUserTags`` /
``iam:ListRoleTags`` (the caller's SSMSessionRunAs tag); and ``ec2:DescribeInstances`` for the SSM managed
nodes that are EC2 instances (ec2_instances.py). These services have no ``X-Amz-Target``
header: the server sends a SigV4-signed request here and the credential scope's service picks the product
(the real clouds use one host per service). IAM's policy simulation is NOT evaluated from policies: for the
task role it answers from the task's world field ``task_role_permissions_ok``, for a caller from the
credential's ``deny`` list. Denying ``iam:SimulatePrincipalPolicy`` (or ``ec2:Describe*``) in ``deny`` makes
the call fail with AccessDenied / UnauthorizedOperation, as a principal without that permission sees.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web

from . import ec2_instances, sigv4
from .aws_ecs import eni_id
from .context import EmulatorState
from .errors import ApiError, new_request_id
from .world import AwsCredential

SERVICES = ('sts', 'iam', 'ec2')
_NAMESPACES = {'sts': 'https://sts.amazonaws.com/doc/2011-06-15/', 'iam': 'https://iam.amazonaws.com/doc/2010-05-08/',
               'ec2': 'http://ec2.amazonaws.com/doc/2016-11-15/'}


def scope_service(authorization: str) -> str | None:
    """The service of a SigV4 Authorization header's credential scope (None when it is not SigV4)."""
    try:
        credential = sigv4.parse_authorization(authorization)['Credential']
    except ApiError:
        return None
    scope = credential.split('/')
    return scope[3] if len(scope) == 5 else None


def _xml(value: Any, tag: str) -> str:
    if isinstance(value, list):
        inner = ''.join(_xml(item, 'member' if tag[0].isupper() else 'item') for item in value)
    elif isinstance(value, dict):
        inner = ''.join(_xml(item, key) for key, item in value.items())
    elif isinstance(value, bool):
        inner = 'true' if value else 'false'
    else:
        inner = escape(str(value))
    return f'<{tag}>{inner}</{tag}>'


def _members(params: dict[str, str], name: str) -> list[str]:
    """Query-protocol lists: ``Name.member.1``, ``Name.member.2`` (IAM) or ``Name.1`` (EC2)."""
    found = [(key, value) for key, value in params.items() if key.startswith(f'{name}.member.') or key.startswith(f'{name}.')]
    return [value for _key, value in sorted(found, key=lambda kv: int(kv[0].rsplit('.', 1)[-1]))]


def _filters(params: dict[str, str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for key, value in params.items():
        if key.startswith('Filter.') and key.endswith('.Name'):
            number = key.split('.')[1]
            filters[value] = [v for k, v in params.items() if k.startswith(f'Filter.{number}.Value.')]
    return filters


def _denied(credential: AwsCredential, action: str) -> bool:
    return action in credential.deny or '*' in credential.deny


def _role_of(principal: str) -> str:
    """arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION -> arn:aws:iam::ACCOUNT:role/ROLE (what IAM simulates)."""
    if ':assumed-role/' not in principal:
        return principal
    head, rest = principal.split(':assumed-role/', 1)
    return head.replace(':sts:', ':iam:') + ':role/' + rest.split('/', 1)[0]


def _decision(state: EmulatorState, source: str, action: str) -> str:
    aws = state.world.aws
    caller = next((c for c in aws.credentials if source in (c.principal, _role_of(c.principal))), None)
    if caller is not None:
        return 'implicitDeny' if _denied(caller, action) else 'allowed'
    tasks = [t for t in aws.all_tasks() if t.task_role_arn == source]
    if not tasks:
        raise ApiError('NoSuchEntity', f'The role with name {source.rsplit("/", 1)[-1]} cannot be found.', 404)
    if action.startswith('ssmmessages:') and not all(t.task_role_permissions_ok for t in tasks):
        return 'implicitDeny'
    return 'allowed'


def _principal_tags(state: EmulatorState, action: str, params: dict[str, str]) -> dict[str, Any]:
    """IAM ListUserTags ``{UserName}`` / ListRoleTags ``{RoleName}``: the tags of a world credential's principal (an IAM
    user, or the role of an assumed-role principal), as ``{Tags: [{Key, Value}], IsTruncated}``. A name no credential's
    principal has: ``NoSuchEntity`` (404, "The user with name X cannot be found." / "The role with name X cannot be
    found."), as the IAM API reference lists for both actions. Session Manager reads the ``SSMSessionRunAs`` tag of the
    user or role (SSM user guide, "Turn on run as support for Linux and macOS managed nodes"); aws_ssm_exec_check reads
    it through these calls. Marker/MaxItems are accepted; a world has few tags, so there is never a second page.
    """
    kind, key = ('user', 'UserName') if action == 'ListUserTags' else ('role', 'RoleName')
    name = params.get(key) or ''
    if not name:
        raise ApiError('ValidationError', f'1 validation error detected: Value null at \'{key[0].lower() + key[1:]}\' failed to '
                       'satisfy constraint: Member must not be null', 400)
    for credential in state.world.aws.credentials:
        arn = _role_of(credential.principal)
        if f':{kind}/' in arn and arn.rsplit('/', 1)[-1] == name:
            return {'Tags': [{'Key': k, 'Value': v} for k, v in credential.tags.items()], 'IsTruncated': False}
    raise ApiError('NoSuchEntity', f'The {kind} with name {name} cannot be found.', 404)


def _answer(state: EmulatorState, service: str, action: str, params: dict[str, str], credential: AwsCredential,
            region: str) -> Any:
    aws = state.world.aws
    if service == 'sts' and action == 'GetCallerIdentity':
        return {'Arn': credential.principal, 'UserId': credential.access_key, 'Account': aws.account_id}
    if service == 'iam' and action == 'SimulatePrincipalPolicy':
        source = params.get('PolicySourceArn') or ''
        actions = _members(params, 'ActionNames')
        if not source or not actions:
            raise ApiError('InvalidInput', 'PolicySourceArn and ActionNames are required.', 400)
        resources = _members(params, 'ResourceArns') or ['*']
        results = [{'EvalActionName': name, 'EvalResourceName': resources[0], 'EvalDecision': _decision(state, source, name)}
                   for name in actions]
        return {'EvaluationResults': results, 'IsTruncated': False}
    if service == 'iam' and action in ('ListUserTags', 'ListRoleTags'):
        return _principal_tags(state, action, params)
    if service == 'ec2' and action == 'DescribeNetworkInterfaces':
        wanted = _members(params, 'NetworkInterfaceId')
        items = []
        for task in aws.all_tasks() if region == aws.region else []:
            if wanted and eni_id(task) not in wanted:
                continue
            item: dict[str, Any] = {'networkInterfaceId': eni_id(task), 'subnetId': 'subnet-emulator0001', 'vpcId': task.vpc_id,
                                    'status': 'in-use', 'privateIpAddress': '10.0.1.10', 'interfaceType': 'interface'}
            if task.public_ip:
                item['association'] = {'publicIp': task.public_ip, 'ipOwnerId': 'amazon'}
            items.append(item)
        missing = [eni for eni in wanted if eni not in {i['networkInterfaceId'] for i in items}]
        if missing:
            raise ApiError('InvalidNetworkInterfaceID.NotFound', f"The networkInterface ID '{missing[0]}' does not exist", 400)
        return {'networkInterfaceSet': items}
    if service == 'ec2' and action == 'DescribeInstances':
        # The EC2 managed nodes (ec2_instances.py), for the SSM inventory's names and tags.
        return ec2_instances.describe_instances(state, params, region)
    if service == 'ec2' and action == 'DescribeVpcEndpoints':
        filters = _filters(params)
        items = [{'vpcEndpointId': f'vpce-{pos:017x}', 'vpcEndpointType': 'Interface', 'vpcId': vpc, 'serviceName': name,
                  'state': 'available'}
                 for pos, (vpc, name) in enumerate(aws.vpc_endpoints)
                 if region == aws.region and vpc in filters.get('vpc-id', [vpc]) and name in filters.get('service-name', [name])]
        return {'vpcEndpointSet': items}
    raise ApiError('InvalidAction', f'The action {action} is not valid for this web service.', 400)


def _error(service: str, err: ApiError, request_id: str) -> web.Response:
    if service == 'ec2':
        body = (f'<Response><Errors><Error><Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message></Error></Errors>'
                f'<RequestID>{request_id}</RequestID></Response>')
    else:
        body = (f'<ErrorResponse><Error><Type>Sender</Type><Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>'
                f'</Error><RequestId>{request_id}</RequestId></ErrorResponse>')
    return web.Response(status=err.status, body=body.encode(), headers={'Content-Type': 'text/xml', 'x-amzn-RequestId': request_id})


async def handle(request: web.Request, state: EmulatorState, body: bytes, service: str) -> web.Response:
    """One query-protocol call; counted as service ``aws-<service>`` in the admin counters."""
    request_id = new_request_id()
    params = dict(parse_qsl(body.decode('utf-8'), keep_blank_values=True))
    action = params.get('Action') or '?'
    counter = f'aws-{service}'
    state.stats.count_call(counter, action)
    try:
        path, _sep, query = request.raw_path.partition('?')
        verified = sigv4.verify(sigv4.SignedRequest(method=request.method, raw_path=path, raw_query=query, headers=request.headers,
                                                    getall=lambda name: request.headers.getall(name, []), body=body),
                                state.world.aws.credential, service)
        if service != 'sts' and _denied(verified.credential, f'{service}:{action}'):
            code = 'UnauthorizedOperation' if service == 'ec2' else 'AccessDenied'
            raise ApiError(code, f'User: {verified.credential.principal} is not authorized to perform: {service}:{action}', 403)
        await state.faults.apply(counter, action)
        result = _answer(state, service, action, params, verified.credential, verified.region)
    except ApiError as err:
        state.stats.count_error(counter, action, err.code)
        return _error(service, err, request_id)
    namespace = _NAMESPACES[service]
    if service == 'ec2':
        inner = f'<requestId>{request_id}</requestId>' + ''.join(_xml(value, key) for key, value in result.items())
        text = f'<{action}Response xmlns="{namespace}">{inner}</{action}Response>'
    else:
        inner = ''.join(_xml(value, key) for key, value in result.items())
        text = (f'<{action}Response xmlns="{namespace}"><{action}Result>{inner}</{action}Result>'
                f'<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>')
    return web.Response(body=text.encode(), headers={'Content-Type': 'text/xml', 'x-amzn-RequestId': request_id})
