# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move files with the connection's own put_file and fetch_file: each local file to the target and back again.

The copy and fetch modules run two or three modules around every transfer; the file sizes of the conformance suite
need only the transfers. Never fails: returns, per file, the error of put_file or fetch_file (None when it returned),
for tests/integration/test_connection_conformance.py to judge the bytes on both sides.
"""
from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """conformance_transfer: files (local paths), remote_dir (on the target), back_dir (on the controller)."""

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        transfers = []
        for local in self._task.args['files']:
            name = os.path.basename(local)
            remote = self._connection._shell.join_path(self._task.args['remote_dir'], name)
            back = os.path.join(self._task.args['back_dir'], name)
            error = None
            try:
                self._connection.put_file(local, remote)
                self._connection.fetch_file(remote, back)
            except AnsibleError as exc:
                error = f'{type(exc).__name__}: {exc}'
            transfers.append({'name': name, 'error': error})
        result.update(changed=True, transfers=transfers)
        return result
