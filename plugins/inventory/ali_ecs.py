# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: ali_ecs
short_description: Alibaba Cloud ECS instances as hosts, reached through Cloud Assistant
version_added: 0.1.0
description:
  - Lists Alibaba Cloud ECS instances (C(DescribeInstances), page by page) and adds them as hosts, each wired to the
    P(cloudexec.core.ali_assist#connection) connection plugin with its instance id and region.
  - By default only V(Running) instances whose Cloud Assistant agent is online are listed (O(status),
    O(cloud_assistant_online_only)), so that every host can run tasks. The agent state comes from
    C(DescribeCloudAssistantStatus), 50 instances per call.
  - The configuration file name must end with C(ali_ecs.yml) or C(ali_ecs.yaml), for example C(prod.ali_ecs.yml).
  - Every value that comes from the ECS API is marked unsafe, so a tag or a name holding C({{ }}) is never templated.
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.plugins
  - cloudexec.core.alicloud_auth.ecs_endpoint
  - constructed
  - inventory_cache
options:
  plugin:
    description:
      - The name of this plugin; set it to V(cloudexec.core.ali_ecs) for this plugin to read the file.
    type: str
    required: true
    choices: [cloudexec.core.ali_ecs]
  regions:
    description:
      - The regions to list instances in. When empty, the region of the credentials (O(alicloud_region)).
    type: list
    elements: str
    default: []
  zones:
    description:
      - Only instances in these zones, for example V(cn-hangzhou-h).
    type: list
    elements: str
    default: []
  vpc_ids:
    description:
      - Only instances in these VPCs.
    type: list
    elements: str
    default: []
  status:
    description:
      - Only instances in these states. Cloud Assistant runs commands only on V(Running) instances.
    type: list
    elements: str
    default: [Running]
  instance_names:
    description:
      - Only instances whose name matches one of these shell-style patterns (C(web-*), C(db-0?)).
    type: list
    elements: str
    default: []
  tags:
    description:
      - Only instances whose tags match every entry of this dictionary.
      - A string value must equal the tag's value; a list matches any of its values; V(null) (C(~)) only requires the tag.
    type: dict
    default: {}
  cloud_assistant_online_only:
    description:
      - Only instances whose Cloud Assistant agent is online (its heartbeat came in the last minutes).
      - Set to V(false) to list every instance the other filters select; the agent state is still in the host variables.
    type: bool
    default: true
  hostnames:
    description:
      - Host name patterns, in order of preference. The first pattern that gives a name not yet used by another host is
        used; when none does, the instance id is used.
      - A pattern is text with placeholders. C({field}) is a field of the C(ali_ecs) host variable (for example
        C({instance_name}), C({instance_id}), C({private_ip}), C({zone_id})); C({tag:KEY}) is the value of the tag C(KEY).
        A pattern without braces is one placeholder, so V(instance_name) means C({instance_name}).
    type: list
    elements: str
    default: []
notes:
  - Each host gets C(ansible_connection=cloudexec.core.ali_assist), C(ansible_ali_assist_instance_id),
    C(ansible_alicloud_region), also C(ansible_alicloud_ecs_endpoint), C(ansible_alicloud_profile) and
    C(ansible_alicloud_shared_credentials_file) when the inventory used an O(ecs_endpoint), a O(profile) or a
    O(shared_credentials_file) (from this file or the environment), and C(ali_ecs), a dictionary
    with C(instance_id), C(instance_name), C(host_name), C(region_id), C(zone_id), C(instance_type), C(instance_type_family),
    C(os_type), C(os_name), C(image_id), C(vpc_id), C(vswitch_id), C(private_ip), C(public_ip), C(security_group_ids),
    C(tags), C(status), C(cpu), C(memory), C(creation_time), C(cloud_assistant_online), C(cloud_assistant_version),
    C(cloud_assistant_last_heartbeat) and C(session_manager_supported).
  - Hosts are put in the groups C(ali_ecs), C(region_<region>), C(zone_<zone>), C(instance_type_<type>), C(os_<linux|windows>)
    and C(tag_<key>_<value>); characters not valid in a variable name become C(_).
  - The RAM principal needs C(ecs:DescribeInstances) and C(ecs:DescribeCloudAssistantStatus).
  - "How credentials reach the connection: the region, endpoint and profile the inventory used are passed to its hosts
    (above), so that the connection reaches them the way the inventory found them; C(compose) may override them per
    host. Keys given here (O(alicloud_access_key), O(alicloud_secret_key), O(alicloud_security_token)) list the
    instances only: they never go into host variables, where C(ansible-inventory --list) would show them. The connection
    reads its keys from the environment (E(ALICLOUD_ACCESS_KEY), E(ALICLOUD_SECRET_KEY), E(ALICLOUD_SECURITY_TOKEN)),
    from the CLI profile (give O(profile) here and every host gets it), from C(ansible_alicloud_access_key),
    C(ansible_alicloud_secret_key) and C(ansible_alicloud_security_token) in group_vars (encrypted with Ansible Vault),
    or from an instance RAM role (E(ALICLOUD_ECS_ROLE_NAME))."
  - With O(cache=true) the API answers are cached under a key made of the file's path and the options that shape the query
    (regions, endpoint, access key id or profile); the filters also apply to cached answers. C(--flush-cache) and the
    C(refresh_inventory) meta task query the API again.
seealso:
  - plugin: cloudexec.core.ali_assist
    plugin_type: connection
'''

EXAMPLES = r'''
---
# prod.ali_ecs.yml: every running instance with an online agent in two regions
plugin: cloudexec.core.ali_ecs
regions: [cn-hangzhou, cn-shanghai]

---
# web.ali_ecs.yml: web instances named after their Name tag, grouped by their env tag
plugin: cloudexec.core.ali_ecs
instance_names: ["web-*"]
tags:
  app: web
hostnames:
  - tag:Name
  - instance_name
keyed_groups:
  - key: ali_ecs.tags.env | default('none')
    prefix: env
compose:
  ansible_pipelining: true
groups:
  large: ali_ecs.cpu >= 8

---
# cached.ali_ecs.yml: answers cached for ten minutes
plugin: cloudexec.core.ali_ecs
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/cloudexec-inventory
cache_timeout: 600
'''

import dataclasses
import fnmatch
import typing as t

from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils.inventory import (
    add_host,
    auth_from_options,
    cache_key,
    cached_query,
    choose_hostname,
    connection_settings,
    make_unsafe,
    safe_group_name,
    to_ansible_error,
)

CONNECTION = 'cloudexec.core.ali_assist'
DEFAULT_HOSTNAME = '{instance_id}'


def _first(values: t.Any) -> str | None:
    items = (values or {}).get('IpAddress') if isinstance(values, dict) else None
    return items[0] if items else None


def instance_record(item: t.Mapping[str, t.Any], region: str) -> dict[str, t.Any]:
    """The fields of a DescribeInstances instance the plugin uses, as plain JSON data (it may go to a cache)."""
    vpc = item.get('VpcAttributes') or {}
    eip = (item.get('EipAddress') or {}).get('IpAddress') or None
    return {
        'instance_id': item.get('InstanceId'),
        'instance_name': item.get('InstanceName'),
        'host_name': item.get('HostName') or None,
        'region_id': item.get('RegionId') or region,
        'zone_id': item.get('ZoneId'),
        'instance_type': item.get('InstanceType'),
        'instance_type_family': item.get('InstanceTypeFamily'),
        'os_type': (item.get('OSType') or '').lower() or None,
        'os_name': item.get('OSName') or None,
        'image_id': item.get('ImageId') or None,
        'vpc_id': vpc.get('VpcId') or None,
        'vswitch_id': vpc.get('VSwitchId') or None,
        'private_ip': _first(vpc.get('PrivateIpAddress')) or _first(item.get('InnerIpAddress')),
        'public_ip': _first(item.get('PublicIpAddress')) or eip,
        'security_group_ids': list((item.get('SecurityGroupIds') or {}).get('SecurityGroupId') or []),
        'tags': {tag.get('TagKey'): tag.get('TagValue') for tag in (item.get('Tags') or {}).get('Tag') or [] if tag.get('TagKey')},
        'status': item.get('Status'),
        'cpu': item.get('Cpu'),
        'memory': item.get('Memory'),
        'creation_time': item.get('CreationTime') or None,
        'cloud_assistant_online': None,
        'cloud_assistant_version': None,
        'cloud_assistant_last_heartbeat': None,
        'session_manager_supported': None,
    }


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


def selected(record: t.Mapping[str, t.Any], filters: t.Mapping[str, t.Any]) -> bool:
    """Whether an instance record passes every filter (they apply to cached answers too)."""
    checks = (('status', 'status'), ('zones', 'zone_id'), ('vpc_ids', 'vpc_id'))
    for option, key in checks:
        if filters.get(option) and record.get(key) not in filters[option]:
            return False
    name = str(record.get('instance_name') or '')
    if filters.get('instance_names') and not any(fnmatch.fnmatchcase(name, p) for p in filters['instance_names']):
        return False
    if filters.get('tags') and not tags_match(record.get('tags') or {}, filters['tags']):
        return False
    return not (filters.get('online_only') and record.get('cloud_assistant_online') is not True)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """ECS instances as hosts for the ali_assist connection."""

    NAME = 'cloudexec.core.ali_ecs'

    def verify_file(self, path: str) -> bool:
        """Accept only files named *ali_ecs.yml or *ali_ecs.yaml."""
        return bool(super().verify_file(path)) and path.endswith(('ali_ecs.yml', 'ali_ecs.yaml'))

    def parse(self, inventory: t.Any, loader: t.Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        regions = [r for r in self.get_option('regions') or [] if r]

        def option(name: str) -> t.Any:
            # With regions listed, the credentials need no region of their own.
            value = self.get_option(name)
            return regions[0] if name == 'alicloud_region' and not value and regions else value

        auth = auth_from_options(self, lambda get: alicloud.AlicloudAuth.from_options(option))
        regions = regions or [str(auth.alicloud_region)]
        filters = {
            'status': [s for s in self.get_option('status') or [] if s],
            'zones': [z for z in self.get_option('zones') or [] if z],
            'vpc_ids': [v for v in self.get_option('vpc_ids') or [] if v],
            'instance_names': [n for n in self.get_option('instance_names') or [] if n],
            'tags': self.get_option('tags') or {},
            'online_only': bool(self.get_option('cloud_assistant_online_only')),
        }
        query = {'regions': regions, 'ecs_endpoint': auth.ecs_endpoint, 'access_key': auth.alicloud_access_key, 'profile': auth.profile,
                 'status': filters['status'] if len(filters['status']) == 1 else None}
        try:
            key = cache_key(self, path, query)
            records = cached_query(self, key, cache, lambda: self._query(auth, regions, query['status']))
        except CloudExecError as error:
            raise to_ansible_error(error, self.NAME) from None
        self._populate([r for r in records if selected(r, filters)], auth)

    def _query(self, auth: alicloud.AlicloudAuth, regions: list[str], status: list[str] | None) -> list[dict[str, t.Any]]:
        """Every instance of the regions (one status sent to the API when only one is wanted), with its agent state."""
        ca.require_models()
        records: list[dict[str, t.Any]] = []
        for region in regions:
            regional = dataclasses.replace(auth, alicloud_region=region)
            client = alicloud.ecs_client(regional)
            found: list[dict[str, t.Any]] = []
            token: str | None = None
            while True:
                request = ca.models().DescribeInstancesRequest(region_id=region, max_results=ca.MAX_DESCRIBE_INSTANCES, next_token=token,
                                                               status=status[0] if status else None)
                body = ca.retried_call(client, regional, 'describe_instances', request)
                items = (body.instances.instance if body.instances else None) or []
                found += [instance_record(item.to_map(), region) for item in items]
                token = body.next_token
                if not token:
                    break
            self._agent_states(client, regional, found)
            records += found
        return records

    @staticmethod
    def _agent_states(client: t.Any, auth: alicloud.AlicloudAuth, records: list[dict[str, t.Any]]) -> None:
        """Fill in each Running instance's Cloud Assistant state, 50 instances per DescribeCloudAssistantStatus call."""
        by_id = {r['instance_id']: r for r in records if r.get('status') == 'Running'}
        for chunk in ca.batches(list(by_id), ca.MAX_STATUS_IDS):
            request = ca.models().DescribeCloudAssistantStatusRequest(region_id=auth.alicloud_region, instance_id=chunk,
                                                                      max_results=ca.MAX_STATUS_IDS)
            body = ca.retried_call(client, auth, 'describe_cloud_assistant_status', request)
            status_set = body.instance_cloud_assistant_status_set
            for agent in (status_set.instance_cloud_assistant_status if status_set else None) or []:
                record = by_id.get(agent.instance_id)
                if record is not None:
                    # The service answers the STRING "true"/"false".
                    record['cloud_assistant_online'] = str(agent.cloud_assistant_status).lower() == 'true'
                    record['cloud_assistant_version'] = agent.cloud_assistant_version or None
                    record['cloud_assistant_last_heartbeat'] = agent.last_heartbeat_time or None
                    record['session_manager_supported'] = agent.support_session_manager
        for record in records:
            if record.get('status') != 'Running':
                record['cloud_assistant_online'] = False

    def _populate(self, records: list[dict[str, t.Any]], auth: alicloud.AlicloudAuth) -> None:
        preferences = [p for p in self.get_option('hostnames') or [] if p]
        taken: set[str] = set()
        # The endpoint and profile the hosts were found with reach them too; keys never go into host variables.
        settings = connection_settings({'ansible_alicloud_ecs_endpoint': auth.ecs_endpoint, 'ansible_alicloud_profile': auth.profile,
                                        'ansible_alicloud_shared_credentials_file': auth.shared_credentials_file})
        self.inventory.add_group('ali_ecs')
        for fields in records:
            name = choose_hostname(preferences, DEFAULT_HOSTNAME, fields, fields.get('tags') or {}, taken)
            if name in taken:
                self.display.warning(f'{self.NAME}: host name {name} is used twice; the second host ({fields["instance_id"]}) '
                                     'replaces the first')
            taken.add(name)
            hostvars = {
                'ansible_connection': CONNECTION,
                'ansible_ali_assist_instance_id': make_unsafe(fields['instance_id']),
                'ansible_alicloud_region': make_unsafe(fields['region_id']),
                **settings,
                'ali_ecs': make_unsafe(fields),
            }
            groups = ['ali_ecs', safe_group_name('region', fields['region_id'])]
            for prefix, key in (('zone', 'zone_id'), ('instance_type', 'instance_type'), ('os', 'os_type')):
                if fields.get(key):
                    groups.append(safe_group_name(prefix, fields[key]))
            for tag_key, tag_value in (fields.get('tags') or {}).items():
                groups.append(safe_group_name('tag', tag_key, tag_value or ''))
            add_host(self, make_unsafe(name), hostvars, groups)
