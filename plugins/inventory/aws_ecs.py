# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: aws_ecs
short_description: Amazon ECS task containers as hosts, reached through ECS Exec
version_added: 0.1.0
description:
  - Lists the tasks of Amazon ECS clusters and adds their containers as hosts, each wired to the
    P(cloudexec.core.aws_ecs#connection) connection plugin with its cluster, task and container.
  - By default only containers that ECS Exec can reach are listed (O(exec_enabled_only)).
  - The configuration file name must end with C(aws_ecs.yml) or C(aws_ecs.yaml), for example C(prod.aws_ecs.yml).
  - Every value that comes from the ECS API is marked unsafe, so a tag or a name holding C({{ }}) is never templated.
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.aws_auth.plugins
  - constructed
  - inventory_cache
options:
  plugin:
    description:
      - The name of this plugin; set it to V(cloudexec.core.aws_ecs) for this plugin to read the file.
    type: str
    required: true
    choices: [cloudexec.core.aws_ecs]
  regions:
    description:
      - The regions to list tasks in.
      - When empty, the region of the credentials (O(region), E(AWS_REGION), the profile) is used.
    type: list
    elements: str
    default: []
  clusters:
    description:
      - Cluster names or ARNs to list tasks of.
      - When empty, every cluster of each region (C(ListClusters)).
      - A cluster name is looked up in every region of O(regions); a cluster found in none of them is an error.
        An ARN is looked up only in its own region.
    type: list
    elements: str
    default: []
  services:
    description:
      - Only tasks started by these ECS services (whose group is C(service:<name>)).
      - The filter is sent to C(ListTasks); a cluster without such a service contributes no host.
    type: list
    elements: str
    default: []
  launch_type:
    description:
      - Only tasks of this launch type. Sent to C(ListTasks).
    type: str
    choices: [FARGATE, EC2, EXTERNAL]
  desired_status:
    description:
      - Only tasks with this desired status. Sent to C(ListTasks).
      - ECS Exec reaches only running tasks, so with V(STOPPED) or V(PENDING) also set O(exec_enabled_only=false).
    type: str
    choices: [RUNNING, PENDING, STOPPED]
    default: RUNNING
  tags:
    description:
      - Only tasks whose tags match every entry of this dictionary.
      - A string value must equal the tag's value; a list matches any of its values; V(null) (C(~)) only
        requires the tag to be present.
    type: dict
    default: {}
  exec_enabled_only:
    description:
      - Only containers that ECS Exec can reach right now, so that every host of the inventory can run tasks.
      - That is, the task is C(RUNNING) and was started with C(enableExecuteCommand), and in the container both the
        container and its C(ExecuteCommandAgent) are C(RUNNING).
      - Set to V(false) to list every container (or task) that the filters select.
    type: bool
    default: true
  container_mode:
    description:
      - V(container) adds one host per container of each task.
      - V(task) adds one host per task, reached through one of its containers; the first container ECS Exec can
        reach, else the first container of the task.
    type: str
    choices: [container, task]
    default: container
  hostnames:
    description:
      - Host name patterns, in order of preference. The first pattern that gives a name not yet used by another
        host is used; when none does, the default pattern is used.
      - A pattern is text with placeholders. C({field}) is a field of the C(aws_ecs) host variable (for example
        C({task_id}), C({cluster_name}), C({container_name}), C({service}), C({family})); C({tag:KEY}) is the
        value of the task tag C(KEY). A pattern without braces is one placeholder, so V(task_id) means
        C({task_id}) and V(tag:Name) means C({tag:Name}).
      - A pattern whose placeholder has no value (a missing tag, a task without service) is skipped.
      - The default pattern is C({cluster_name}_{task_id}_{container_name}), or C({cluster_name}_{task_id})
        when O(container_mode=task).
    type: list
    elements: str
    default: []
notes:
  - Each host gets the variables C(ansible_connection=cloudexec.core.aws_ecs), C(ansible_aws_ecs_cluster) (the cluster ARN),
    C(ansible_aws_ecs_task) (the task ARN), C(ansible_aws_ecs_container), C(ansible_aws_region), also
    C(ansible_aws_endpoint_url) and C(ansible_aws_profile) when the inventory used an O(endpoint_url) or a O(profile)
    (from this file or the environment), and C(aws_ecs), a dictionary
    with C(cluster_arn), C(cluster_name), C(task_arn), C(task_id), C(container_name), C(container_runtime_id), C(image),
    C(launch_type), C(platform_version), C(service), C(family), C(revision), C(tags), C(last_status), C(desired_status),
    C(availability_zone), C(exec_enabled), C(agent_status) and C(region).
  - Hosts are put in the groups C(aws_ecs), C(cluster_<cluster name>), C(service_<service name>) and
    C(launch_type_<fargate|ec2|external>); characters not valid in a variable name become C(_).
  - The IAM principal needs C(ecs:ListClusters) (when O(clusters) is empty), C(ecs:ListTasks) and C(ecs:DescribeTasks).
  - "How credentials reach the connection: the region, endpoint and profile the inventory used are passed to its hosts
    (above), so that the connection reaches them the way the inventory found them; C(compose) may override them per
    host. Keys given here (O(access_key), O(secret_key), O(session_token)) list the tasks only: they never go into host
    variables, where C(ansible-inventory --list) would show them. The connection reads its keys from the environment
    (E(AWS_ACCESS_KEY_ID), E(AWS_SECRET_ACCESS_KEY), E(AWS_SESSION_TOKEN)), from the profile (give O(profile) here and
    every host gets it), from C(ansible_aws_access_key_id), C(ansible_aws_secret_access_key) and
    C(ansible_aws_session_token) in group_vars (encrypted with Ansible Vault), or from an instance or task role."
  - With O(cache=true) the API answers are cached under a key made of the file's path and the options that shape the
    query (regions, clusters, services, launch type, desired status, endpoint, access key id or profile).
    C(--flush-cache) and the C(refresh_inventory) meta task query the API again.
seealso:
  - plugin: cloudexec.core.aws_ecs
    plugin_type: connection
  - name: ECS Exec
    description: Using Amazon ECS Exec for debugging.
    link: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-exec.html
'''

EXAMPLES = r'''
---
# prod.aws_ecs.yml: every exec-capable container of two clusters
plugin: cloudexec.core.aws_ecs
regions: [eu-west-1]
clusters: [web, api]

---
# web.aws_ecs.yml: one host per task of the web service, named after the task id,
# grouped by the value of its app tag, with a short name as a variable
plugin: cloudexec.core.aws_ecs
services: [web]
launch_type: FARGATE
container_mode: task
hostnames:
  - tag:Name
  - task_id
keyed_groups:
  - key: aws_ecs.tags.app
    prefix: app
compose:
  short_name: aws_ecs.family ~ '-' ~ aws_ecs.task_id[:8]
groups:
  canary: aws_ecs.tags.track | default('') == 'canary'

---
# private.aws_ecs.yml: through a VPC endpoint with a named profile; both reach every host
# (ansible_aws_endpoint_url, ansible_aws_profile), so the connection needs nothing more
plugin: cloudexec.core.aws_ecs
regions: [eu-west-1]
endpoint_url: https://vpce-0a1b2c3d4e5f-ecs.eu-west-1.vpce.amazonaws.com
profile: ops

---
# cached.aws_ecs.yml: answers cached for ten minutes in JSON files
plugin: cloudexec.core.aws_ecs
profile: ops
tags:
  env: [staging, production]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/cloudexec-inventory
cache_timeout: 600
'''

import dataclasses
import typing as t

from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.cloudexec.core.plugins.module_utils import aws
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils.inventory import (
    add_host,
    auth_from_options,
    aws_regions,
    cache_key,
    cached_query,
    choose_hostname,
    connection_settings,
    make_unsafe,
    safe_group_name,
    to_ansible_error,
)

CONNECTION = 'cloudexec.core.aws_ecs'
EXEC_AGENT = 'ExecuteCommandAgent'
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks
DEFAULT_CONTAINER_HOSTNAME = '{cluster_name}_{task_id}_{container_name}'
DEFAULT_TASK_HOSTNAME = '{cluster_name}_{task_id}'


def _arn_tail(arn: str | None) -> str:
    return (arn or '').rsplit('/', 1)[-1]


def _arn_region(arn: str) -> str | None:
    parts = arn.split(':')
    return parts[3] if arn.startswith('arn:') and len(parts) > 5 else None


def task_record(task: dict[str, t.Any], region: str) -> dict[str, t.Any]:
    """The parts of a DescribeTasks task the plugin uses, as plain JSON data (it may go to a cache)."""
    group = task.get('group') or ''
    definition = _arn_tail(task.get('taskDefinitionArn'))
    family, _sep, revision = definition.rpartition(':')
    if not family:
        family, revision = definition, ''
    containers = []
    for container in task.get('containers') or []:
        agents = {a.get('name'): a.get('lastStatus') for a in container.get('managedAgents') or []}
        containers.append({
            'name': container.get('name'),
            'runtime_id': container.get('runtimeId'),
            'image': container.get('image'),
            'last_status': container.get('lastStatus'),
            'agent_status': agents.get(EXEC_AGENT),
        })
    return {
        'region': region,
        'cluster_arn': task.get('clusterArn'),
        'cluster_name': _arn_tail(task.get('clusterArn')),
        'task_arn': task.get('taskArn'),
        'task_id': _arn_tail(task.get('taskArn')),
        'launch_type': task.get('launchType'),
        'platform_version': task.get('platformVersion'),
        'service': group[len('service:'):] if group.startswith('service:') else None,
        'family': family or None,
        'revision': int(revision) if revision.isdigit() else None,
        'tags': {tag.get('key'): tag.get('value') for tag in task.get('tags') or []},
        'last_status': task.get('lastStatus'),
        'desired_status': task.get('desiredStatus'),
        'availability_zone': task.get('availabilityZone'),
        'exec_enabled': bool(task.get('enableExecuteCommand')),
        'containers': containers,
    }


def exec_ready(task: t.Mapping[str, t.Any], container: t.Mapping[str, t.Any]) -> bool:
    """Whether ECS Exec can reach this container now (what ExecuteCommand would accept)."""
    return (task.get('last_status') == 'RUNNING' and bool(task.get('exec_enabled'))
            and container.get('last_status') == 'RUNNING' and container.get('agent_status') == 'RUNNING')


def tags_match(tags: t.Mapping[str, t.Any], wanted: t.Mapping[str, t.Any]) -> bool:
    """Whether tags satisfy every entry of wanted (string: equal; list: any of; None: present)."""
    for key, value in wanted.items():
        if key not in tags:
            return False
        if value is None:
            continue
        accepted = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if str(tags[key]) not in accepted:
            return False
    return True


def pick_containers(task: t.Mapping[str, t.Any], mode: str, exec_only: bool) -> list[dict[str, t.Any]]:
    """The containers that become hosts: all (container mode) or one (task mode), minus unreachable ones when exec_only."""
    containers = list(task.get('containers') or [])
    ready = [c for c in containers if exec_ready(task, c)]
    if mode == 'task':
        chosen = ready[:1] or ([] if exec_only else containers[:1])
        return chosen
    return ready if exec_only else containers


def host_fields(task: t.Mapping[str, t.Any], container: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The `aws_ecs` host variable for one container of a task."""
    return {
        'region': task.get('region'),
        'cluster_arn': task.get('cluster_arn'),
        'cluster_name': task.get('cluster_name'),
        'task_arn': task.get('task_arn'),
        'task_id': task.get('task_id'),
        'container_name': container.get('name'),
        'container_runtime_id': container.get('runtime_id'),
        'image': container.get('image'),
        'launch_type': task.get('launch_type'),
        'platform_version': task.get('platform_version'),
        'service': task.get('service'),
        'family': task.get('family'),
        'revision': task.get('revision'),
        'tags': dict(task.get('tags') or {}),
        'last_status': task.get('last_status'),
        'desired_status': task.get('desired_status'),
        'availability_zone': task.get('availability_zone'),
        'exec_enabled': bool(task.get('exec_enabled')),
        'agent_status': container.get('agent_status'),
    }


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """ECS task containers as hosts for the aws_ecs connection."""

    NAME = 'cloudexec.core.aws_ecs'

    def verify_file(self, path: str) -> bool:
        """Accept only files named *aws_ecs.yml or *aws_ecs.yaml."""
        return bool(super().verify_file(path)) and path.endswith(('aws_ecs.yml', 'aws_ecs.yaml'))

    def parse(self, inventory: t.Any, loader: t.Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        auth = auth_from_options(self, aws.AwsAuth.from_options)
        try:
            regions = self._regions(auth)
            query = {
                'regions': regions,
                'clusters': self.get_option('clusters'),
                'services': self.get_option('services'),
                'launch_type': self.get_option('launch_type'),
                'desired_status': self.get_option('desired_status'),
                'endpoint_url': auth.endpoint_url,
                'access_key': auth.access_key,
                'profile': auth.profile,
            }
            key = cache_key(self, path, query)
            tasks = cached_query(self, key, cache, lambda: self._query(auth, regions))
        except CloudExecError as error:
            raise to_ansible_error(error, self.NAME) from None
        self._populate(tasks, auth)

    def _regions(self, auth: aws.AwsAuth) -> list[str]:
        return aws_regions(self.get_option('regions'), auth, aws.aws_session)

    def _query(self, auth: aws.AwsAuth, regions: list[str]) -> list[dict[str, t.Any]]:
        """DescribeTasks records of every selected task, in every region."""
        wanted = list(self.get_option('clusters') or [])
        found: set[str] = set()
        tasks: list[dict[str, t.Any]] = []
        for region in regions:
            client = aws.aws_client(dataclasses.replace(auth, region=region), 'ecs')
            if wanted:
                # An ARN names its region; a name may live in any of the regions.
                clusters = [c for c in wanted if _arn_region(c) in (None, region)]
            else:
                clusters = aws.paginate(client, 'list_clusters', 'clusterArns')
            for cluster in clusters:
                try:
                    arns = self._task_arns(client, cluster)
                except CloudExecError as error:
                    if error.code == 'ClusterNotFoundException' and wanted and len(regions) > 1 and not cluster.startswith('arn:'):
                        continue  # looked for in the other regions too; reported below when found nowhere
                    raise
                found.add(cluster)
                for start in range(0, len(arns), DESCRIBE_BATCH):
                    answer = aws.call(client, 'describe_tasks', cluster=cluster, tasks=arns[start:start + DESCRIBE_BATCH],
                                      include=['TAGS'])
                    tasks.extend(task_record(task, region) for task in answer.get('tasks') or [])
        missing = [c for c in wanted if c not in found]
        if missing:
            raise CloudExecError(f'cluster {", ".join(missing)} was not found in region {", ".join(regions)}',
                                 code='ClusterNotFoundException', provider='aws', retryable=False,
                                 remedy=aws.AWS_REMEDIES['ClusterNotFoundException'])
        return tasks

    def _task_arns(self, client: t.Any, cluster: str) -> list[str]:
        """ListTasks for one cluster, with the service, launch type and desired status filters."""
        kwargs: dict[str, t.Any] = {'cluster': cluster, 'desiredStatus': self.get_option('desired_status')}
        if self.get_option('launch_type'):
            kwargs['launchType'] = self.get_option('launch_type')
        services = self.get_option('services') or [None]
        arns: list[str] = []
        for service in services:
            try:
                if service:
                    arns.extend(aws.paginate(client, 'list_tasks', 'taskArns', serviceName=service, **kwargs))
                else:
                    arns.extend(aws.paginate(client, 'list_tasks', 'taskArns', **kwargs))
            except CloudExecError as error:
                if error.code == 'ServiceNotFoundException':
                    continue  # this cluster has no such service: no tasks of it here
                raise
        return list(dict.fromkeys(arns))

    def _populate(self, tasks: list[dict[str, t.Any]], auth: aws.AwsAuth) -> None:
        mode = self.get_option('container_mode')
        # The endpoint and profile the hosts were found with reach them too; keys never go into host variables.
        settings = connection_settings({'ansible_aws_endpoint_url': auth.endpoint_url, 'ansible_aws_profile': auth.profile})
        exec_only = self.get_option('exec_enabled_only')
        wanted_tags = self.get_option('tags') or {}
        preferences = [p for p in self.get_option('hostnames') or [] if p]
        default = DEFAULT_TASK_HOSTNAME if mode == 'task' else DEFAULT_CONTAINER_HOSTNAME
        taken: set[str] = set()
        self.inventory.add_group('aws_ecs')
        for task in tasks:
            if wanted_tags and not tags_match(task.get('tags') or {}, wanted_tags):
                continue
            for container in pick_containers(task, mode, exec_only):
                fields = host_fields(task, container)
                name = choose_hostname(preferences, default, fields, fields['tags'], taken)
                if name in taken:
                    self.display.warning(f'{self.NAME}: host name {name} is used twice; the second host '
                                         f'({fields["task_arn"]} {fields["container_name"]}) replaces the first')
                taken.add(name)
                hostvars = {
                    'ansible_connection': CONNECTION,
                    'ansible_aws_ecs_cluster': make_unsafe(fields['cluster_arn']),
                    'ansible_aws_ecs_task': make_unsafe(fields['task_arn']),
                    'ansible_aws_ecs_container': make_unsafe(fields['container_name']),
                    'ansible_aws_region': make_unsafe(fields['region']),
                    **settings,
                    'aws_ecs': make_unsafe(fields),
                }
                groups = ['aws_ecs', safe_group_name('cluster', fields['cluster_name'])]
                if fields['service']:
                    groups.append(safe_group_name('service', fields['service']))
                if fields['launch_type']:
                    groups.append(safe_group_name('launch_type', str(fields['launch_type']).lower()))
                add_host(self, make_unsafe(name), hostvars, groups)
