# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon ECS (AWS JSON 1.1, ``X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Action>``).

Shapes follow botocore's ecs service model, so boto3 parses them into the usual dicts (timestamps
become datetimes). Only the world's region has clusters, as on AWS where a cluster is regional.
"""
from __future__ import annotations

import datetime
from typing import Any

from .context import ActionTable, CallContext
from .errors import ApiError
from .paging import BadToken, page
from .world import EcsCluster, EcsTask

TARGET_PREFIX = 'AmazonEC2ContainerServiceV20141113'
SIGNING_NAME = 'ecs'

ACTIONS = ActionTable()


def _invalid(message: str) -> ApiError:
    return ApiError('InvalidParameterException', message, 400)


def _epoch(when: datetime.datetime) -> float:
    return when.timestamp()


def _clusters(ctx: CallContext) -> list[EcsCluster]:
    return ctx.world.aws.clusters if ctx.region == ctx.world.aws.region else []


def _cluster(ctx: CallContext, ref: str | None) -> EcsCluster:
    ref = ref or 'default'
    cluster = next((c for c in _clusters(ctx) if ref in (c.name, c.arn)), None)
    if cluster is None:
        raise ApiError('ClusterNotFoundException', 'Cluster not found.', 400)
    return cluster


def _max_results(ctx: CallContext, upper: int = 100) -> int:
    value = ctx.param('maxResults', upper)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
        raise _invalid(f'maxResults must be between 1 and {upper}.')
    return value


def _page(ctx: CallContext, items: list[Any], query: Any, upper: int = 100) -> tuple[list[Any], str | None]:
    try:
        return page(items, ctx.param('nextToken'), _max_results(ctx, upper), query)
    except BadToken as exc:
        raise _invalid('Invalid nextToken.') from exc


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{'key': k, 'value': v} for k, v in tags.items()]


def _arn(ctx: CallContext, kind: str, name: str) -> str:
    return f'arn:aws:ecs:{ctx.region}:{ctx.world.aws.account_id}:{kind}/{name}'


@ACTIONS.register('ListClusters')
async def list_clusters(ctx: CallContext) -> dict[str, Any]:
    arns, token = _page(ctx, [c.arn for c in _clusters(ctx)], 'clusters')
    result: dict[str, Any] = {'clusterArns': arns}
    if token:
        result['nextToken'] = token
    return result


def cluster_view(cluster: EcsCluster, include: list[str]) -> dict[str, Any]:
    running = sum(1 for t in cluster.tasks if t.last_status == 'RUNNING')
    pending = sum(1 for t in cluster.tasks if t.last_status in ('PROVISIONING', 'PENDING', 'ACTIVATING'))
    view: dict[str, Any] = {
        'clusterArn': cluster.arn, 'clusterName': cluster.name, 'status': cluster.status,
        'registeredContainerInstancesCount': 0, 'runningTasksCount': running, 'pendingTasksCount': pending,
        'activeServicesCount': len(cluster.services), 'statistics': [],
        'capacityProviders': ['FARGATE', 'FARGATE_SPOT'], 'defaultCapacityProviderStrategy': [],
    }
    if 'TAGS' in include:
        view['tags'] = _tags(cluster.tags)
    if 'SETTINGS' in include:
        view['settings'] = [{'name': 'containerInsights', 'value': cluster.container_insights}]
    if 'CONFIGURATIONS' in include:
        exec_config: dict[str, Any] = {'logging': cluster.exec_logging}
        if cluster.exec_logging == 'OVERRIDE':
            exec_config['logConfiguration'] = {'cloudWatchLogGroupName': f'/ecs/exec/{cluster.name}', 'cloudWatchEncryptionEnabled': False}
        if cluster.kms_key_id:
            exec_config['kmsKeyId'] = cluster.kms_key_id
        view['configuration'] = {'executeCommandConfiguration': exec_config}
    return view


@ACTIONS.register('DescribeClusters')
async def describe_clusters(ctx: CallContext) -> dict[str, Any]:
    refs = ctx.param('clusters') or ['default']
    include = ctx.param('include') or []
    clusters, failures = [], []
    for ref in refs:
        cluster = next((c for c in _clusters(ctx) if ref in (c.name, c.arn)), None)
        if cluster is None:
            failures.append({'arn': ref if ref.startswith('arn:') else _arn(ctx, 'cluster', ref), 'reason': 'MISSING'})
        else:
            clusters.append(cluster_view(cluster, include))
    return {'clusters': clusters, 'failures': failures}


@ACTIONS.register('ListServices')
async def list_services(ctx: CallContext) -> dict[str, Any]:
    cluster = _cluster(ctx, ctx.param('cluster'))
    launch_type = ctx.param('launchType')
    services = [s for s in cluster.services
                if not launch_type or any(t.service == s and t.launch_type == launch_type for t in cluster.tasks)]
    arns, token = _page(ctx, [_arn(ctx, 'service', f'{cluster.name}/{s}') for s in services], ['services', cluster.name, launch_type])
    result: dict[str, Any] = {'serviceArns': arns}
    if token:
        result['nextToken'] = token
    return result


@ACTIONS.register('ListTasks')
async def list_tasks(ctx: CallContext) -> dict[str, Any]:
    cluster = _cluster(ctx, ctx.param('cluster'))
    service = ctx.param('serviceName')
    if service and service not in cluster.services:
        raise ApiError('ServiceNotFoundException', 'Service not found.', 400)
    family = ctx.param('family')
    launch_type = ctx.param('launchType')
    started_by = ctx.param('startedBy')
    desired = ctx.param('desiredStatus', 'RUNNING')
    if desired not in ('RUNNING', 'PENDING', 'STOPPED'):
        raise _invalid('desiredStatus must be one of RUNNING, PENDING, STOPPED.')
    if service and family:
        raise _invalid('Family and serviceName cannot both be specified.')
    tasks = [t for t in cluster.tasks
             if t.desired_status == desired
             and (not service or t.service == service)
             and (not family or t.family == family)
             and (not launch_type or t.launch_type == launch_type)
             and (not started_by or t.started_by == started_by)]
    query = ['tasks', cluster.name, service, family, launch_type, started_by, desired]
    arns, token = _page(ctx, [t.arn for t in tasks], query)
    result: dict[str, Any] = {'taskArns': arns}
    if token:
        result['nextToken'] = token
    return result


def task_view(task: EcsTask, cluster: EcsCluster, include: list[str]) -> dict[str, Any]:
    created = _epoch(task.created_at)
    running = task.last_status == 'RUNNING'
    containers = []
    for container in task.containers:
        view: dict[str, Any] = {
            'containerArn': container.arn, 'taskArn': task.arn, 'name': container.name, 'image': container.image,
            'runtimeId': container.runtime_id, 'lastStatus': container.last_status, 'healthStatus': 'UNKNOWN',
            'networkBindings': [], 'networkInterfaces': [{'attachmentId': task.task_id[:8] + '-eni', 'privateIpv4Address': '10.0.1.10'}],
            'cpu': container.cpu,
        }
        if container.memory is not None:
            view['memory'] = container.memory
        if task.enable_execute_command:
            # The agent only exists where exec was enabled at task start.
            view['managedAgents'] = [{'name': 'ExecuteCommandAgent', 'lastStatus': container.agent_status,
                                      'lastStartedAt': created + 30}]
        containers.append(view)
    view = {
        'taskArn': task.arn, 'clusterArn': cluster.arn, 'taskDefinitionArn': task.task_definition_arn,
        'containers': containers, 'lastStatus': task.last_status, 'desiredStatus': task.desired_status,
        'launchType': task.launch_type, 'group': task.group, 'enableExecuteCommand': task.enable_execute_command,
        'availabilityZone': task.availability_zone, 'cpu': task.cpu, 'memory': task.memory, 'createdAt': created,
        'connectivity': 'CONNECTED' if running else 'DISCONNECTED', 'healthStatus': 'UNKNOWN', 'version': 3,
        'attributes': [{'name': 'ecs.cpu-architecture', 'value': 'x86_64'}], 'overrides': {'containerOverrides': []},
    }
    if running:
        view.update({'startedAt': created + 20, 'pullStartedAt': created + 5, 'pullStoppedAt': created + 15, 'connectivityAt': created + 3})
    if task.started_by:
        view['startedBy'] = task.started_by
    # awsvpc networking: the task's ENI (the preflight check follows it to the VPC and a public IP).
    view['attachments'] = [{'id': task.task_id[:8] + '-attachment', 'type': 'ElasticNetworkInterface', 'status': 'ATTACHED',
                            'details': [{'name': 'subnetId', 'value': 'subnet-emulator0001'},
                                        {'name': 'networkInterfaceId', 'value': eni_id(task)},
                                        {'name': 'privateIPv4Address', 'value': '10.0.1.10'}]}]
    if task.launch_type == 'EC2':
        view['containerInstanceArn'] = container_instance_arn(task, cluster)
    if task.platform_version:
        view['platformVersion'] = task.platform_version
        view['platformFamily'] = 'Linux'
        view['capacityProviderName'] = 'FARGATE'
    if 'TAGS' in include:
        view['tags'] = _tags(task.tags)
    return view


@ACTIONS.register('DescribeTasks')
async def describe_tasks(ctx: CallContext) -> dict[str, Any]:
    cluster = _cluster(ctx, ctx.param('cluster'))
    refs = ctx.param('tasks')
    if not refs or not isinstance(refs, list):
        raise _invalid('Tasks cannot be empty.')
    if len(refs) > 100:
        raise _invalid('Tasks cannot have more than 100 elements.')
    include = ctx.param('include') or []
    tasks, failures = [], []
    for ref in refs:
        task = next((t for t in cluster.tasks if ref in (t.task_id, t.arn)), None)
        if task is None:
            arn = ref if str(ref).startswith('arn:') else _arn(ctx, 'task', f'{cluster.name}/{ref}')
            failures.append({'arn': arn, 'reason': 'MISSING'})
        else:
            tasks.append(task_view(task, cluster, include))
    return {'tasks': tasks, 'failures': failures}


def eni_id(task: EcsTask) -> str:
    """The id of the task's network interface (awsvpc)."""
    return 'eni-' + task.task_id[:17]


def container_instance_arn(task: EcsTask, cluster: EcsCluster) -> str:
    """Each EC2 task of the world runs on a container instance of its own, named after the task."""
    return task.arn.replace(':task/', ':container-instance/')


@ACTIONS.register('DescribeTaskDefinition')
async def describe_task_definition(ctx: CallContext) -> dict[str, Any]:
    ref = ctx.require('taskDefinition')
    for task in (t for c in _clusters(ctx) for t in c.tasks):
        if ref in (task.task_definition_arn, f'{task.family}:{task.revision}', task.family):
            definition: dict[str, Any] = {
                'taskDefinitionArn': task.task_definition_arn, 'family': task.family, 'revision': task.revision,
                'status': 'ACTIVE', 'networkMode': 'awsvpc', 'cpu': task.cpu, 'memory': task.memory,
                'requiresCompatibilities': [task.launch_type],
                'containerDefinitions': [{'name': c.name, 'image': c.image, 'essential': True} for c in task.containers],
            }
            if task.task_role_arn:
                definition['taskRoleArn'] = task.task_role_arn
            return {'taskDefinition': definition}
    raise ApiError('ClientException', 'Unable to describe task definition.', 400)


@ACTIONS.register('DescribeContainerInstances')
async def describe_container_instances(ctx: CallContext) -> dict[str, Any]:
    cluster = _cluster(ctx, ctx.param('cluster'))
    refs = ctx.param('containerInstances')
    if not refs or not isinstance(refs, list):
        raise _invalid('ContainerInstances cannot be empty.')
    found, failures = [], []
    for ref in refs:
        task = next((t for t in cluster.tasks if t.launch_type == 'EC2' and ref == container_instance_arn(t, cluster)), None)
        if task is None:
            failures.append({'arn': ref, 'reason': 'MISSING'})
            continue
        found.append({'containerInstanceArn': ref, 'ec2InstanceId': 'i-' + task.task_id[:17], 'status': 'ACTIVE',
                      'agentConnected': True, 'runningTasksCount': 1, 'pendingTasksCount': 0,
                      'versionInfo': {'agentVersion': task.ecs_agent_version, 'agentHash': 'emulator', 'dockerVersion': 'DockerVersion: 25.0.3'}})
    return {'containerInstances': found, 'failures': failures}
