# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start the emulator as a real subprocess from tests (and anything else that needs one).

::

    with start_emulator() as emu:
        os.environ.update(emu.env)
        emu.admin('POST', '/faults', {'service': 'aws-ecs', 'throttle': 2})
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

from .cli import environment

RUN_SCRIPT = Path(__file__).resolve().parent.parent / 'run.py'
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class EmulatorStartError(RuntimeError):
    """The emulator process did not come up; the message carries its output."""


class EmulatorInfo(dict):
    """The emulator's JSON file as a dict, plus ``env``, ``json_file``, ``env_file`` and an ``admin`` helper."""

    def __init__(self, data: dict[str, Any], json_file: Path, env_file: Path, process: subprocess.Popen) -> None:
        super().__init__(data)
        self.json_file = json_file
        self.env_file = env_file
        self.process = process
        # Ready to merge into os.environ or pass to a subprocess.
        self.env: dict[str, str] = environment(data)

    @property
    def endpoint(self) -> str:
        return self['endpoint']

    def admin(self, method: str, path: str, json_body: Any = None, timeout: float = 10.0) -> Any:
        """Call the admin API (``path`` relative to /_emulator/) and return the decoded JSON answer."""
        url = f'{self.endpoint}/_emulator/{path.lstrip("/")}'
        data = json.dumps(json_body).encode() if json_body is not None else None
        req = urllib.request.Request(url, data=data, method=method.upper(), headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec - local admin endpoint
                return json.loads(resp.read() or b'null')
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f'admin {method} {path} failed: {exc.code} {exc.read().decode(errors="replace")}') from exc

    def calls(self, service: str, action: str) -> int:
        """How many calls of this action the emulator received since the last reset."""
        return self.admin('GET', 'calls')['calls'].get(service, {}).get(action, 0)


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f'{endpoint}/_emulator/health', timeout=2) as resp:  # nosec - local admin endpoint
            return json.loads(resp.read()).get('status') == 'ok'
    except (OSError, ValueError):
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def start_emulator(world: str | os.PathLike[str] | None = None, state_dir: str | os.PathLike[str] | None = None,
                   extra_args: Sequence[str] = ()) -> Iterator[EmulatorInfo]:
    """Run ``run.py`` on a free port until the block ends; yields an :class:`EmulatorInfo`."""
    with tempfile.TemporaryDirectory(prefix='cloudexec-emu-run-') as tmp:
        json_file = Path(tmp) / 'emulator.json'
        env_file = Path(tmp) / 'emulator.env'
        log_file = Path(tmp) / 'emulator.log'
        argv = [sys.executable, str(RUN_SCRIPT), '--port', '0', '--json-file', str(json_file), '--env-file', str(env_file)]
        if world:
            argv += ['--world', str(world)]
        if state_dir:
            argv += ['--state-dir', str(state_dir)]
        argv += list(extra_args)
        with open(log_file, 'wb') as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    raise EmulatorStartError(f'emulator exited with {process.returncode}:\n{log_file.read_text(errors="replace")}')
                if json_file.exists():
                    data = json.loads(json_file.read_text())
                    if _healthy(data['endpoint']):
                        break
                if time.monotonic() > deadline:
                    raise EmulatorStartError(f'emulator not ready after {START_TIMEOUT}s:\n{log_file.read_text(errors="replace")}')
                time.sleep(0.05)
            yield EmulatorInfo(data, json_file, env_file, process)
        finally:
            _stop(process)
