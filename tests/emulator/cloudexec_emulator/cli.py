# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line: run the emulator in the foreground and publish how to reach it.

Once listening it prints ``cloudexec emulator listening on http://HOST:PORT`` (one flushed line),
and optionally writes a JSON file and a shell file of ``export`` lines with endpoints and the
world's first credentials, so ``source`` + ``ansible-playbook`` works against it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from aiohttp import web

from .context import EmulatorState
from .sandbox import prepare_sandboxes
from .server import create_app
from .world import WorldError, load_world

LOG = logging.getLogger('cloudexec_emulator')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='run.py', description='Local AWS ECS / Alibaba ECS+ECI emulator for cloudexec.core.')
    parser.add_argument('--world', help='world YAML file (default: the shipped worlds/default.yml)')
    parser.add_argument('--host', default='127.0.0.1', help='address to bind (default 127.0.0.1)')
    parser.add_argument('--port', type=int, default=0, help='port to bind; 0 picks a free one (default)')
    parser.add_argument('--state-dir', help='directory for sandboxes and state (default: a temporary directory removed on exit)')
    parser.add_argument('--json-file', help='write endpoints and credentials to this JSON file once listening')
    parser.add_argument('--env-file', help='write endpoints and credentials as shell export lines to this file once listening')
    parser.add_argument('--verbose', '-v', action='store_true', help='log every request')
    return parser.parse_args(argv)


def connection_info(state: EmulatorState, endpoint: str) -> dict[str, Any]:
    """What a client needs: endpoints, regions and the world's first credentials of each cloud."""
    world = state.world
    aws_cred = world.aws.credentials[0] if world.aws.credentials else None
    ali_cred = world.alicloud.credentials[0] if world.alicloud.credentials else None
    aws: dict[str, Any] = {'endpoint_url': endpoint, 'region': world.aws.region,
                           'access_key': aws_cred.access_key if aws_cred else None,
                           'secret_key': aws_cred.secret_key if aws_cred else None}
    if aws_cred and aws_cred.session_token:
        aws['session_token'] = aws_cred.session_token
    ali: dict[str, Any] = {'ecs_endpoint': endpoint, 'eci_endpoint': endpoint, 'region': world.alicloud.region,
                           'access_key': ali_cred.access_key_id if ali_cred else None,
                           'secret_key': ali_cred.access_key_secret if ali_cred else None}
    if ali_cred and ali_cred.security_token:
        ali['security_token'] = ali_cred.security_token
    return {'endpoint': endpoint, 'pid': os.getpid(), 'state_dir': str(state.state_dir), 'aws': aws, 'alicloud': ali}


def environment(info: dict[str, Any]) -> dict[str, str]:
    """The environment variables both SDK families and the collection read, in a stable order."""
    aws, ali = info['aws'], info['alicloud']
    env = {
        'AWS_ACCESS_KEY_ID': aws['access_key'],
        'AWS_SECRET_ACCESS_KEY': aws['secret_key'],
        'AWS_SESSION_TOKEN': aws.get('session_token'),
        'AWS_REGION': aws['region'],
        'AWS_DEFAULT_REGION': aws['region'],
        'AWS_ENDPOINT_URL_ECS': aws['endpoint_url'],
        # The ECS Exec preflight check also asks STS, IAM and EC2 (see aws_query.py).
        'AWS_ENDPOINT_URL_STS': aws['endpoint_url'],
        'AWS_ENDPOINT_URL_IAM': aws['endpoint_url'],
        'AWS_ENDPOINT_URL_EC2': aws['endpoint_url'],
        # ... and clusters that encrypt ECS Exec sessions with KMS send the client to KMS for a data key.
        'AWS_ENDPOINT_URL_KMS': aws['endpoint_url'],
        # ... and a dropped ECS Exec data channel is resumed through SSM's ResumeSession; SSM also serves the managed
        # nodes (DescribeInstanceInformation, StartSession...), whose EC2 names and tags come from EC2 (above).
        'AWS_ENDPOINT_URL_SSM': aws['endpoint_url'],
        'ALICLOUD_ACCESS_KEY': ali['access_key'],
        'ALICLOUD_SECRET_KEY': ali['secret_key'],
        'ALICLOUD_SECURITY_TOKEN': ali.get('security_token'),
        'ALICLOUD_REGION': ali['region'],
        'ALICLOUD_ECS_ENDPOINT': ali['ecs_endpoint'],
        'ALICLOUD_ECI_ENDPOINT': ali['eci_endpoint'],
        'ALIBABA_CLOUD_ACCESS_KEY_ID': ali['access_key'],
        'ALIBABA_CLOUD_ACCESS_KEY_SECRET': ali['secret_key'],
        'ALIBABA_CLOUD_SECURITY_TOKEN': ali.get('security_token'),
        'ALIBABA_CLOUD_REGION_ID': ali['region'],
    }
    return {k: str(v) for k, v in env.items() if v is not None}


def env_file_text(info: dict[str, Any]) -> str:
    lines = ['# cloudexec emulator: source this file to point the SDKs and cloudexec.core at it']
    lines += [f'export {key}={shlex.quote(value)}' for key, value in environment(info).items()]
    return '\n'.join(lines) + '\n'


def _write_atomic(path: str, text: str) -> None:
    # Readers poll for these files: they must never see a half-written one.
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f'.{target.name}.{os.getpid()}.tmp')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, target)


async def serve(args: argparse.Namespace, state: EmulatorState) -> None:
    # Signal handlers first: whoever reads the "listening" line may stop us right away.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(state)
    # The Tea SDK sends every parameter in the query string (a 24 KB RunCommand script, a 32 KB SendFile
    # payload), so the request line may be far longer than aiohttp's 8 KB default.
    runner = web.AppRunner(app, access_log=LOG if args.verbose else None, handle_signals=False,
                           max_line_size=256 * 1024, max_field_size=64 * 1024)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    display_host = f'[{host}]' if ':' in host else host
    state.base_url = f'http://{display_host}:{port}'
    info = connection_info(state, state.base_url)
    if args.json_file:
        _write_atomic(args.json_file, json.dumps(info, indent=2) + '\n')
    if args.env_file:
        _write_atomic(args.env_file, env_file_text(info))
    print(f'cloudexec emulator listening on {state.base_url}', flush=True)

    try:
        await stop.wait()
    finally:
        LOG.info('shutting down')
        # runner.cleanup() runs the app's shutdown hooks, which kill every sandbox process.
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    try:
        world = load_world(args.world)
    except WorldError as exc:
        print(f'cloudexec emulator: {exc}', file=sys.stderr)
        return 2
    temporary = not args.state_dir
    state_dir = Path(tempfile.mkdtemp(prefix='cloudexec-emulator-')) if temporary else Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        prepare_sandboxes(world, state_dir)
        state = EmulatorState(world=world, state_dir=state_dir)
        asyncio.run(serve(args, state))
    except (WorldError, ValueError) as exc:
        # Bad fault rules in the world surface here, before anything listens.
        print(f'cloudexec emulator: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        print(f'cloudexec emulator: {exc}', file=sys.stderr)
        return 1
    finally:
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0
