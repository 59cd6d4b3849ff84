#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: aws_ssm_exec_check
short_description: Check that Session Manager can reach a managed node, and say how to fix what stops it
version_added: 0.1.0
description:
  - Runs the preflight checks of a Session Manager session against EC2 instances and hybrid (C(mi-)) managed nodes, as
    the P(cloudexec.core.aws_ssm#connection) connection opens them, and returns every check with its status and, for
    problems, the remedy in a sentence. It runs nothing on the nodes.
  - The checks, in order, for each node. V(credentials) the credentials work (C(sts:GetCallerIdentity)).
    V(managed_node) Systems Manager lists the node (C(DescribeInstanceInformation)); for an EC2 instance it does not
    list, C(ec2:DescribeInstances) tells whether it is stopped or just not registered. V(agent_online) its
    C(PingStatus) is V(Online). V(agent_version) its SSM Agent is 2.3.68.0 or later (Session Manager), 2.3.539.0 or
    later when the sessions are encrypted with KMS, 2.3.672.0 or later when Run As is on (Linux and macOS); an agent
    that is not the latest is a V(warn).
  - V(session_document) the session document (O(document), default the account's preferences
    C(SSM-SessionManagerRunShell)) exists and opens a shell; its inputs say whether Run As and KMS are on.
    V(start_session_permission) the caller may call C(ssm:StartSession) on the node and on the document, and
    V(kms_permission) C(kms:GenerateDataKey) on the preferences' KMS key (both by C(iam:SimulatePrincipalPolicy)).
  - V(run_as) the OS user of the sessions, when Run As is on, from the caller's C(SSMSessionRunAs) tag
    (C(iam:ListUserTags) or C(iam:ListRoleTags)) or C(runAsDefaultUser). V(network_path) an EC2 instance has a public IP,
    or its VPC has the C(ssm), C(ssmmessages) and C(ec2messages) interface endpoints (C(ec2:DescribeVpcEndpoints)).
  - A check the caller is not allowed to make, that the APIs cannot answer, or that an earlier failure makes pointless,
    is V(unknown) with the reason; the module carries on with the others.
  - The task does not fail because a check failed; RV(ready) says whether one did. Set O(fail_on_problems=true) to fail
    the task, with every failed check and its remedy in the message.
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  instance_id:
    description:
      - The managed node to check, or a list of them. EC2 instances are C(i-) and 8 or 17 hex digits, hybrid nodes
        C(mi-) and 17 hex digits.
      - At most 50 nodes a task.
    type: list
    elements: str
    required: true
    aliases: [instance_ids]
  document:
    description:
      - The session document the connection uses (its C(ansible_aws_ssm_document)).
      - When not set, C(SSM-SessionManagerRunShell), the document that holds the account's Session Manager preferences
        (Run As, KMS key, shell profile). An account that never saved preferences has none; sessions then use the defaults.
    type: str
  fail_on_problems:
    description:
      - Fail the task when any check has status V(fail). The message lists each failed check and its remedy.
      - When V(false), the task succeeds and RV(ready) tells the result.
    type: bool
    default: false
extends_documentation_fragment:
  - cloudexec.core.aws_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; check mode runs every check the same way.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The module only reads. It calls C(sts:GetCallerIdentity), C(ssm:DescribeInstanceInformation), C(ssm:GetDocument),
    C(iam:SimulatePrincipalPolicy), C(iam:ListUserTags) or C(iam:ListRoleTags) (Run As only), C(ec2:DescribeInstances)
    and C(ec2:DescribeVpcEndpoints). Without the IAM or EC2 permissions the checks that need them are V(unknown), not
    V(fail).
  - O(endpoint_url) is the Systems Manager endpoint; STS, IAM and EC2 are called where boto3's own settings say
    (E(AWS_ENDPOINT_URL_STS), E(AWS_ENDPOINT_URL_IAM), E(AWS_ENDPOINT_URL_EC2), the regional endpoints).
  - "What is not checked, because no read-only API answers it: the permissions of the node's instance profile or
    activation role (an V(Online) agent shows that it reaches Systems Manager; C(ssmmessages:*) and, with KMS,
    C(kms:Decrypt) are not seen), whether the Run As user exists on the node, session tags of an assumed role (STS
    session tags may carry C(SSMSessionRunAs)), route tables and NAT gateways, and the network of an on-premises node."
  - IAM's policy simulation evaluates identity policies; it does not see service control policies, permission
    boundaries of other accounts, KMS key policies or VPC endpoint policies, so a V(pass) there is strong evidence, not
    proof.
  - This collection's emulator answers the IAM simulation from the C(deny) list of a credential instead of evaluating
    policies; see C(tests/emulator/README.md).
seealso:
  - plugin: cloudexec.core.aws_ssm
    plugin_type: inventory
  - module: cloudexec.core.aws_ecs_exec_check
  - name: Troubleshooting Session Manager
    description: AWS's guide to Session Manager issues.
    link: https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-troubleshooting.html
  - name: Session Manager prerequisites
    description: Agent versions, endpoints and permissions Session Manager needs.
    link: https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-prerequisites.html
'''

EXAMPLES = r'''
- name: Check a node before running tasks on it
  cloudexec.core.aws_ssm_exec_check:
    instance_id: i-0a1b2c3d4e5f60701
  register: preflight

- name: Show what to fix
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.detail }} -> {{ item.remedy }}"
  loop: "{{ preflight.checks | selectattr('status', 'equalto', 'fail') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Check every host of an aws_ssm inventory at once, with the document the connection uses
  cloudexec.core.aws_ssm_exec_check:
    instance_ids: "{{ groups['aws_ssm'] | map('extract', hostvars, 'ansible_aws_ssm_instance_id') | list }}"
    document: My-RunAsShell
    fail_on_problems: true
  run_once: true
  delegate_to: localhost
'''

RETURN = r'''
ready:
  description: Whether no check of any node failed (warnings and unknowns do not count).
  returned: always
  type: bool
  sample: false
checks:
  description: Every check of the node, in the order they ran, when one node was checked.
  returned: when O(instance_id) holds one node
  type: list
  elements: dict
  contains:
    name:
      description: The check's name, for example V(agent_online).
      type: str
    status:
      description: V(pass), V(fail), V(warn) (worth knowing, does not stop sessions) or V(unknown) (could not be checked).
      type: str
    detail:
      description: What the check saw.
      type: str
    remedy:
      description: What to do about it, in a sentence; null when there is nothing to do.
      type: str
  sample:
    - {name: agent_online, status: fail, detail: "the agent of i-0a1b2c3d4e5f60703 in us-east-1 lost its connection ...",
       remedy: "The agent stopped reporting: check that amazon-ssm-agent runs on the node ..."}
problems:
  description: "The failed checks, one line each: C(name: detail -> remedy); prefixed with the node id when several
    nodes were checked."
  returned: always
  type: list
  elements: str
nodes:
  description: One entry per node, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The node id.
      type: str
    ready:
      description: Whether no check of this node failed.
      type: bool
    checks:
      description: The node's checks, as RV(checks).
      type: list
      elements: dict
    problems:
      description: The node's failed checks, one line each.
      type: list
      elements: str
instance_id:
  description: The node that was checked.
  returned: when O(instance_id) holds one node
  type: str
document:
  description: The session document the checks used.
  returned: always
  type: str
  sample: SSM-SessionManagerRunShell
msg:
  description: A one-line summary.
  returned: always
  type: str
'''

import json
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import aws, exec_checks, ssm_checks, ssm_nodes, ssm_sessions
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, aws_argument_spec

NAMES = ('credentials', 'managed_node', 'agent_online', 'agent_version', 'session_document', 'start_session_permission',
         'kms_permission', 'run_as', 'network_path')
MAX_NODES = 50
# Errors that mean the caller may not make a call (its credentials are fine).
ACCESS_DENIED = ('AccessDeniedException', 'AccessDenied', 'UnauthorizedOperation', 'UnauthorizedAccess')


def _why(error: CloudExecError) -> str:
    return f' ({error.code or "error"}: {error.message})'


class Stop(Exception):
    """An earlier check failed so that the later ones of this node cannot run."""


class Shared:
    """What every node's checks share: the caller, the session document and the caller's decisions about it."""

    def __init__(self) -> None:
        self.caller: str | None = None
        self.partition = 'aws'
        self.account = ''
        self.credentials: exec_checks.Check | None = None
        self.document: exec_checks.Check | None = None
        self.inputs: dict[str, t.Any] = ssm_checks.document_inputs(None)
        self.document_decision: str | None = None
        self.kms: exec_checks.Check | None = None
        self.tag_user: str | None = None
        self.tags_read = False
        self.tags_why = ''
        self.simulate_why = ''


class SsmPreflight:
    """Runs the checks, node by node, and keeps what they found."""

    def __init__(self, auth: aws.AwsAuth, params: dict[str, t.Any]) -> None:
        self.auth = auth
        self.session = aws.aws_session(auth)
        self.region = str(self.session.region_name or '')
        self.ssm = aws.aws_client(auth, 'ssm', self.session)
        self.document = params['document'] or ssm_checks.DEFAULT_DOCUMENT
        self.shared = Shared()
        self._clients: dict[str, t.Any] = {}

    def client(self, service: str) -> t.Any:
        """STS, IAM, EC2: boto3's own endpoint settings for each (endpoint_url is Systems Manager's)."""
        if service not in self._clients:
            self._clients[service] = aws.aws_client(self.auth, service, self.session, use_endpoint_url=False)
        return self._clients[service]

    # ---- shared --------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """The checks every node shares: credentials, the document, Run As tag, KMS and document permissions."""
        shared = self.shared
        try:
            shared.caller = aws.call(self.client('sts'), 'get_caller_identity')['Arn']
        except CloudExecError as error:
            shared.credentials = exec_checks.failed('credentials', f'{error.code}: {error.message}',
                                                    error.remedy or 'Check the credentials, region and endpoint', error.code)
            return
        parts = shared.caller.split(':')
        shared.partition, shared.account = parts[1], parts[4]
        shared.credentials = exec_checks.passed('credentials', f'the credentials are valid ({shared.caller})')
        content, error = None, None
        try:
            answer = aws.call(self.ssm, 'get_document', Name=self.document, DocumentFormat='JSON')
            content = json.loads(answer.get('Content') or '{}')
        except CloudExecError as exc:
            error = exc
        except ValueError:
            content = {}
        shared.document = ssm_checks.session_document(self.document, content, error)
        shared.inputs = ssm_checks.document_inputs(content)
        if content is not None or shared.document.status == exec_checks.PASS:
            shared.document_decision = self._simulate_one('ssm:StartSession', self.document_arn())
        key = shared.inputs['kms_key_id']
        decision = self._simulate_one('kms:GenerateDataKey', self.key_arn(key)) if key else None
        shared.kms = ssm_checks.kms_permission(key, decision, shared.simulate_why)
        if shared.inputs['run_as_enabled']:
            self._run_as_tag()

    def _simulate_one(self, action: str, resource: str) -> str | None:
        """One action on one resource (one call per resource: the simulation's answer shape then does not matter)."""
        try:
            answer = aws.call(self.client('iam'), 'simulate_principal_policy', PolicySourceArn=exec_checks.caller_role_arn(
                str(self.shared.caller)), ActionNames=[action], ResourceArns=[resource])
        except CloudExecError as error:
            self.shared.simulate_why = _why(error)
            return None
        results = [r for r in answer.get('EvaluationResults') or [] if r.get('EvalActionName') == action]
        if not results:
            return None
        return 'allowed' if all(r.get('EvalDecision') == 'allowed' for r in results) else results[0].get('EvalDecision')

    def _run_as_tag(self) -> None:
        """The caller's SSMSessionRunAs tag: ListUserTags for an IAM user, ListRoleTags for an assumed role's role."""
        shared = self.shared
        principal = exec_checks.caller_role_arn(str(shared.caller))
        kind, _sep, path = principal.split(':', 5)[-1].partition('/')
        operation, key = {'user': ('list_user_tags', 'UserName'), 'role': ('list_role_tags', 'RoleName')}.get(kind, (None, None))
        if operation is None:
            shared.tags_why = f' (the caller {shared.caller} is neither an IAM user nor a role)'
            return
        try:
            answer = aws.call(self.client('iam'), operation, **{key: path.rsplit('/', 1)[-1]})
        except CloudExecError as error:
            shared.tags_why = _why(error)
            return
        shared.tags_read = True
        tags = {tag.get('Key'): tag.get('Value') for tag in answer.get('Tags') or []}
        shared.tag_user = tags.get(ssm_checks.RUN_AS_TAG) or None

    # ---- ARNs ----------------------------------------------------------------------------------------------------

    def document_arn(self) -> str:
        if self.document.startswith('arn:'):
            return self.document
        # AWS's own documents (AWS-*) have no account in their ARN.
        account = '' if self.document.startswith('AWS-') else self.shared.account
        return f'arn:{self.shared.partition}:ssm:{self.region}:{account}:document/{self.document}'

    def node_arn(self, node_id: str) -> str:
        if ssm_nodes.is_ec2(node_id):
            return f'arn:{self.shared.partition}:ec2:{self.region}:{self.shared.account}:instance/{node_id}'
        return f'arn:{self.shared.partition}:ssm:{self.region}:{self.shared.account}:managed-instance/{node_id}'

    def key_arn(self, key: str) -> str:
        if key.startswith('arn:'):
            return key
        kind = '' if key.startswith('alias/') else 'key/'
        return f'arn:{self.shared.partition}:kms:{self.region}:{self.shared.account}:{kind}{key}'

    # ---- per node ------------------------------------------------------------------------------------------------

    def check_node(self, node_id: str) -> list[exec_checks.Check]:
        checks: list[exec_checks.Check] = []
        try:
            self._node(node_id, checks)
        except Stop:
            pass
        done = {check.name for check in checks}
        blocker = next((check for check in checks if check.failed), None)
        for name in NAMES:
            if name not in done:
                reason = f'{blocker.name} failed' if blocker else 'an earlier check could not be made'
                checks.append(exec_checks.unknown(name, f'not checked: {reason}'))
        checks.sort(key=lambda check: NAMES.index(check.name))
        return checks

    def _node(self, node_id: str, checks: list[exec_checks.Check]) -> None:
        shared = self.shared
        credentials = shared.credentials or exec_checks.unknown('credentials', 'not checked')
        checks.append(credentials)
        if credentials.status != exec_checks.PASS:
            raise Stop()
        node = self._managed_node(node_id, checks)
        checks.append(ssm_checks.agent_online(node))
        checks.append(ssm_checks.agent_version(node, bool(shared.inputs['kms_key_id']), shared.inputs['run_as_enabled']))
        document = shared.document or exec_checks.unknown('session_document', 'not checked')
        checks.append(document)
        decisions = {self.node_arn(node_id): self._simulate_one('ssm:StartSession', self.node_arn(node_id))}
        if shared.document_decision is not None or document.status == exec_checks.PASS:
            decisions[self.document_arn()] = shared.document_decision
        checks.append(ssm_checks.start_session_permission(decisions, shared.simulate_why))
        checks.append(shared.kms or exec_checks.unknown('kms_permission', 'not checked'))
        checks.append(ssm_checks.run_as(node, shared.inputs, shared.tag_user, shared.tags_read, shared.tags_why))
        checks.append(self._network(node))

    def _managed_node(self, node_id: str, checks: list[exec_checks.Check]) -> dict[str, t.Any]:
        found: list[dict[str, t.Any]] = []
        try:
            found = ssm_nodes.describe_nodes(self.ssm, [{'Key': 'InstanceIds', 'Values': [node_id]}], self.region)
        except CloudExecError as error:
            if error.code in ACCESS_DENIED:
                checks.append(exec_checks.unknown('managed_node', f'may not list managed nodes{_why(error)}',
                                                  'Allow ssm:DescribeInstanceInformation to have the node checked'))
                raise Stop() from None
            if error.code != 'InvalidInstanceId':
                raise
        if found:
            node = found[0]
            if ssm_nodes.is_ec2(node_id):
                self._ec2_details(node)
            checks.append(ssm_checks.node_found(node))
            return node
        state = None
        if ssm_nodes.is_ec2(node_id):
            instance = self._ec2_instance(node_id)
            state = ((instance or {}).get('State') or {}).get('Name')
        checks.append(ssm_checks.node_missing(node_id, self.region, state))
        raise Stop()

    def _ec2_instance(self, node_id: str) -> dict[str, t.Any] | None:
        try:
            return ssm_nodes.ec2_instances(self.client('ec2'), [node_id]).get(node_id)
        except CloudExecError:
            return None

    def _ec2_details(self, node: dict[str, t.Any]) -> None:
        instance = self._ec2_instance(node['instance_id'])
        if instance is not None:
            ssm_nodes.add_ec2_details(node, instance)

    def _network(self, node: dict[str, t.Any]) -> exec_checks.Check:
        if node.get('resource_type') != 'EC2Instance' or node.get('public_ip_address'):
            return ssm_checks.network_path(node, [])
        if not node.get('vpc_id'):
            return ssm_checks.network_path(node, None, ' (ec2:DescribeInstances did not answer the instance\'s VPC)')
        services = [f'com.amazonaws.{self.region}.{s}' for s in ssm_checks.ENDPOINT_SERVICES]
        try:
            answer = aws.call(self.client('ec2'), 'describe_vpc_endpoints', Filters=[
                {'Name': 'vpc-id', 'Values': [node['vpc_id']]}, {'Name': 'service-name', 'Values': services}])
        except CloudExecError as error:
            return ssm_checks.network_path(node, None, _why(error))
        endpoints = [e.get('ServiceName') for e in answer.get('VpcEndpoints') or [] if e.get('State', 'available') == 'available']
        return ssm_checks.network_path(node, endpoints)


def node_ids(raw: t.Sequence[str]) -> list[str]:
    """The ids asked for, checked and without repeats, before any call."""
    ids = list(dict.fromkeys(str(i).strip() for i in raw or []))
    if not ids:
        raise ValidationError('instance_id', 'it needs at least one node id')
    if len(ids) > MAX_NODES:
        raise ValidationError('instance_id', f'{len(ids)} nodes is above the limit of {MAX_NODES} a task')
    for node_id in ids:
        ssm_sessions.check_node_id(node_id, 'instance_id')
    return ids


def main() -> None:
    module = CloudExecModule(
        argument_spec=aws_argument_spec(
            instance_id={'type': 'list', 'elements': 'str', 'required': True, 'aliases': ['instance_ids']},
            document={'type': 'str'},
            fail_on_problems={'type': 'bool', 'default': False},
        ),
        supports_check_mode=True,
    )
    auth = module.aws_auth()
    try:
        ids = node_ids(module.params['instance_id'])
        preflight = SsmPreflight(auth, module.params)
        preflight.prepare()
        nodes = []
        for node_id in ids:
            checks = preflight.check_node(node_id)
            nodes.append((node_id, checks))
    except CloudExecError as exc:
        module.fail_error(exc)
    several = len(nodes) > 1
    result: dict[str, t.Any] = {'changed': False, 'document': preflight.document, 'nodes': [], 'problems': []}
    for node_id, checks in nodes:
        problems = [f'{c.name}: {c.detail} -> {c.remedy}' for c in checks if c.failed]
        result['nodes'].append({'instance_id': node_id, 'ready': exec_checks.ready(checks), 'checks': [c.to_dict() for c in checks],
                                'problems': problems})
        result['problems'].extend(f'{node_id} {line}' if several else line for line in problems)
    result['ready'] = all(node['ready'] for node in result['nodes'])
    if not several:
        result.update(instance_id=nodes[0][0], checks=result['nodes'][0]['checks'])
        msg = exec_checks.summary(nodes[0][1])
    else:
        bad = [node['instance_id'] for node in result['nodes'] if not node['ready']]
        msg = (f'{len(bad)} of {len(nodes)} nodes have problems: ' + '; '.join(result['problems'])) if bad else \
            f'All {len(nodes)} nodes passed their checks or could not fail a session'
    if not result['ready'] and module.params['fail_on_problems']:
        module.fail_json(msg=f'Session Manager cannot reach the node: {msg}', **result)
    module.exit_json(msg=msg if not result['ready'] else f'Ready for Session Manager. {msg}', **result)


if __name__ == '__main__':
    main()
