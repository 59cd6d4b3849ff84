# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: aws_ssm
short_description: Systems Manager managed nodes (EC2 instances and hybrid servers) as hosts, reached through Session Manager
version_added: 0.1.0
description:
  - Lists the managed nodes of AWS Systems Manager (C(DescribeInstanceInformation)), EC2 instances (C(i-) ids) and
    on-premises servers registered through hybrid activations (C(mi-) ids), and adds them as hosts, each wired to the
    P(cloudexec.core.aws_ssm#connection) connection plugin with its node id and region.
  - EC2 instances get their names and tags from EC2 C(DescribeInstances) (Systems Manager does not send them); hybrid
    nodes get their tags from C(ListTagsForResource) and their name from the activation.
  - By default only nodes whose agent is online are listed (O(include_offline)), because Session Manager cannot reach the others.
  - The configuration file name must end with C(aws_ssm.yml) or C(aws_ssm.yaml), for example C(prod.aws_ssm.yml).
  - Every value that comes from an AWS API is marked unsafe, so a tag or a name holding C({{ }}) is never templated.
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.aws_auth.plugins
  - constructed
  - inventory_cache
options:
  plugin:
    description:
      - The name of this plugin; set it to V(cloudexec.core.aws_ssm) for this plugin to read the file.
    type: str
    required: true
    choices: [cloudexec.core.aws_ssm]
  endpoint_url:
    description:
      - Send Systems Manager API calls to this URL instead of the public endpoint (a VPC endpoint, or the collection's
        emulator). Every host gets it as C(ansible_aws_endpoint_url).
      - EC2 calls (the names and tags of instances) use boto3's own settings for EC2 (E(AWS_ENDPOINT_URL_EC2), the
        config file, the regional endpoint).
    type: str
    aliases: [aws_endpoint_url]
    env:
      - name: AWS_ENDPOINT_URL_SSM
      - name: AWS_ENDPOINT_URL
  regions:
    description:
      - The regions to list managed nodes in.
      - When empty, the region of the credentials (O(region), E(AWS_REGION), the profile) is used.
    type: list
    elements: str
    default: []
  filters:
    description:
      - Filters sent to C(DescribeInstanceInformation), as a dictionary of its filter keys to a value or a list of values
        (any value matches; every key must match).
      - "Keys: V(InstanceIds), V(AgentVersion), V(PingStatus), V(PlatformTypes) (V(Linux), V(Windows), V(MacOS)),
        V(ResourceType) (V(EC2Instance), V(ManagedInstance)), V(ActivationIds), V(IamRole), V(AssociationStatus),
        V(SourceIds), V(SourceTypes), V(tag-key) and C(tag:KEY)."
      - The API refuses tag filters combined with other keys; the plugin says so before calling. Use O(keyed_groups)
        or O(groups) to narrow further.
      - "A hybrid node's C(tag:KEY) filter matches its Systems Manager tags; an EC2 instance's, its EC2 tags."
    type: dict
    default: {}
  include_offline:
    description:
      - Also list nodes whose agent is not online (C(PingStatus) V(ConnectionLost) or V(Inactive)).
      - Off by default because Session Manager refuses a session to such a node (C(TargetNotConnected)); every host of
        the default inventory can run tasks. With V(true), the hosts are in the group C(ping_status_<status>), so a
        play can target C(ping_status_online) or report the others.
    type: bool
    default: false
  hostnames:
    description:
      - Host name patterns, in order of preference. The first pattern that gives a name not yet used by another host
        is used; when none does, the node id is.
      - A pattern is text with placeholders. C({field}) is a field of the C(aws_ssm) host variable (for example
        C({instance_id}), C({name}), C({computer_name}), C({ip_address}), C({platform_type})); C({tag:KEY}) is the
        value of the tag C(KEY). A pattern without braces is one placeholder, so V(tag:Name) means C({tag:Name}).
      - "The names of amazon.aws's C(aws_ec2) C(hostnames) work too: V(instance-id), V(tag:Name), V(computer-name),
        V(ip-address), V(private-ip-address), V(private-dns-name), V(name)."
      - A pattern whose placeholder has no value (a missing tag, a node without name) is skipped.
    type: list
    elements: str
    default: []
notes:
  - Each host gets the variables C(ansible_connection=cloudexec.core.aws_ssm), C(ansible_aws_ssm_instance_id),
    C(ansible_aws_ssm_region) (the names amazon.aws's C(aws_ssm) connection reads, so an inventory written for it works
    too), C(ansible_aws_region), also C(ansible_aws_endpoint_url) and C(ansible_aws_ssm_profile) when the inventory used
    an O(endpoint_url) or a O(profile), and C(aws_ssm), a dictionary with C(instance_id), C(region), C(resource_type),
    C(ping_status), C(last_ping), C(agent_version), C(is_latest_version), C(platform_type), C(platform_name),
    C(platform_version), C(ip_address), C(computer_name), C(name), C(tags), C(activation_id), C(iam_role),
    C(registration_date), C(source_type) and, for EC2 instances, C(instance_state), C(instance_type),
    C(availability_zone), C(vpc_id), C(subnet_id), C(private_dns_name) and C(public_ip_address).
  - C(compose) may override any of these, C(ansible_connection) included.
  - Hosts are put in the groups C(aws_ssm), C(platform_<linux|windows|macos>),
    C(resource_type_<ec2instance|managedinstance>) and C(ping_status_<status>); characters not valid in a variable name
    become C(_).
  - The IAM principal needs C(ssm:DescribeInstanceInformation), C(ec2:DescribeInstances) (EC2 names and tags; without
    it the plugin warns and lists the instances without them) and C(ssm:ListTagsForResource) (hybrid nodes' tags;
    likewise).
  - Keys given here (O(access_key), O(secret_key), O(session_token)) list the nodes only; they never go into host
    variables, where C(ansible-inventory --list) would show them. The connection reads its keys from the environment,
    the profile, or Vault-encrypted group_vars, as docs/inventory-aws_ssm.md explains.
  - With O(cache=true) the API answers are cached under a key made of the file's path and the options that shape the
    query (regions, filters, endpoint, access key id or profile). O(include_offline), O(hostnames) and the constructed
    options apply to cached answers too. C(--flush-cache) and the C(refresh_inventory) meta task query the API again.
seealso:
  - plugin: cloudexec.core.aws_ssm
    plugin_type: connection
  - module: cloudexec.core.aws_ssm_exec_check
  - name: DescribeInstanceInformation
    description: The API that lists managed nodes.
    link: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceInformation.html
'''

EXAMPLES = r'''
---
# prod.aws_ssm.yml: every online managed node of two regions, named after its EC2 Name tag
plugin: cloudexec.core.aws_ssm
regions: [eu-west-1, eu-central-1]
hostnames:
  - tag:Name
  - instance-id
keyed_groups:
  - key: aws_ssm.platform_type
    prefix: os
  - key: aws_ssm.tags.app | default('none')
    prefix: app

---
# onprem.aws_ssm.yml: the hybrid servers of one site, offline ones included (grouped by ping status)
plugin: cloudexec.core.aws_ssm
filters:
  tag:site: dc1
include_offline: true
hostnames: [computer_name]
groups:
  stale_agent: not aws_ssm.is_latest_version

---
# linux.aws_ssm.yml: Linux EC2 instances only, answers cached for ten minutes
plugin: cloudexec.core.aws_ssm
profile: ops
filters:
  PlatformTypes: Linux
  ResourceType: EC2Instance
compose:
  ansible_python_interpreter: "'/usr/bin/python3'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/cloudexec-inventory
cache_timeout: 600
'''

import dataclasses
import typing as t

from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.cloudexec.core.plugins.module_utils import aws, ssm_nodes
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

CONNECTION = 'cloudexec.core.aws_ssm'
DEFAULT_HOSTNAME = '{instance_id}'
# amazon.aws aws_ec2's hostnames spellings, as fields of the host name patterns.
EC2_STYLE_NAMES = {'instance-id': 'instance_id', 'computer-name': 'computer_name', 'ip-address': 'ip_address',
                   'private-ip-address': 'ip_address', 'private-dns-name': 'private_dns_name'}


def hostname_fields(node: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The fields host name patterns may use: the host variable's, under its names and aws_ec2's."""
    fields = {key: value for key, value in node.items() if not isinstance(value, (dict, list))}
    fields.setdefault('private_dns_name', None)
    fields.update({alias: fields.get(name) for alias, name in EC2_STYLE_NAMES.items()})
    return fields


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Systems Manager managed nodes as hosts for the aws_ssm connection."""

    NAME = 'cloudexec.core.aws_ssm'

    def verify_file(self, path: str) -> bool:
        """Accept only files named *aws_ssm.yml or *aws_ssm.yaml."""
        return bool(super().verify_file(path)) and path.endswith(('aws_ssm.yml', 'aws_ssm.yaml'))

    def parse(self, inventory: t.Any, loader: t.Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        auth = auth_from_options(self, aws.AwsAuth.from_options)
        try:
            filters = ssm_nodes.api_filters(self.get_option('filters'))
            regions = aws_regions(self.get_option('regions'), auth, aws.aws_session)
            query = {'regions': regions, 'filters': filters, 'endpoint_url': auth.endpoint_url, 'access_key': auth.access_key,
                     'profile': auth.profile}
            key = cache_key(self, path, query)
            nodes = cached_query(self, key, cache, lambda: self._query(auth, regions, filters))
        except CloudExecError as error:
            raise to_ansible_error(error, self.NAME) from None
        self._populate(nodes, auth)

    def _query(self, auth: aws.AwsAuth, regions: list[str], filters: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        """Every node of every region, with EC2's names and tags and the hybrid nodes' SSM tags."""
        nodes: list[dict[str, t.Any]] = []
        for region in regions:
            regional = dataclasses.replace(auth, region=region)
            session = aws.aws_session(regional)
            ssm = aws.aws_client(regional, 'ssm', session)
            found = ssm_nodes.describe_nodes(ssm, filters, region)
            self._add_ec2_details(regional, session, [n for n in found if ssm_nodes.is_ec2(n['instance_id'])])
            self._add_hybrid_tags(ssm, [n for n in found if not ssm_nodes.is_ec2(n['instance_id'])])
            nodes.extend(found)
        return nodes

    def _add_hybrid_tags(self, ssm: t.Any, nodes: list[dict[str, t.Any]]) -> None:
        for node in nodes:
            try:
                node['tags'] = ssm_nodes.managed_instance_tags(ssm, node['instance_id'])
            except CloudExecError as error:
                if error.code not in ('AccessDeniedException', 'AccessDenied'):
                    raise
                self.display.warning(f'{self.NAME}: hybrid nodes are listed without tags: {error.code} '
                                     f'(allow ssm:ListTagsForResource to have them)')
                return

    def _add_ec2_details(self, auth: aws.AwsAuth, session: t.Any, nodes: list[dict[str, t.Any]]) -> None:
        if not nodes:
            return
        # EC2 is another service: boto3's own endpoint settings for it, not the SSM endpoint_url.
        ec2 = aws.aws_client(auth, 'ec2', session, use_endpoint_url=False)
        try:
            instances = ssm_nodes.ec2_instances(ec2, [n['instance_id'] for n in nodes])
        except CloudExecError as error:
            if error.code not in ('UnauthorizedOperation', 'AccessDenied', 'AccessDeniedException'):
                raise
            self.display.warning(f'{self.NAME}: EC2 instances are listed without names and tags: {error.code} '
                                 f'(allow ec2:DescribeInstances to have them)')
            return
        for node in nodes:
            instance = instances.get(node['instance_id'])
            if instance is not None:
                ssm_nodes.add_ec2_details(node, instance)

    def _populate(self, nodes: list[dict[str, t.Any]], auth: aws.AwsAuth) -> None:
        # The endpoint and profile the nodes were found with reach them too; keys never go into host variables.
        settings = connection_settings({'ansible_aws_endpoint_url': auth.endpoint_url, 'ansible_aws_ssm_profile': auth.profile})
        include_offline = self.get_option('include_offline')
        preferences = [p for p in self.get_option('hostnames') or [] if p]
        taken: set[str] = set()
        self.inventory.add_group('aws_ssm')
        for node in nodes:
            if not include_offline and node.get('ping_status') != ssm_nodes.ONLINE:
                continue
            fields = dict(node)
            name = choose_hostname(preferences, DEFAULT_HOSTNAME, hostname_fields(fields), fields.get('tags') or {}, taken)
            if name in taken:
                self.display.warning(f'{self.NAME}: host name {name} is used twice; the second node '
                                     f'({fields["instance_id"]} in {fields["region"]}) replaces the first')
            taken.add(name)
            hostvars = {
                'ansible_connection': CONNECTION,
                'ansible_aws_ssm_instance_id': make_unsafe(fields['instance_id']),
                'ansible_aws_ssm_region': make_unsafe(fields['region']),
                'ansible_aws_region': make_unsafe(fields['region']),
                **settings,
                'aws_ssm': make_unsafe(fields),
            }
            groups = ['aws_ssm']
            for prefix, key in (('platform', 'platform_type'), ('resource_type', 'resource_type'), ('ping_status', 'ping_status')):
                if fields.get(key):
                    groups.append(safe_group_name(prefix, str(fields[key]).lower()))
            add_host(self, make_unsafe(name), hostvars, groups)
