# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading Alibaba RPC parameters as the Tea SDK flattens them.

Everything arrives as strings: lists as ``Name.1``, ``Name.2``...; nested lists of structures as
``Tag.1.Key``/``Tag.1.Value``; some list parameters (``InstanceIds``, ``ContainerGroupIds``) as a
JSON array in a single string; booleans as ``"True"``/``"False"``.
"""
from __future__ import annotations

import datetime
import fnmatch
import json
import re
from typing import Any, Mapping

from .errors import ApiError
from .paging import BadToken, page


def invalid(name: str, detail: str = '') -> ApiError:
    return ApiError('InvalidParameter', f'The specified parameter {name} is not valid.{" " + detail if detail else ""}', 400)


def int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == '':
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise invalid(name) from exc
    if not low <= value <= high:
        raise invalid(name, f'It must be between {low} and {high}.')
    return value


def json_list(params: Mapping[str, Any], name: str, limit: int, malformed_code: str) -> list[str] | None:
    """A JSON-array parameter, e.g. ``InstanceIds='["i-1","i-2"]'``; None when absent."""
    raw = params.get(name)
    if raw is None or raw == '':
        return None
    try:
        values = json.loads(raw)
    except ValueError as exc:
        raise ApiError(malformed_code, f'The specified parameter {name} is not valid JSON array.', 400) from exc
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ApiError(malformed_code, f'The specified parameter {name} must be a JSON array of strings.', 400)
    if len(values) > limit:
        raise ApiError(malformed_code, f'The specified parameter {name} holds more than {limit} items.', 400)
    return values


def repeat_list(params: Mapping[str, Any], name: str) -> list[str]:
    """``Name.1``, ``Name.2``... in index order."""
    pattern = re.compile(rf'^{re.escape(name)}\.(\d+)$')
    found = sorted((int(m.group(1)), v) for k, v in params.items() if (m := pattern.match(k)))
    return [str(v) for _key, v in found]


def tag_filters(params: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """``Tag.N.Key``/``Tag.N.Value`` pairs; a filter without a value matches any value of that key."""
    pattern = re.compile(r'^Tag\.(\d+)\.(Key|Value)$')
    tags: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = pattern.match(key)
        if match:
            tags.setdefault(int(match.group(1)), {})[match.group(2)] = str(value)
    filters = []
    for index in sorted(tags):
        if not tags[index].get('Key'):
            raise ApiError('InvalidTagKey.Malformed', 'The specified parameter Tag.n.Key is not valid.', 400)
        filters.append((tags[index]['Key'], tags[index].get('Value')))
    return filters


def tags_match(tags: Mapping[str, str], filters: list[tuple[str, str | None]]) -> bool:
    return all(key in tags and (value is None or tags[key] == value) for key, value in filters)


def name_matches(name: str, wanted: str | None) -> bool:
    """Exact match, or a ``*`` wildcard as the ECS console and API allow for names."""
    if not wanted:
        return True
    return fnmatch.fnmatchcase(name, wanted) if '*' in wanted else name == wanted


def iso_time(when: datetime.datetime, seconds: bool = True) -> str:
    return when.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ' if seconds else '%Y-%m-%dT%H:%MZ')


def token_page(items: list[Any], token: str | None, size: int, query: Any) -> tuple[list[Any], str]:
    """NextToken paging; the last page answers an empty NextToken, as Alibaba APIs do."""
    try:
        chunk, nxt = page(items, token, size, query)
    except BadToken as exc:
        raise ApiError('InvalidNextToken', 'The specified parameter NextToken is not valid.', 400) from exc
    return chunk, nxt or ''


def number_page(items: list[Any], number: int, size: int) -> list[Any]:
    return items[(number - 1) * size:number * size]
