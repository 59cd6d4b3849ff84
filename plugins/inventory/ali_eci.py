# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: ali_eci
short_description: Alibaba Cloud ECI containers as hosts, reached through ExecContainerCommand
version_added: 0.1.0
description:
  - Lists the container groups of Alibaba Cloud Elastic Container Instance (ECI) and adds their containers as hosts,
    each wired to the P(cloudexec.core.ali_eci#connection) connection plugin with its region, group and container.
  - By default only C(Running) groups are listed (O(status)), the only ones C(ExecContainerCommand) can reach.
  - The configuration file name must end with C(ali_eci.yml) or C(ali_eci.yaml), for example C(prod.ali_eci.yml).
  - Every value that comes from the ECI API is marked unsafe, so a tag or a name holding C({{ }}) is never templated.
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.plugins
  - cloudexec.core.alicloud_auth.eci_endpoint
  - constructed
  - inventory_cache
options:
  plugin:
    description:
      - The name of this plugin; set it to V(cloudexec.core.ali_eci) for this plugin to read the file.
    type: str
    required: true
    choices: [cloudexec.core.ali_eci]
  regions:
    description:
      - The regions to list container groups in.
      - When empty, the region of the credentials (O(alicloud_region), E(ALICLOUD_REGION)) is used.
    type: list
    elements: str
    default: []
  status:
    description:
      - Only container groups in one of these states, for example V(Running), V(Pending), V(Succeeded), V(Failed).
      - An empty list lists groups in every state (exec reaches only C(Running) ones).
      - A single state is sent to C(DescribeContainerGroups) as its C(Status) filter.
    type: list
    elements: str
    default: [Running]
  zones:
    description:
      - Only container groups in these zones, for example V(cn-hangzhou-h).
      - A single zone is sent to C(DescribeContainerGroups) as its C(ZoneId) filter.
    type: list
    elements: str
    default: []
  names:
    description:
      - Only container groups whose name matches one of these shell-style patterns (C(*), C(?), C([...])),
        for example V(web-*).
    type: list
    elements: str
    default: []
  tags:
    description:
      - Only container groups whose tags match every entry of this dictionary.
      - A string value must equal the tag's value; a list matches any of its values; V(null) (C(~)) only
        requires the tag to be present.
    type: dict
    default: {}
  container_mode:
    description:
      - V(container) adds one host per container of each group.
      - V(group) adds one host per container group, reached through its first C(Running) container (else its first
        container).
    type: str
    choices: [container, group]
    default: container
  hostnames:
    description:
      - Host name patterns, in order of preference. The first pattern that gives a name not yet used by another
        host is used; when none does, the default pattern is used.
      - A pattern is text with placeholders. C({field}) is a field of the C(ali_eci) host variable (for example
        C({container_group_id}), C({container_group_name}), C({container_name}), C({zone_id}), C({region_id}));
        C({tag:KEY}) is the value of the group's tag C(KEY). A pattern without braces is one placeholder, so
        V(container_group_name) means C({container_group_name}) and V(tag:Name) means C({tag:Name}).
      - A pattern whose placeholder has no value (a missing tag) is skipped.
      - The default pattern is C({container_group_id}_{container_name}), or C({container_group_id})
        when O(container_mode=group).
    type: list
    elements: str
    default: []
notes:
  - Each host gets the variables C(ansible_connection=cloudexec.core.ali_eci), C(ansible_ali_eci_container_group_id),
    C(ansible_ali_eci_container_name), C(ansible_alicloud_region) (the connection's region variable), also
    C(ansible_alicloud_eci_endpoint), C(ansible_alicloud_profile) and C(ansible_alicloud_shared_credentials_file) when the
    inventory used an O(eci_endpoint), a O(profile) or a O(shared_credentials_file) (from this file or the environment),
    and C(ali_eci), a dictionary with
    C(container_group_id), C(container_group_name), C(region_id), C(zone_id), C(status), C(vpc_id), C(vswitch_id),
    C(security_group_id), C(intranet_ip), C(internet_ip), C(instance_type), C(cpu), C(memory), C(restart_policy),
    C(creation_time), C(tags), C(containers) (the names of all containers of the group), C(container_name), C(image),
    C(container_state), C(ready) and C(restart_count).
  - Hosts are put in the groups C(ali_eci), C(region_<region>), C(zone_<zone>), C(container_group_<group name>) and
    C(tag_<key>_<value>) for every tag; characters not valid in a variable name become C(_).
  - The RAM identity needs C(eci:DescribeContainerGroups). Groups are read 20 at a time (the API's limit), page after page.
  - "How credentials reach the connection: the region, endpoint and profile the inventory used are passed to its hosts
    (above), so that the connection reaches them the way the inventory found them; C(compose) may override them per
    host. Keys given here (O(alicloud_access_key), O(alicloud_secret_key), O(alicloud_security_token)) list the groups
    only: they never go into host variables, where C(ansible-inventory --list) would show them. The connection reads its
    keys from the environment (E(ALICLOUD_ACCESS_KEY), E(ALICLOUD_SECRET_KEY), E(ALICLOUD_SECURITY_TOKEN)), from the CLI
    profile (give O(profile) here and every host gets it), from C(ansible_alicloud_access_key),
    C(ansible_alicloud_secret_key) and C(ansible_alicloud_security_token) in group_vars (encrypted with Ansible Vault),
    or from an instance RAM role (E(ALICLOUD_ECS_ROLE_NAME))."
  - With O(cache=true) the API answers are cached under a key made of the file's path and the options that shape the
    query (regions, status, zones, endpoint, AccessKey ID or profile). C(--flush-cache) and the C(refresh_inventory)
    meta task query the API again.
seealso:
  - plugin: cloudexec.core.ali_eci
    plugin_type: connection
  - name: DescribeContainerGroups
    description: The ECI API that lists container groups.
    link: https://www.alibabacloud.com/help/en/eci/developer-reference/api-eci-2018-08-08-describecontainergroups
'''

EXAMPLES = r'''
---
# prod.ali_eci.yml: every container of the Running groups of two regions
plugin: cloudexec.core.ali_eci
regions: [cn-hangzhou, cn-shanghai]

---
# web.ali_eci.yml: one host per web group, named after the group, grouped by the value of its app tag,
# with a short name as a variable
plugin: cloudexec.core.ali_eci
names: ["web-*"]
container_mode: group
hostnames:
  - tag:Name
  - container_group_name
keyed_groups:
  - key: ali_eci.tags.app
    prefix: app
compose:
  short_name: ali_eci.container_group_name ~ '-' ~ ali_eci.container_name
groups:
  canary: ali_eci.tags.track | default('') == 'canary'

---
# cached.ali_eci.yml: answers cached for ten minutes in JSON files
plugin: cloudexec.core.ali_eci
profile: ops
zones: [cn-hangzhou-h]
tags:
  env: [staging, production]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/cloudexec-inventory
cache_timeout: 600
'''

import dataclasses
import fnmatch
import typing as t

from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, eci
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

CONNECTION = 'cloudexec.core.ali_eci'
DEFAULT_CONTAINER_HOSTNAME = '{container_group_id}_{container_name}'
DEFAULT_GROUP_HOSTNAME = '{container_group_id}'


def group_record(group: t.Mapping[str, t.Any], region: str) -> dict[str, t.Any]:
    """The parts of a DescribeContainerGroups group the plugin uses, as plain JSON data (it may go to a cache)."""
    containers = []
    for container in group.get('Containers') or []:
        containers.append({
            'name': container.get('Name'),
            'image': container.get('Image'),
            'state': (container.get('CurrentState') or {}).get('State'),
            'ready': container.get('Ready'),
            'restart_count': container.get('RestartCount'),
        })
    return {
        'container_group_id': group.get('ContainerGroupId'),
        'container_group_name': group.get('ContainerGroupName'),
        'region_id': group.get('RegionId') or region,
        'zone_id': group.get('ZoneId'),
        'status': group.get('Status'),
        'vpc_id': group.get('VpcId') or None,
        'vswitch_id': group.get('VSwitchId') or None,
        'security_group_id': group.get('SecurityGroupId') or None,
        'intranet_ip': group.get('IntranetIp') or None,
        'internet_ip': group.get('InternetIp') or None,
        'instance_type': group.get('InstanceType') or None,
        'cpu': group.get('Cpu'),
        'memory': group.get('Memory'),
        'restart_policy': group.get('RestartPolicy') or None,
        'creation_time': group.get('CreationTime') or None,
        'tags': {tag.get('Key'): tag.get('Value') for tag in group.get('Tags') or [] if tag.get('Key') is not None},
        'containers': containers,
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


def group_selected(group: t.Mapping[str, t.Any], statuses: t.Sequence[str], zones: t.Sequence[str], names: t.Sequence[str],
                   tags: t.Mapping[str, t.Any]) -> bool:
    """Whether a group record passes the status, zone, name-pattern and tag filters."""
    if statuses and group.get('status') not in statuses:
        return False
    if zones and group.get('zone_id') not in zones:
        return False
    name = str(group.get('container_group_name') or '')
    if names and not any(fnmatch.fnmatchcase(name, pattern) for pattern in names):
        return False
    return not tags or tags_match(group.get('tags') or {}, tags)


def pick_containers(group: t.Mapping[str, t.Any], mode: str) -> list[dict[str, t.Any]]:
    """The containers that become hosts: all of them, or in group mode the first Running one (else the first)."""
    containers = list(group.get('containers') or [])
    if mode == 'group':
        running = [c for c in containers if c.get('state') == 'Running']
        return (running or containers)[:1]
    return containers


def host_fields(group: t.Mapping[str, t.Any], container: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The `ali_eci` host variable for one container of a group."""
    fields = {key: value for key, value in group.items() if key != 'containers'}
    fields['tags'] = dict(group.get('tags') or {})
    fields.update(
        containers=[c.get('name') for c in group.get('containers') or []],
        container_name=container.get('name'),
        image=container.get('image'),
        container_state=container.get('state'),
        ready=container.get('ready'),
        restart_count=container.get('restart_count'),
    )
    return fields


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """ECI containers as hosts for the ali_eci connection."""

    NAME = 'cloudexec.core.ali_eci'

    def verify_file(self, path: str) -> bool:
        """Accept only files named *ali_eci.yml or *ali_eci.yaml."""
        return bool(super().verify_file(path)) and path.endswith(('ali_eci.yml', 'ali_eci.yaml'))

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
        statuses = [s for s in self.get_option('status') or [] if s]
        zones = [z for z in self.get_option('zones') or [] if z]
        query = {
            'regions': regions,
            # Only what is sent to the API shapes the answer; the other filters apply to cached answers too.
            'status': statuses[0] if len(statuses) == 1 else None,
            'zone': zones[0] if len(zones) == 1 else None,
            'eci_endpoint': auth.eci_endpoint,
            'access_key': auth.alicloud_access_key,
            'profile': auth.profile,
        }
        try:
            key = cache_key(self, path, query)
            groups = cached_query(self, key, cache, lambda: self._query(auth, regions, query['status'], query['zone']))
        except CloudExecError as error:
            raise to_ansible_error(error, self.NAME) from None
        self._populate(groups, auth, statuses, zones)

    def _query(self, auth: alicloud.AlicloudAuth, regions: list[str], status: str | None, zone: str | None) -> list[dict[str, t.Any]]:
        """Every container group of the regions (with the API-side filters), page by page."""
        groups: list[dict[str, t.Any]] = []
        for region in regions:
            regional = dataclasses.replace(auth, alicloud_region=region)
            client = alicloud.eci_client(regional)
            groups.extend(group_record(group, region) for group in self._describe(client, regional, status, zone))
        return groups

    @staticmethod
    def _describe(client: t.Any, auth: alicloud.AlicloudAuth, status: str | None, zone: str | None) -> list[dict[str, t.Any]]:
        if eci.eci_models is None:
            alicloud.require_tea()
            raise CloudExecError('alibabacloud-eci20180808 is required on the controller', code='MissingDependency',
                                 provider='cloudexec', remedy='pip install alibabacloud-eci20180808')
        found: list[dict[str, t.Any]] = []
        token: str | None = None
        poller = eci.api_poller(f'DescribeContainerGroups in {auth.alicloud_region}', timeout=120.0)
        while True:
            request = eci.eci_models.DescribeContainerGroupsRequest(region_id=auth.alicloud_region, limit=eci.DESCRIBE_LIMIT)
            if status:
                request.status = status
            if zone:
                request.zone_id = zone
            if token:
                request.next_token = token
            body = poller.call(lambda req=request: alicloud.call(client, 'describe_container_groups', req, auth))
            data = body.to_map() if hasattr(body, 'to_map') else dict(body or {})
            found.extend(data.get('ContainerGroups') or [])
            token = data.get('NextToken') or None
            if not token:
                return found

    def _populate(self, groups: list[dict[str, t.Any]], auth: alicloud.AlicloudAuth, statuses: list[str], zones: list[str]) -> None:
        mode = self.get_option('container_mode')
        names = [n for n in self.get_option('names') or [] if n]
        wanted_tags = self.get_option('tags') or {}
        preferences = [p for p in self.get_option('hostnames') or [] if p]
        default = DEFAULT_GROUP_HOSTNAME if mode == 'group' else DEFAULT_CONTAINER_HOSTNAME
        taken: set[str] = set()
        # The endpoint and profile the hosts were found with reach them too; keys never go into host variables.
        settings = connection_settings({'ansible_alicloud_eci_endpoint': auth.eci_endpoint, 'ansible_alicloud_profile': auth.profile,
                                        'ansible_alicloud_shared_credentials_file': auth.shared_credentials_file})
        self.inventory.add_group('ali_eci')
        for group in groups:
            if not group_selected(group, statuses, zones, names, wanted_tags):
                continue
            for container in pick_containers(group, mode):
                fields = host_fields(group, container)
                name = choose_hostname(preferences, default, fields, fields['tags'], taken)
                if name in taken:
                    self.display.warning(f'{self.NAME}: host name {name} is used twice; the second host '
                                         f'({fields["container_group_id"]} {fields["container_name"]}) replaces the first')
                taken.add(name)
                hostvars = {
                    'ansible_connection': CONNECTION,
                    'ansible_ali_eci_container_group_id': make_unsafe(fields['container_group_id']),
                    'ansible_ali_eci_container_name': make_unsafe(fields['container_name']),
                    'ansible_alicloud_region': make_unsafe(fields['region_id']),
                    **settings,
                    'ali_eci': make_unsafe(fields),
                }
                host_groups = ['ali_eci', safe_group_name('region', fields['region_id'])]
                if fields['zone_id']:
                    host_groups.append(safe_group_name('zone', fields['zone_id']))
                if fields['container_group_name']:
                    host_groups.append(safe_group_name('container_group', fields['container_group_name']))
                for tag_key, tag_value in sorted(fields['tags'].items()):
                    host_groups.append(safe_group_name('tag', tag_key, tag_value or ''))
                add_host(self, make_unsafe(name), hostvars, host_groups)
