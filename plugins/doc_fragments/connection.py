# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options every cloudexec.core connection shares (plugin_utils/connection_base.py reads them).

    Each plugin adds, per option, only its own C(vars) names (ansible_<plugin>_<option>); Ansible merges a
    plugin's option over the fragment's, key by key, so the description, type and default live here once.
    """

    # Every connection.
    DOCUMENTATION = r'''
options:
  command_timeout:
    description:
      - Seconds one command (or one file transfer) may run. When they pass, the command's processes are ended on the
        target and the task fails, saying what became of them.
      - "A command abandoned otherwise (Ansible's C(timeout) keyword, Ctrl-C, C(meta: reset_connection)) is ended the
        same way, and the next task runs at once. What became of it is said at C(-v), or as a warning when it may
        still run."
      - Must be above 0.
    type: int
    default: 3600
  piece_cache:
    description:
      - Where the target keeps the pieces of Ansible's module code between tasks, named by their SHA-256, so that a task
        sends only the pieces the target does not have yet (most of a module is the same from one task to the next).
        C(~/) is the remote user's home. The directory is private (0700); pieces unused for a day are removed.
      - Only module code goes through it (on the stdin of the interpreter with pipelining, or C(AnsiballZ_*) files
        without it). The lines that hold a task's arguments (and a become password) are pieces of their own, sent
        inline and never kept. Files of C(copy), C(template) and the like never are. A lost piece is found before the
        command starts, and everything is sent again. An empty value turns the cache off.
    type: str
    default: ~/.cache/cloudexec-pieces
    env:
      - name: CLOUDEXEC_PIECE_CACHE
  pipelining:
    description:
      - Send modules on the stdin of the Python interpreter instead of copying them first. Saves commands on every task.
    type: bool
    default: false
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: connection
        key: pipelining
'''

    # Connections that keep a session in a per-host broker across tasks.
    SESSION = r'''
options:
  idle_timeout:
    description:
      - Seconds the background session may stay unused before it is closed.
    type: int
    default: 600
    env:
      - name: CLOUDEXEC_IDLE_TIMEOUT
  connect_timeout:
    description:
      - Seconds to wait for a new session to be ready (API calls, websocket, shell start-up).
      - Also how long a command waits for the host's session while another caller's command uses it (another
        C(ansible) run, or tasks delegated to this host); then the task fails saying since when the session is busy.
      - Must be above 0.
    type: int
    default: 60
  warm_python:
    description:
      - Run pipelined modules in forked children of a Python interpreter kept on the target, which has imported
        Ansible's module_utils once, instead of a fresh interpreter per task. A module then starts in a few
        milliseconds instead of about 0.2 s (docs/performance.md).
      - Only a plain pipelined module of the login user goes through it (pipelining on, no become, no C(environment));
        everything else, and any module whose module_utils differ from those the interpreter imported (another
        ansible-core or collection version), runs in a fresh interpreter as without this option.
      - The interpreter listens on a Unix socket in the C(warm) directory of O(piece_cache) (0700), one per Python
        path, and exits after O(idle_timeout) seconds without a module. A module whose task is given up (a task
        timeout, Ctrl-C) is ended with its command.
      - Needs O(piece_cache).
    type: bool
    default: false
    env:
      - name: CLOUDEXEC_WARM_PYTHON
notes:
  - "One session per host is kept open across tasks by a small background broker (like SSH's ControlPersist). It ends
    after O(idle_timeout) seconds without use, or on C(meta: reset_connection). Its socket lives in
    C(~/.ansible/cp/cloudexec), a directory only the user can read (set E(CLOUDEXEC_CONTROL_DIR) to move it), and it
    gets its credentials on its standard input, never its command line."
  - Become works with C(sudo), with or without a password (the password is sent on the command's stdin for
    C(sudo -S), never on a command line), and with C(su) and other methods when they need no password. Those read a
    password from a terminal, which the session's commands do not have, so setting one for them fails the task with
    an error that says so.
'''
