# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers shared by the collection's inventory plugins (aws_ecs, ali_ecs, ali_eci).

Thin adapters between Ansible's inventory machinery and our module_utils: auth from plugin options,
errors as AnsibleError, unsafe marking of API data, the Cacheable read/update dance, host names from
user patterns, and adding one host with its groups and constructed features.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing as t
from collections.abc import Mapping, Set

from ansible.errors import AnsibleError
from ansible.inventory.group import to_safe_group_name
from ansible.module_utils.common.collections import is_sequence
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError

T = t.TypeVar('T')

# {field} or {tag:KEY} in a host name pattern; KEY runs to the closing brace.
_PLACEHOLDER = re.compile(r'\{([^{}]+)\}')


def make_unsafe(value: t.Any) -> t.Any:
    """Mark API data (recursively) as unsafe, so Ansible never templates it."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {make_unsafe(k): make_unsafe(v) for k, v in value.items()}
    if isinstance(value, Set):
        return {make_unsafe(v) for v in value}
    if is_sequence(value):
        return [make_unsafe(v) for v in value]
    return wrap_var(value)


def to_ansible_error(error: CloudExecError, plugin: str) -> AnsibleError:
    """An AnsibleError from a CloudExecError: the code, the message and the remedy (never a secret)."""
    return AnsibleError(f'{plugin} inventory: {error}')


def auth_from_options(plugin: t.Any, factory: t.Callable[[t.Callable[[str], t.Any]], T]) -> T:
    """Build an auth object (AwsAuth.from_options, AlicloudAuth.from_options) from the plugin's options."""
    try:
        return factory(plugin.get_option)
    except CloudExecError as error:
        raise to_ansible_error(error, plugin.NAME) from None


# Host variables that hold secrets: an inventory never sets them (ansible-inventory --list would show them).
SECRET_HOST_VARS = frozenset((
    'ansible_aws_access_key_id', 'ansible_aws_secret_access_key', 'ansible_aws_session_token',
    'ansible_aws_ssm_access_key_id', 'ansible_aws_ssm_secret_access_key', 'ansible_aws_ssm_session_token',
    'ansible_alicloud_access_key', 'ansible_alicloud_secret_key', 'ansible_alicloud_security_token',
))


def connection_settings(settings: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Host variables that carry the non-secret settings the inventory used (region, endpoint, profile) to the
    connection plugin, for those that are set; compose may still override them per host."""
    secret = SECRET_HOST_VARS.intersection(settings)
    if secret:
        raise AnsibleError(f'refusing to put {", ".join(sorted(secret))} into host variables')
    return {name: make_unsafe(value) for name, value in settings.items() if value not in (None, '')}


def aws_regions(regions: t.Sequence[str] | None, auth: t.Any, session_factory: t.Callable[[t.Any], t.Any]) -> list[str]:
    """The regions an AWS inventory lists: its `regions` option, else the credentials' region (option, environment,
    profile), else an error that says where to set one."""
    chosen = [r for r in regions or [] if r]
    if chosen:
        return chosen
    region = auth.region or session_factory(auth).region_name
    if not region:
        raise CloudExecError('no region is set', code='NoRegion', provider='cloudexec', retryable=False,
                             remedy='Set regions or region in the inventory file, or AWS_REGION in the environment')
    return [region]


def safe_group_name(*parts: str) -> str:
    """A group name from parts joined by `_`, with characters invalid in a variable name replaced by `_`."""
    return to_safe_group_name('_'.join(str(p) for p in parts if p), force=True, silent=True)


def cache_key(plugin: t.Any, path: str, query: Mapping[str, t.Any]) -> str:
    """The Cacheable key for path, extended by a digest of the options that shape the API query.

    Pass only non-secret options: a changed filter or region then misses the cache instead of
    returning another query's hosts.
    """
    digest = hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode('utf-8')).hexdigest()[:12]
    return f'{plugin.get_cache_key(path)}_{digest}'


def cached_query(plugin: t.Any, key: str, cache: bool, query: t.Callable[[], T]) -> T:
    """Results from the cache when allowed and present, else from query() (then stored when caching is on).

    `cache` is parse()'s argument: False on --flush-cache or refresh_inventory, which forces a new query.
    """
    use_cache = bool(plugin.get_option('cache'))
    if use_cache and cache:
        try:
            return plugin._cache[key]  # pylint: disable=protected-access
        except KeyError:
            pass  # expired or never stored
    results = query()
    if use_cache:
        plugin._cache[key] = results  # pylint: disable=protected-access
    return results


def render_hostname(pattern: str, fields: Mapping[str, t.Any], tags: Mapping[str, t.Any]) -> str | None:
    """Fill a host name pattern; None when a placeholder has no value.

    `{name}` takes fields[name], `{tag:KEY}` the tag KEY. A pattern without braces is one placeholder:
    `task_id` means `{task_id}`, `tag:Name` means `{tag:Name}`. An unknown field name is an error.
    """
    if '{' not in pattern and '}' not in pattern:
        pattern = '{' + pattern + '}'
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name.startswith('tag:'):
            value = tags.get(name[4:])
        elif name in fields:
            value = fields[name]
        else:
            raise AnsibleError(f'Unknown field {name!r} in host name pattern {pattern!r}; '
                               f'use tag:KEY or one of: {", ".join(sorted(fields))}')
        if value is None or value == '':
            missing = True
            return ''
        return str(value)

    name = _PLACEHOLDER.sub(fill, pattern)
    if missing or not name or '{' in name or '}' in name:
        return None
    return name


def choose_hostname(preferences: t.Sequence[str], default: str, fields: Mapping[str, t.Any], tags: Mapping[str, t.Any],
                    taken: t.Container[str]) -> str:
    """The first pattern of preferences that renders to a name not yet taken, else the default pattern's name."""
    for pattern in preferences:
        name = render_hostname(pattern, fields, tags)
        if name and name not in taken:
            return name
    name = render_hostname(default, fields, tags)
    if not name:
        raise AnsibleError(f'The default host name pattern {default!r} gave no name')
    return name


def add_host(plugin: t.Any, host: str, hostvars: Mapping[str, t.Any], groups: t.Iterable[str]) -> None:
    """Add host with its variables to the given groups, then apply compose, groups and keyed_groups.

    hostvars must already be unsafe where they come from an API. compose sees hostvars; groups and
    keyed_groups also see the composed variables.
    """
    inventory = plugin.inventory
    inventory.add_host(host)
    for group in groups:
        inventory.add_group(group)
        inventory.add_child(group, host)
    for name, value in hostvars.items():
        inventory.set_variable(host, name, value)
    strict = plugin.get_option('strict')
    # pylint: disable=protected-access
    plugin._set_composite_vars(plugin.get_option('compose'), hostvars, host, strict=strict)
    all_vars = inventory.get_host(host).get_vars()
    plugin._add_host_to_composed_groups(plugin.get_option('groups'), all_vars, host, strict=strict)
    plugin._add_host_to_keyed_groups(plugin.get_option('keyed_groups'), all_vars, host, strict=strict)
