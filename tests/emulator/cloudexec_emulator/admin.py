# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The admin API under ``/_emulator/``: health, call counters, fault rules, world summary.

It has no authentication: the emulator binds to 127.0.0.1 by default and is a test tool.
"""
from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web

from .context import STATE_KEY
from .faults import FaultError

PREFIX = '/_emulator'
_STARTED = time.monotonic()


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response({'status': 'ok', 'pid': os.getpid(), 'uptime': round(time.monotonic() - _STARTED, 3),
                              'endpoint': state.base_url, 'state_dir': str(state.state_dir),
                              'sandbox_processes': state.runner.live})


async def get_calls(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].stats.snapshot())


async def reset_calls(request: web.Request) -> web.Response:
    request.app[STATE_KEY].stats.reset()
    return web.json_response({'reset': True})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response({'faults': [r.to_dict() for r in request.app[STATE_KEY].faults.rules()]})


async def add_faults(request: web.Request) -> web.Response:
    """Body: one rule, a list of rules, or ``{"faults": [...]}``; answers the installed rules with their ids."""
    try:
        body: Any = await request.json()
    except ValueError:
        return web.json_response({'error': 'body must be JSON'}, status=400)
    specs = body.get('faults') if isinstance(body, dict) and 'faults' in body else body
    specs = specs if isinstance(specs, list) else [specs]
    faults = request.app[STATE_KEY].faults
    added = []
    try:
        for spec in specs:
            added.append(faults.add(spec))
    except FaultError as exc:
        # All or nothing: a half-installed batch would make a test's setup silently differ from its intent.
        for rule in added:
            faults.remove(rule.rule_id)
        return web.json_response({'error': str(exc)}, status=400)
    return web.json_response({'faults': [r.to_dict() for r in added]}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE_KEY].faults.clear()
    return web.json_response({'cleared': True})


async def delete_fault(request: web.Request) -> web.Response:
    try:
        rule_id = int(request.match_info['rule_id'])
    except ValueError:
        return web.json_response({'error': 'rule id must be an integer'}, status=400)
    if not request.app[STATE_KEY].faults.remove(rule_id):
        return web.json_response({'error': f'no fault rule {rule_id}'}, status=404)
    return web.json_response({'deleted': rule_id})


async def get_world(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].world.summary())


def add_routes(app: web.Application) -> None:
    app.router.add_get(f'{PREFIX}/health', health)
    app.router.add_get(f'{PREFIX}/calls', get_calls)
    app.router.add_post(f'{PREFIX}/calls/reset', reset_calls)
    app.router.add_get(f'{PREFIX}/faults', get_faults)
    app.router.add_post(f'{PREFIX}/faults', add_faults)
    app.router.add_delete(f'{PREFIX}/faults', clear_faults)
    app.router.add_delete(f'{PREFIX}/faults/{{rule_id}}', delete_fault)
    app.router.add_get(f'{PREFIX}/world', get_world)
