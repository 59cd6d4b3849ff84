# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The thin AnsibleModule layer every cloudexec.core module is built on.

Modules declare their own options, add the auth options of their cloud with aws_argument_spec()
or alicloud_argument_spec(), and let CloudExecModule turn CloudExecError into a failed result whose
message says what to do.
"""

from __future__ import annotations

import copy
import datetime
import typing as t

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, aws, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError

# The options every exec module shares, named as ansible.builtin.command names them.
COMMAND_OPTIONS: dict[str, dict[str, t.Any]] = {
    'command': {'type': 'raw', 'required': True},
    'chdir': {'type': 'str'},
    'creates': {'type': 'str'},
    'removes': {'type': 'str'},
    'timeout': {'type': 'int', 'default': 600},
}


def validate_command(params: dict[str, t.Any]) -> None:
    """Refuse an empty command or a bad timeout before any API call."""
    command = params['command']
    if isinstance(command, list):
        if not command or not all(isinstance(arg, (str, int, float)) for arg in command):
            raise ValidationError('command', 'a list must hold at least one item, each a string')
    elif not isinstance(command, str) or not command.strip():
        raise ValidationError('command', 'it must be a non-empty string or a list of strings')
    if params['timeout'] < 1:
        raise ValidationError('timeout', f'{params["timeout"]} is below the minimum of 1 second')


def aws_argument_spec(**options: t.Any) -> dict[str, t.Any]:
    """The AWS auth options plus the module's own."""
    spec = copy.deepcopy(aws.AWS_AUTH_ARGSPEC)
    spec.update(copy.deepcopy(options))
    return spec


def alicloud_argument_spec(**options: t.Any) -> dict[str, t.Any]:
    """The Alibaba auth options (with their ALICLOUD_*/ALIBABA_CLOUD_* fallbacks) plus the module's own."""
    spec = copy.deepcopy(alicloud.ALICLOUD_AUTH_ARGSPEC)
    for name, env_names in alicloud.ALICLOUD_AUTH_ENV.items():
        spec[name]['fallback'] = (env_fallback, env_names)
    spec.update(copy.deepcopy(options))
    return spec


class CloudExecModule(AnsibleModule):
    """AnsibleModule with our auth helpers and error reporting."""

    def fail_error(self, error: CloudExecError, **result: t.Any) -> t.NoReturn:
        """Fail the task with the error's message and remedy, keeping any partial result."""
        result.update(error.to_result())
        self.fail_json(msg=str(error), **result)

    def aws_auth(self) -> aws.AwsAuth:
        """The resolved AWS auth of this module's parameters."""
        if not aws.HAS_BOTO3:
            self.fail_json(msg=missing_required_lib('boto3 and botocore'), exception=aws.BOTO3_IMPORT_ERROR)
        try:
            return aws.AwsAuth.from_options(self.params.get)
        except CloudExecError as exc:
            self.fail_error(exc)

    def alicloud_auth(self) -> alicloud.AlicloudAuth:
        """The resolved Alibaba Cloud auth of this module's parameters."""
        if not alicloud.has_tea():
            self.fail_json(msg=missing_required_lib('alibabacloud-ecs20140526, alibabacloud-eci20180808 and alibabacloud-credentials'),
                           exception=alicloud.tea_import_error())
        try:
            return alicloud.AlicloudAuth.from_options(self.params.get)
        except CloudExecError as exc:
            self.fail_error(exc)

    def exit_command(self, outcome: remote_shell.CommandResult, result: dict[str, t.Any], start: datetime.datetime,
                     end: datetime.datetime) -> t.NoReturn:
        """Finish an exec module like ansible.builtin.command: skipped by creates/removes, or rc, stdout, stderr."""
        params = self.params
        if outcome.outcome == remote_shell.SKIPPED_CREATES:
            self.exit_json(msg=f'Did not run: {params["creates"]} exists', **result)
        if outcome.outcome == remote_shell.SKIPPED_REMOVES:
            self.exit_json(msg=f'Did not run: {params["removes"]} does not exist', **result)
        if outcome.outcome == remote_shell.CHDIR_FAILED:
            self.fail_json(msg=f'Cannot change into {params["chdir"]} in the container', rc=1, **result)
        stdout = outcome.stdout.decode('utf-8', errors='replace')
        stderr = outcome.stderr.decode('utf-8', errors='replace')
        result['changed'] = True
        result.update(rc=outcome.rc, stdout=stdout, stderr=stderr, stdout_lines=stdout.splitlines(),
                      stderr_lines=stderr.splitlines(), start=str(start), end=str(end), delta=str(end - start))
        if outcome.rc != 0:
            self.fail_json(msg='non-zero return code', **result)
        self.exit_json(**result)
