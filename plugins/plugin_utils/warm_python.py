# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A warm Python interpreter on the target (opt-in, option warm_python): modules run in forked children.

A pipelined Ansible module is the interpreter reading an AnsiballZ script on its stdin. Most of its 0.2 s is
Python importing ansible.module_utils from the script's zip; the module itself is quick. With warm_python, the
connection runs such a command as a small client (`python -S`, about 10 ms) that hands the script, its
environment and its stdin, stdout and stderr (file descriptors, SCM_RIGHTS) to a server on the target. The
server imported the module_utils once; for each script it forks: the child is a fresh copy of that process,
runs the script as __main__ with the client's descriptors, environment, directory and umask, and its exit
status becomes the client's. Isolation is the fork's: nothing a module does reaches the server or the next
module.

The server never serves stale code: every module it imported is checked, by the CRC-32 of its file in the
zip, against the script's own zip; any difference (another ansible-core, another collection version) and the
client runs the script in a fresh interpreter, as without warm_python. Modules the server has not imported come
from the script's own zip. A script that is not a plain pipelined module (become, an environment prefix, async)
never reaches the server: the connection only rewrites `<interpreter> && sleep 0` run as the login user.

The server listens on a Unix socket in the piece cache directory (0700), one per interpreter, and exits after
its idle time. A client that goes away (a task timeout ends its shell's processes) has its module's process
group ended by the server.
"""

from __future__ import annotations

import base64
import hashlib
import re

# What Ansible runs for a pipelined module: the interpreter alone, then `sleep 0` (ansible-core's shell plugin).
_PIPELINED = re.compile(r"^/bin/sh -c '(?P<interp>/[A-Za-z0-9._+/-]+) && sleep 0'$")

# The server (run by the target's interpreter, with its site-packages: modules may need them).
SERVER = r'''
import io, os, select, signal, socket, struct, sys, time, types, zipfile, base64, re, traceback, builtins, json
D, SOCK, IDLE = sys.argv[1], sys.argv[2], float(sys.argv[3])
ZIP = re.compile(rb"zip_data='([A-Za-z0-9+/=]*)'")
warm = {}          # file name in our zip -> CRC-32
ours = None        # our own copy of the zip we warmed from

def exact(c, n):
    b = b''
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            raise EOFError
        b += x
    return b

def warm_from(data):
    global ours
    path = os.path.join(D, 'warm-%d.zip' % os.getpid())
    with open(path, 'wb') as f:
        f.write(data)
    with zipfile.ZipFile(path) as z:
        crcs = {i.filename: i.CRC for i in z.infolist()}
    sys.path.insert(0, path)
    try:
        import ansible.module_utils.basic
        from ansible.module_utils._internal._ansiballz import _loader
    except Exception:
        sys.path.remove(path)
        return
    ours = path
    for m in list(sys.modules.values()):
        f = getattr(m, '__file__', None) or ''
        if f.startswith(path + os.sep):
            warm[f[len(path) + 1:]] = crcs.get(f[len(path) + 1:])

def fits(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        crcs = {i.filename: i.CRC for i in z.infolist()}
    return all(crcs.get(name) == crc for name, crc in warm.items())

def run_module(script, data, head, fds):
    os.setpgid(0, 0)
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    os.chdir(head['cwd'])
    os.environ.clear()
    os.environ.update(head['env'])
    os.umask(head['umask'])
    mine = os.path.join(D, 'warm-req-%d.zip' % os.getpid())
    with open(mine, 'wb') as f:
        f.write(data)
    # What the server has not imported comes from the script's own zip.
    for name, m in list(sys.modules.items()):
        if (name == 'ansible' or name.startswith('ansible.')) and hasattr(m, '__path__'):
            m.__path__.insert(0, os.path.join(mine, *name.split('.')))
    enc = head.get('encoding') or 'utf-8'
    sys.stdin = io.TextIOWrapper(io.FileIO(0, 'r', closefd=False), encoding=enc, errors='surrogateescape')
    sys.stdout = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False), encoding=enc, errors='surrogateescape')
    sys.stderr = io.TextIOWrapper(io.FileIO(2, 'w', closefd=False), encoding=enc, errors='backslashreplace', line_buffering=True)
    sys.argv = ['']
    main = types.ModuleType('__main__')
    main.__builtins__ = builtins
    sys.modules['__main__'] = main
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        exec(compile(script, '<stdin>', 'exec'), main.__dict__)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            os.unlink(mine)
        except OSError:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code & 255)

def supervise(conn, script, data, head, fds):
    pid = os.fork()
    if pid == 0:
        conn.close()
        run_module(script, data, head, fds)
    for fd in fds:
        os.close(fd)
    watch = [conn]
    pidfd = None
    if hasattr(os, 'pidfd_open'):
        try:
            pidfd = os.pidfd_open(pid)
            watch.append(pidfd)
        except OSError:
            pidfd = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        ready = select.select(watch, [], [], None if pidfd is not None else 0.005)[0]
        if conn in ready and not conn.recv(1, socket.MSG_PEEK):
            # The client is gone (its task timed out, its shell was ended): so is its module.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except OSError:
                    break
                time.sleep(1)
            os.waitpid(pid, 0)
            os._exit(0)
    if os.WIFSIGNALED(status):
        answer = 128 + os.WTERMSIG(status)
    else:
        answer = os.WEXITSTATUS(status)
    try:
        conn.sendall(struct.pack('>i', answer))
    except OSError:
        pass
    os._exit(0)

def serve():
    info = os.stat(D)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return
    # Relative to the directory: a Unix socket path is limited to about 100 bytes, a HOME is not.
    os.chdir(D)
    try:
        os.unlink(SOCK)
    except OSError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(SOCK)
    server.listen(16)
    server.settimeout(IDLE)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    while True:
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        try:
            conn, _addr = server.accept()
        except socket.timeout:
            break
        except InterruptedError:
            continue
        conn.settimeout(None)
        fds = []
        try:
            # The descriptors come with the first bytes: read those with recvmsg, or they are lost.
            first, anc, _flags, _addr = conn.recvmsg(4, socket.CMSG_SPACE(3 * 4))
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += list(struct.unpack('%di' % (len(raw) // 4), raw[:len(raw) - len(raw) % 4]))
            if not first:
                raise EOFError
            size = struct.unpack('>I', first + exact(conn, 4 - len(first)))[0]
            msg = exact(conn, size)
            head = json.loads(msg[:msg.index(b'\n')])
            script = msg[msg.index(b'\n') + 1:]
            found = ZIP.search(script)
            data = base64.b64decode(found.group(1)) if found else None
            if data is not None and ours is None:
                warm_from(data)
            if data is None or ours is None or len(fds) != 3 or not fits(data):
                conn.sendall(b'COLD')
                raise EOFError
            conn.sendall(b'WARM')
        except Exception:
            for fd in fds:
                os.close(fd)
            conn.close()
            continue
        if os.fork() == 0:
            server.close()
            supervise(conn, script, data, head, fds)
        for fd in fds:
            os.close(fd)
        conn.close()
    try:
        os.unlink(SOCK)
    except OSError:
        pass
    if ours:
        try:
            os.unlink(ours)
        except OSError:
            pass

serve()
'''

# The client, run as `<interpreter> -S -c <client> <directory> <idle seconds>` with the script on its stdin.
CLIENT = r'''
import os, socket, struct, sys, json, hashlib
D, IDLE = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()
exe = sys.executable
tag = hashlib.sha256((exe + sys.version).encode()).hexdigest()[:16]
sock_name = 'warm-%s.sock' % tag

def cold():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.dup2(r, 0)
        os.close(r)
        os.execv(exe, [exe])
    os.close(r)
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(w, view):]
    except OSError:
        pass    # the interpreter stopped reading (it failed): its status says so
    os.close(w)
    status = os.waitpid(pid, 0)[1]
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))

def start_server():
    server = os.path.join(D, 'warm-server-%s.py' % SERVER_SHA)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            try:
                os.execv(exe, [exe, server, D, sock_name, IDLE])
            finally:
                os._exit(127)
        os._exit(0)
    os.wait()

def warm():
    """Have the server run the script; returns (having run nothing) when it cannot."""
    os.makedirs(D, mode=0o700, exist_ok=True)
    # Only a directory of our own that nobody else can enter: else the socket could be someone else's server.
    info = os.stat(D)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    here = os.open('.', os.O_RDONLY)
    try:
        # Relative to the directory: a Unix socket path is limited to about 100 bytes, a HOME is not.
        os.chdir(D)
        try:
            conn.connect(sock_name)
        finally:
            os.fchdir(here)
            os.close(here)
    except OSError:
        conn.close()
        start_server()
        return
    mask = os.umask(0)
    os.umask(mask)
    # This client is a fresh interpreter in the module's environment: its streams' encoding is the module's.
    head = json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ), 'umask': mask, 'encoding': sys.stdout.encoding}).encode() + b'\n'
    msg = head + data
    conn.sendmsg([struct.pack('>I', len(msg)), msg[:65536]],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack('3i', 0, 1, 2))])
    conn.sendall(msg[65536:])
    answer = b''
    while len(answer) < 4:
        more = conn.recv(4 - len(answer))
        if not more:
            break
        answer += more
    if answer != b'WARM':
        conn.close()
        return
    # From here the module runs: never run it a second time, whatever happens.
    status = b''
    while len(status) < 4:
        try:
            more = conn.recv(4 - len(status))
        except OSError:
            more = b''
        if not more:
            os._exit(255)
        status += more
    os._exit(struct.unpack('>i', status)[0] & 255)

try:
    warm()
except Exception:
    pass
cold()
'''

SERVER_SHA = hashlib.sha256(SERVER.encode()).hexdigest()[:16]
_CLIENT_CODE = CLIENT.replace('SERVER_SHA', repr(SERVER_SHA))
CLIENT_SHA = hashlib.sha256(_CLIENT_CODE.encode()).hexdigest()[:16]


def server_file(cache_word: str) -> str:
    """An sh line that writes the server's and the client's source into the cache's warm/ directory (0700), unless
    they are there.

    cache_word is the piece cache directory as a shell word (module_cache.directory_word). The files are named by
    their source's hash: a new release writes its own. A command carries only the client's name (rewrite).
    """
    warm = f'{cache_word}/warm'
    lines = []
    for path, source in ((f'{warm}/warm-server-{SERVER_SHA}.py', SERVER), (f'{warm}/warm-client-{CLIENT_SHA}.py', _CLIENT_CODE)):
        encoded = base64.b64encode(source.encode()).decode()
        # umask 077: the piece cache directory itself may not exist yet, and must be private too.
        lines.append(f'[ -f {path} ] || ( umask 077 && mkdir -p {warm} && chmod 700 {warm} && '
                     f'printf %s {encoded} | base64 -d > {path}.part && mv -f {path}.part {path} )')
    return '; '.join(lines)


def rewrite(command: str, cache_word: str, idle: int) -> str | None:
    """The warm form of Ansible's pipelined module command, or None when the command is not one.

    Without the client's file (server_file), the shell runs the interpreter as before, the script still unread on
    its stdin; whatever goes wrong with the server, the client runs the script in a fresh interpreter: the module
    runs either way.
    """
    found = _PIPELINED.match(command)
    if not found:
        return None
    interp, warm = found.group('interp'), f'{cache_word}/warm'
    client = f'{warm}/warm-client-{CLIENT_SHA}.py'
    return f'if [ -f {client} ]; then {interp} -S {client} {warm} {int(idle)}; else {interp}; fi'
