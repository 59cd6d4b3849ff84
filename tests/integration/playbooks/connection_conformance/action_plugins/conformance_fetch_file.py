# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Call the connection's own fetch_file (the fetch action checks for a missing file itself before it ever gets there).

Never fails: returns the exception's class name and message (error_type, error; None when fetch_file returned) and
whether a file appeared at dest, for tests/integration/test_connection_conformance.py to judge.
"""
from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """conformance_fetch_file: src (on the target), dest (on the controller)."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        source, dest = self._task.args['src'], self._task.args['dest']
        try:
            self._connection.fetch_file(source, dest)
        except AnsibleError as exc:
            result.update(error_type=type(exc).__name__, error=str(exc))
        else:
            result.update(error_type=None, error=None)
        result.update(changed=False, dest_exists=os.path.lexists(dest))
        return result
