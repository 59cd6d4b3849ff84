# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: aws_ssm
short_description: Run tasks on EC2 instances and hybrid managed nodes through SSM Session Manager
version_added: 0.1.0
description:
  - Makes an SSM managed node an Ansible host, reached through Session Manager C(StartSession) and its data channel,
    spoken in pure Python. An EC2 instance (C(i-) id) or an on-premises server registered with a hybrid activation
    (C(mi-) id). No SSH, no open port, no C(session-manager-plugin) binary, no S3 bucket.
  - "A drop-in for inventories written for C(amazon.aws.aws_ssm): it reads the same C(ansible_aws_ssm_*) variables, so
    switching is a matter of changing C(ansible_connection). The S3 and plugin-path settings are accepted and not
    needed: a warning says so once per run. See C(docs/aws_ssm.md) for the migration table."
  - "One session per host is kept open across tasks by a small background broker (like SSH's ControlPersist), so a
    play costs about one C(StartSession) per host, not one per task. It ends after O(idle_timeout) seconds without use,
    or on C(meta: reset_connection)."
  - Commands, pipelining and file transfers all travel over that one session; files are checksummed.
  - "The session is the account's shell session (C(SSM-SessionManagerRunShell), C(Standard_Stream)) or the document in
    O(ssm_document): an interactive C(sh) on a terminal with echo, after the shell profile of the session preferences.
    The connection types one bootstrap line into it that turns the terminal raw and silent and starts a
    non-interactive shell, and drops everything printed before that shell's ready marker (banner, prompt, echo,
    bracketed-paste switches). Results never hold terminal noise."
  - Run As (C(runAsEnabled) with C(runAsDefaultUser), or the C(SSMSessionRunAs) tag of the IAM principal) decides the
    session user (C(ssm-user) when Run As is off); become works on top of it. Sessions are encrypted with KMS when the
    session preferences (or the document) name a key.
  - The node needs a POSIX shell (O(shell)), and Python for modules other than M(ansible.builtin.raw). Windows nodes are
    not supported; a host with C(ansible_shell_type=powershell) is unreachable, saying so, before any call.
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.aws_auth.plugins
  - cloudexec.core.connection
  - cloudexec.core.connection.session
options:
  instance_id:
    description:
      - The managed node, an EC2 instance id (C(i-)) or a hybrid node id (C(mi-)).
      - Defaults to the host's address (C(ansible_host), else the inventory name), as C(amazon.aws.aws_ssm) does.
    type: str
    vars:
      - name: ansible_aws_ssm_instance_id
  ssm_document:
    description:
      - The session document to start, a C(Standard_Stream) session document (its name or ARN), for example one with
        C(runAsEnabled) and C(runAsDefaultUser).
      - When not set, the account's shell session, C(SSM-SessionManagerRunShell) (the Session Manager preferences).
    type: str
    vars:
      - name: ansible_aws_ssm_document
  shell:
    description:
      - The POSIX shell on the node that runs commands.
    type: str
    default: /bin/sh
    vars:
      - name: ansible_aws_ssm_shell
  reconnection_retries:
    description:
      - More attempts to open a session when one fails on the way (the network, the websocket, a throttled call), all
        within O(connect_timeout). A session lost later is resumed with C(ResumeSession) first.
      - C(ansible_aws_ssm_retries) is C(amazon.aws.aws_ssm)'s name for it.
    type: int
    default: 3
    vars:
      - name: ansible_aws_ssm_retries
      - name: ansible_aws_ssm_reconnection_retries
  access_key:
    vars:
      - name: ansible_aws_access_key_id
      - name: ansible_aws_ssm_access_key_id
  secret_key:
    vars:
      - name: ansible_aws_secret_access_key
      - name: ansible_aws_ssm_secret_access_key
  session_token:
    vars:
      - name: ansible_aws_session_token
      - name: ansible_aws_ssm_session_token
  profile:
    env:
      - name: AWS_DEFAULT_PROFILE
      - name: AWS_PROFILE
    vars:
      - name: ansible_aws_profile
      - name: ansible_aws_ssm_profile
  region:
    description:
      - The AWS region of the node. V(us-east-1) when neither this, the environment nor the profile sets one, as with
        C(amazon.aws.aws_ssm).
    vars:
      - name: ansible_aws_region
      - name: ansible_aws_ssm_region
  endpoint_url:
    description:
      - Send SSM API calls (C(StartSession), C(TerminateSession), C(ResumeSession), C(DescribeInstanceInformation)) to
        this URL instead of the public endpoint (a VPC endpoint, or the collection's emulator).
      - When not set, boto3 reads E(AWS_ENDPOINT_URL_SSM) and E(AWS_ENDPOINT_URL).
    env:
      - name: AWS_ENDPOINT_URL_SSM
    vars:
      - name: ansible_aws_endpoint_url
      - name: ansible_aws_ssm_endpoint_url
  idle_timeout:
    description:
      - Seconds the background session may stay unused before it is closed.
      - Session Manager itself ends sessions after its idle session timeout (20 minutes unless the preferences say
        otherwise).
    vars:
      - name: ansible_aws_ssm_idle_timeout
  warm_python:
    vars:
      - name: ansible_aws_ssm_warm_python
  connect_timeout:
    description:
      - C(ansible_aws_ssm_timeout) is C(amazon.aws.aws_ssm)'s name for it (there, how long to wait for output); here it
        bounds opening a session, while O(command_timeout) bounds each command.
    vars:
      - name: ansible_aws_ssm_timeout
      - name: ansible_aws_ssm_connect_timeout
  command_timeout:
    vars:
      - name: ansible_aws_ssm_command_timeout
  piece_cache:
    vars:
      - name: ansible_aws_ssm_piece_cache
  pipelining:
    vars:
      - name: ansible_pipelining
      - name: ansible_aws_ssm_pipelining
  bucket_name:
    description:
      - Accepted from inventories written for C(amazon.aws.aws_ssm) and not used - files travel over the session itself,
        never through S3. A warning says so once per run.
    type: str
    vars:
      - name: ansible_aws_ssm_bucket_name
  bucket_endpoint_url:
    description:
      - Accepted and not used, as O(bucket_name).
    type: str
    vars:
      - name: ansible_aws_ssm_bucket_endpoint_url
  bucket_sse_mode:
    description:
      - Accepted and not used, as O(bucket_name).
    type: str
    vars:
      - name: ansible_aws_ssm_bucket_sse_mode
  bucket_sse_kms_key_id:
    description:
      - Accepted and not used, as O(bucket_name).
    type: str
    vars:
      - name: ansible_aws_ssm_bucket_sse_kms_key_id
  s3_addressing_style:
    description:
      - Accepted and not used, as O(bucket_name).
    type: str
    vars:
      - name: ansible_aws_ssm_s3_addressing_style
  plugin:
    description:
      - Accepted and not used - the Session Manager protocol is spoken in Python, no C(session-manager-plugin) binary
        runs. A warning says so once per run when it is set.
    type: str
    vars:
      - name: ansible_aws_ssm_plugin
notes:
  - The credentials, the session token and stream URL never reach logs at any verbosity.
  - The IAM principal needs C(ssm:StartSession) on the node and the document, C(ssm:TerminateSession) and
    C(ssm:ResumeSession) on its own sessions, C(ssm:DescribeInstanceInformation) (to say why a node cannot be reached),
    and C(kms:GenerateDataKey) on the key when sessions are encrypted. No S3 permission.
  - E(AWS_SESSION_MANAGER_PLUGIN), the environment variable of C(amazon.aws.aws_ssm)'s O(plugin), is not read.
'''

EXAMPLES = r'''
# An inventory written for amazon.aws.aws_ssm keeps working; only ansible_connection changes:
#   all:
#     hosts:
#       web-1:
#         ansible_aws_ssm_instance_id: i-0a1b2c3d4e5f60701
#       onprem-1:
#         ansible_aws_ssm_instance_id: mi-0a1b2c3d4e5f60801
#     vars:
#       ansible_connection: cloudexec.core.aws_ssm      # was: amazon.aws.aws_ssm
#       ansible_aws_ssm_region: us-east-1
#       ansible_aws_ssm_bucket_name: my-transfer-bucket  # no longer needed; a warning says so once

- hosts: all
  gather_facts: true
  tasks:
    - name: Ship a config file to the node, over the session (no S3 bucket)
      ansible.builtin.copy:
        src: app.conf
        dest: /etc/app.conf
        mode: "0644"
      become: true
    - name: Close the Session Manager sessions now rather than after the idle timeout
      ansible.builtin.meta: reset_connection
'''

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.utils.display import Display

from ansible_collections.cloudexec.core.plugins.module_utils.auth_options import AWS_AUTH_ARGSPEC
from ansible_collections.cloudexec.core.plugins.plugin_utils.connection_base import SessionConnection

display = Display()

# amazon.aws.aws_ssm's options for its S3 transfers and its session-manager-plugin binary: read, never needed here.
UNUSED_OPTIONS = ('bucket_name', 'bucket_endpoint_url', 'bucket_sse_mode', 'bucket_sse_kms_key_id', 's3_addressing_style', 'plugin')
# The warnings given in this process (the controller deduplicates them across workers as well).
_WARNED: set[str] = set()


def unused_options_warning(names: list[str]) -> str:
    """The one warning for amazon.aws.aws_ssm settings that this connection does not need (no host in it: said once)."""
    variables = ', '.join(f'ansible_aws_ssm_{name}' for name in names)
    return (f'cloudexec.core.aws_ssm does not use {variables}: files travel over the Session Manager session itself, never '
            'through S3, and no session-manager-plugin binary runs. The settings are ignored; remove them (and the '
            "bucket's IAM permissions) when you no longer switch back to amazon.aws.aws_ssm.")


class Connection(SessionConnection):
    """SSM Session Manager on EC2 instances and hybrid managed nodes as an Ansible connection."""

    transport = 'cloudexec.core.aws_ssm'
    broker_kind = 'aws_ssm'
    label = 'Session Manager'

    def _target_options(self) -> dict:
        self._warn_unused()
        if getattr(self._shell, 'SHELL_FAMILY', 'sh') == 'powershell':
            # amazon.aws.aws_ssm drives Windows nodes with PowerShell; this connection needs a POSIX shell on the node.
            raise AnsibleConnectionFailure('cloudexec.core.aws_ssm does not support Windows nodes (ansible_shell_type '
                                           'powershell): keep amazon.aws.aws_ssm for them')
        options = {name: self.get_option(name) for name in AWS_AUTH_ARGSPEC}
        options.update(
            instance_id=self.get_option('instance_id') or self._play_context.remote_addr,
            ssm_document=self.get_option('ssm_document'),
            reconnection_retries=self.get_option('reconnection_retries'),
            **self._session_options(),
        )
        if not options['instance_id']:
            raise AnsibleError('cloudexec.core.aws_ssm needs a managed node: set ansible_aws_ssm_instance_id (or ansible_host)')
        return options

    def _warn_unused(self) -> None:
        names = [name for name in UNUSED_OPTIONS if self.get_option(name) not in (None, '')]
        if not names:
            return
        text = unused_options_warning(names)
        if text not in _WARNED:
            _WARNED.add(text)
            display.warning(text)

    def _describe_target(self, options: dict) -> str:
        document = options.get('ssm_document')
        return f'managed node {options["instance_id"]}' + (f' with document {document}' if document else '')
