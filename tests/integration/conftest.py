# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration fixtures: one emulator subprocess per test session, reset before each test."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EMULATOR_DIR = REPO_ROOT / 'tests' / 'emulator'
if str(EMULATOR_DIR) not in sys.path:
    sys.path.insert(0, str(EMULATOR_DIR))

# Tests that import the collection's Python code find it where ansible/ansible-playbook find it:
# ANSIBLE_COLLECTIONS_PATH (tests/ci sets it to the tree it builds), else that tree in .cache.
for _path in [*os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep), str(REPO_ROOT / '.cache' / 'collections')]:
    if _path and (Path(_path) / 'ansible_collections' / 'cloudexec' / 'core').is_dir():
        if _path not in sys.path:
            sys.path.insert(0, _path)
        break

from cloudexec_emulator.testing import EmulatorInfo, start_emulator  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='session')
def emulator() -> EmulatorInfo:
    """The emulator on the shipped default world, listening on a free port."""
    with start_emulator() as info:
        yield info


@pytest.fixture
def control_dir():
    """A private CLOUDEXEC_CONTROL_DIR for one test (short: Unix socket paths are limited); its brokers are stopped after."""
    from helpers import stop_brokers  # pylint: disable=import-outside-toplevel

    base = Path(tempfile.mkdtemp(prefix='ce-cp-'))
    path = base / 'cp'
    yield path
    stop_brokers(path)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def emu(emulator: EmulatorInfo) -> EmulatorInfo:  # pylint: disable=redefined-outer-name
    """The session emulator with no fault rules and zeroed counters."""
    emulator.admin('DELETE', 'faults')
    emulator.admin('POST', 'calls/reset')
    yield emulator
    emulator.admin('DELETE', 'faults')
