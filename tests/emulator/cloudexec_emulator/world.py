# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's world: credentials and cloud resources, loaded from YAML into dataclasses.

The YAML schema is documented in tests/emulator/README.md. Loading is strict (unknown keys are
errors) because a typo in a test world otherwise turns into a confusing test failure much later.
Any list of resources may contain generator entries (``count`` plus ``*_pattern`` keys) so a
world can describe a fleet of hundreds of targets in a few lines.
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_WORLD = Path(__file__).parent / 'worlds' / 'default.yml'

ECS_LAUNCH_TYPES = ('FARGATE', 'EC2', 'EXTERNAL')
ECS_AGENT_STATUSES = ('PENDING', 'RUNNING', 'STOPPED')
ECS_TASK_STATUSES = ('PROVISIONING', 'PENDING', 'ACTIVATING', 'RUNNING', 'DEACTIVATING', 'STOPPING', 'DEPROVISIONING', 'STOPPED')
ECI_STATUSES = ('Pending', 'Running', 'Succeeded', 'Failed', 'Scheduling', 'ScheduleFailed', 'Restarting', 'Updating', 'Terminating', 'Expired')
ECS_INSTANCE_STATUSES = ('Pending', 'Running', 'Starting', 'Stopping', 'Stopped')
OS_TYPES = ('linux', 'windows')


class WorldError(ValueError):
    """The world file is not valid; the message names the offending entry."""


@dataclass
class AwsCredential:
    access_key: str
    secret_key: str
    session_token: str | None = None
    principal: str = ''
    deny: tuple[str, ...] = ()
    # The IAM principal's tags; Session Manager reads SSMSessionRunAs (the Run As user of its sessions).
    tags: dict[str, str] = field(default_factory=dict)

    def denies(self, action: str, service: str = 'ecs') -> bool:
        """True when the world forbids this principal the action (``ListTasks``, ``ecs:ListTasks``, ``kms:GenerateDataKey``)."""
        return action in self.deny or f'{service}:{action}' in self.deny or '*' in self.deny


@dataclass
class AliCredential:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    # An STS token that the world says has expired: every call with it is refused.
    expired: bool = False


@dataclass
class EcsContainer:
    name: str
    image: str
    runtime_id: str
    container_uuid: str
    last_status: str = 'RUNNING'
    agent_status: str = 'RUNNING'
    cpu: str = '0'
    memory: str | None = None
    arn: str = ''
    sandbox: Path | None = None
    # The password the emulator's fake sudo asks for in this container (None: sudo needs none).
    become_password: str | None = None


@dataclass
class EcsTask:
    task_id: str
    cluster: str
    family: str
    revision: int
    containers: list[EcsContainer]
    launch_type: str = 'FARGATE'
    platform_version: str | None = '1.4.0'
    service: str | None = None
    started_by: str | None = None
    enable_execute_command: bool = True
    last_status: str = 'RUNNING'
    desired_status: str = 'RUNNING'
    availability_zone: str = ''
    cpu: str = '256'
    memory: str = '512'
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    arn: str = ''
    task_definition_arn: str = ''
    # Preflight causes (aws_ecs_exec_check): the task role, what IAM's policy simulation says about its ssmmessages
    # permissions, the task's network (public IP, VPC) and, on EC2, the container instance's ECS agent version.
    task_role_arn: str | None = None
    task_role_permissions_ok: bool = True
    public_ip: str | None = None
    vpc_id: str = 'vpc-emulator0001'
    ecs_agent_version: str = '1.89.0'

    @property
    def group(self) -> str:
        """ECS names the task group after the service, or ``family:<name>`` for standalone tasks."""
        return f'service:{self.service}' if self.service else f'family:{self.family}'


@dataclass
class EcsCluster:
    name: str
    arn: str
    tasks: list[EcsTask]
    services: list[str]
    tags: dict[str, str] = field(default_factory=dict)
    status: str = 'ACTIVE'
    kms_key_id: str | None = None
    container_insights: str = 'disabled'
    # executeCommandConfiguration.logging: DEFAULT | NONE | OVERRIDE
    exec_logging: str = 'DEFAULT'


@dataclass
class EcsExecSettings:
    """How the emulated ECS Exec (ExecuteCommand and its SSM agent) behaves; the defaults are AWS's."""
    # Concurrent sessions per task container (the ECS agent's SessionWorkersLimit defaults to 2).
    session_limit: int = 2
    # An unused session token stops working after this long.
    token_ttl_seconds: float = 60.0
    # A session without input or output for this long is ended (ECS Exec: 20 minutes, not changeable).
    idle_timeout_seconds: float = 1200.0
    # The agent starts the command this long after the client connected; input before that is not acknowledged.
    agent_start_ms: int = 200
    # The agent's shell plugin sleeps a second before it reads the command's output for the first time.
    output_delay_ms: int = 1000
    # Whether SSM's ResumeSession (and TerminateSession) accept ECS Exec sessions. Unverified either way (no AWS
    # statement, no field report; session-manager-plugin sends ResumeSession to the ECS endpoint under
    # `aws ecs execute-command`), so the stricter answer is the default: DoesNotExistException.
    resumable: bool = False


# --------------------------------------------------------------------------- Systems Manager: managed nodes

SSM_PLATFORM_TYPES = ('Linux', 'Windows', 'MacOS')
# PingStatus (API reference, InstanceInformation): Inactive is deprecated but still in the enum.
SSM_PING_STATUSES = ('Online', 'ConnectionLost', 'Inactive')
SSM_RESOURCE_TYPES = ('EC2Instance', 'ManagedInstance')
# EC2 instance states and their codes (EC2 API reference, InstanceState).
EC2_STATE_CODES = {'pending': 0, 'running': 16, 'shutting-down': 32, 'terminated': 48, 'stopping': 64, 'stopped': 80}
# InstanceInformation.AgentVersion pattern (botocore ssm service-2.json, shape Version).
AGENT_VERSION_PATTERN = re.compile(r'^[0-9]{1,6}(\.[0-9]{1,6}){2,3}$')
# InstanceId: "i-" + 17 hex for EC2, "mi-" + 17 hex for hybrid activations (botocore shape InstanceId allows the
# old 8-character EC2 ids too; worlds use the current form only).
EC2_ID_PATTERN = re.compile(r'^i-[0-9a-f]{17}$')
HYBRID_ID_PATTERN = re.compile(r'^mi-[0-9a-f]{17}$')
# The user the agent runs sessions as when Run As is off and it runs as root (amazon-ssm-agent
# agent/appconfig/constants.go DefaultRunAsUserName; agent/session/shell/shell_unix.go StartCommandExecutor).
SSM_DEFAULT_USER = 'ssm-user'
SSM_DEFAULT_AGENT_VERSION = '3.3.1802.0'


@dataclass
class ManagedNode:
    """An EC2 instance (``i-``) or a hybrid activation's server (``mi-``) with the SSM agent."""
    node_id: str
    # EC2: the Name tag (also in tags); mi-: the activation's instance name (DescribeInstanceInformation Name).
    name: str | None
    platform_type: str
    platform_name: str
    platform_version: str
    ping_status: str
    agent_version: str
    computer_name: str
    ip_address: str
    # EC2: the instance's tags (DescribeInstances); mi-: the SSM resource tags (ListTagsForResource).
    tags: dict[str, str] = field(default_factory=dict)
    # EC2 only: the instance state (DescribeInstances); stopped or terminated instances are not managed nodes for
    # DescribeInstanceInformation ("does not return information for nodes that are either Stopped or Terminated").
    state: str = 'running'
    instance_type: str = 't3.micro'
    availability_zone: str = ''
    vpc_id: str = 'vpc-emulator0001'
    subnet_id: str = 'subnet-emulator0001'
    image_id: str = 'ami-0e0a1b2c3d4e5f601'
    # mi-: the activation's IAM role and id; EC2: the Quick Setup role, if any.
    iam_role: str | None = None
    activation_id: str | None = None
    # Seconds between the agent's last ping and the emulator start, for nodes that are not Online.
    last_ping_age: int = 0
    # Emulator device: the shell profile of sessions on this node, in place of the session document's
    # shellProfile.linux (AWS has it per account and Region only; this lets one world hold several).
    shell_profile: str | None = None
    # Local users besides root and ssm-user, for Run As (the agent fails a session whose user does not exist).
    users: tuple[str, ...] = ()
    # The password the fake sudo asks of the Run As users (ssm-user's sudo needs none: the agent adds it to sudoers).
    become_password: str | None = None
    launch_time: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    sandbox: Path | None = None

    @property
    def resource_type(self) -> str:
        return 'EC2Instance' if self.node_id.startswith('i-') else 'ManagedInstance'

    @property
    def is_ec2(self) -> bool:
        return self.resource_type == 'EC2Instance'

    @property
    def managed(self) -> bool:
        """Listed by DescribeInstanceInformation: a hybrid node, or an EC2 instance neither stopped nor terminated."""
        return not self.is_ec2 or self.state not in ('stopped', 'terminated', 'shutting-down')

    @property
    def connected(self) -> bool:
        """The agent is online: Session Manager can start a session (else TargetNotConnected)."""
        return self.managed and self.ping_status == 'Online' and (not self.is_ec2 or self.state == 'running')

    def has_user(self, user: str) -> bool:
        return user in ('root', SSM_DEFAULT_USER) or user in self.users


# The inputs of a Standard_Stream session document, with the values the console writes into a new
# SSM-SessionManagerRunShell (Session Manager preferences; their names and types as in the document).
SESSION_INPUT_DEFAULTS: dict[str, Any] = {
    's3BucketName': '', 's3KeyPrefix': '', 's3EncryptionEnabled': True,
    'cloudWatchLogGroupName': '', 'cloudWatchEncryptionEnabled': True, 'cloudWatchStreamingEnabled': True,
    'idleSessionTimeout': '20', 'maxSessionDuration': '', 'kmsKeyId': '',
    'runAsEnabled': False, 'runAsDefaultUser': '', 'shellProfile': {'windows': '', 'linux': ''},
}
_BOOL_INPUTS = ('s3EncryptionEnabled', 'cloudWatchEncryptionEnabled', 'cloudWatchStreamingEnabled', 'runAsEnabled')
_STR_INPUTS = ('s3BucketName', 's3KeyPrefix', 'cloudWatchLogGroupName', 'runAsDefaultUser')


@dataclass
class SessionInputs:
    """Session preferences: the ``inputs`` of a Standard_Stream document, normalized (every key present)."""
    inputs: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SESSION_INPUT_DEFAULTS))

    @property
    def run_as_enabled(self) -> bool:
        return bool(self.inputs['runAsEnabled'])

    @property
    def run_as_default_user(self) -> str:
        return str(self.inputs['runAsDefaultUser'])

    @property
    def shell_profile_linux(self) -> str:
        return str(self.inputs['shellProfile'].get('linux', ''))

    @property
    def kms_key_id(self) -> str | None:
        """The KMS key ARN that encrypts the sessions (normalized from a key id at load), or None."""
        return self.inputs['kmsKeyId'] or None

    @property
    def idle_timeout_minutes(self) -> int:
        return int(self.inputs['idleSessionTimeout'])

    @property
    def max_session_duration(self) -> str:
        return str(self.inputs['maxSessionDuration'])


# Session document types the emulated agent runs (Port and NonInteractiveCommands are not emulated).
SESSION_TYPES = ('Standard_Stream', 'InteractiveCommands')
# The account's preferences document, and the session document that StartSession uses without a DocumentName.
PREFERENCES_DOCUMENT = 'SSM-SessionManagerRunShell'


@dataclass
class SessionDocument:
    """A Session document: its name, owner and content (the JSON object as GetDocument returns it)."""
    name: str
    owner: str
    content: dict[str, Any]
    created: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def session_type(self) -> str:
        return str(self.content['sessionType'])

    @property
    def inputs(self) -> SessionInputs | None:
        """The document's own preferences (Standard_Stream documents have them), else None."""
        raw = self.content.get('inputs')
        return SessionInputs(raw) if isinstance(raw, dict) and self.session_type == 'Standard_Stream' else None

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.content.get('parameters') or {})

    @property
    def linux_properties(self) -> dict[str, Any]:
        return dict((self.content.get('properties') or {}).get('linux') or {})


@dataclass
class SsmSettings:
    """How the emulated Systems Manager service and the agents of managed nodes behave; defaults are AWS's."""
    # The newest agent release (IsLatestVersion compares with it).
    latest_agent_version: str = SSM_DEFAULT_AGENT_VERSION
    # A StartSession token stops working after this long unused ("valid only long enough to ensure the connection is
    # successful", API reference StartSession; the figure itself is not published).
    token_ttl_seconds: float = 60.0
    # The agent starts the shell this long after the client connected; input before that is not acknowledged.
    agent_start_ms: int = 200
    # The agent's shell plugin sleeps a second before it first reads the PTY (shell.go writePump).
    output_delay_ms: int = 1000
    # None: the session document's idleSessionTimeout (minutes). A number (seconds) overrides it, for tests.
    idle_timeout_seconds: float | None = None
    # Run Command (ssm_commands.py): for this long after SendCommand its invocations are not visible yet
    # (GetCommandInvocation answers InvocationDoesNotExist, ListCommandInvocations leaves them out): the API reference's
    # "eventual consistency model". AWS publishes no figure: small, never zero.
    invocation_visible_ms: int = 200
    # None: an undelivered invocation (agent offline, instance stopped) times out after TimeoutSeconds plus the
    # document's executionTimeout, as Run Command does. A number (seconds) overrides that sum, for tests.
    delivery_timeout_seconds: float | None = None


@dataclass
class AwsWorld:
    region: str
    account_id: str
    credentials: list[AwsCredential]
    clusters: list[EcsCluster]
    exec_settings: EcsExecSettings = field(default_factory=EcsExecSettings)
    # Interface VPC endpoints: (vpc id, service name such as com.amazonaws.us-east-1.ssmmessages).
    vpc_endpoints: list[tuple[str, str]] = field(default_factory=list)
    # Systems Manager: managed nodes, the account's Session Manager preferences (None: the account never saved
    # any, so SSM-SessionManagerRunShell does not exist and sessions use the defaults), more session documents.
    managed_nodes: list[ManagedNode] = field(default_factory=list)
    session_preferences: SessionInputs | None = None
    session_documents: list[SessionDocument] = field(default_factory=list)
    ssm: SsmSettings = field(default_factory=SsmSettings)

    def credential(self, access_key: str) -> AwsCredential | None:
        return next((c for c in self.credentials if c.access_key == access_key), None)

    def managed_node(self, node_id: str) -> ManagedNode | None:
        return next((n for n in self.managed_nodes if n.node_id == node_id), None)

    def kms_keys(self) -> list[str]:
        """Every KMS key ARN the world uses: clusters' ECS Exec keys, session preferences' and documents' keys."""
        keys = [c.kms_key_id for c in self.clusters if c.kms_key_id]
        inputs = [self.session_preferences] + [d.inputs for d in self.session_documents]
        keys += [i.kms_key_id for i in inputs if i is not None and i.kms_key_id]
        return keys

    def cluster(self, name_or_arn: str) -> EcsCluster | None:
        return next((c for c in self.clusters if name_or_arn in (c.name, c.arn)), None)

    def all_tasks(self) -> list[EcsTask]:
        return [task for cluster in self.clusters for task in cluster.tasks]


@dataclass
class EciContainer:
    name: str
    image: str
    state: str = 'Running'
    ready: bool = True
    restart_count: int = 0
    commands: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    cpu: float = 0.0
    memory: float = 0.0
    sandbox: Path | None = None
    # The password the emulator's fake sudo asks for in this container (None: sudo needs none).
    become_password: str | None = None


@dataclass
class ContainerGroup:
    group_id: str
    name: str
    region: str
    zone: str
    status: str
    containers: list[EciContainer]
    tags: dict[str, str] = field(default_factory=dict)
    vpc_id: str = ''
    vswitch_id: str = ''
    security_group_id: str = ''
    intranet_ip: str = ''
    cpu: float = 1.0
    memory: float = 2.0
    instance_type: str = ''
    restart_policy: str = 'Always'
    created_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    # How this group's exec websocket behaves (one of ECI_STREAM_VARIANTS); None: alicloud.exec.stream.
    exec_stream: str | None = None

    def container(self, name: str) -> EciContainer | None:
        return next((c for c in self.containers if c.name == name), None)


@dataclass
class CloudAssistant:
    online: bool = True
    version: str = '2.2.3.857'
    session_manager: bool = True
    active_task_count: int = 0
    invocation_count: int = 0
    # Seconds between the agent's last heartbeat and the emulator start, for offline agents.
    last_heartbeat_age: int = 0


@dataclass
class EcsInstance:
    instance_id: str
    name: str
    region: str
    zone: str
    status: str
    os_type: str
    os_name: str
    instance_type: str
    cpu: int
    memory: int
    vpc_id: str
    vswitch_id: str
    private_ip: str
    hostname: str
    image_id: str
    security_group_id: str
    cloud_assistant: CloudAssistant
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    sandbox: Path | None = None
    # The password the emulator's fake sudo asks for on this instance (None: sudo needs none).
    become_password: str | None = None


# How the ECI exec websocket may behave (eci_exec.py says what each does and why).
ECI_STREAM_VARIANTS = ('kubelet', 'v4_status', 'no_status', 'swapped_channels')


@dataclass
class EciExecSettings:
    """How the emulated ECI ExecContainerCommand behaves."""
    # A WebSocketUri works once, and only this long after ExecContainerCommand answered.
    token_ttl_seconds: float = 60.0
    # A Sync call kills its command after this long. None (the default): never, as no server-side limit is
    # documented; the call then blocks until the command ends, even after its client gave up.
    sync_timeout_seconds: float | None = None
    # The exec websocket's behaviour for groups that do not set their own exec_stream.
    stream: str = 'kubelet'


# StopInvocation on a one-shot run that has started: what the sources say differs (tests/emulator/README.md).
STOP_STARTED_MODES = ('kill', 'continue')


@dataclass
class AssistSettings:
    """How the emulated Cloud Assistant (RunCommand and its agent) behaves."""
    # The output quota the server hands the agent with each task (logQuota). The API reference says output is
    # cut "after 24 KB" (DescribeInvocationResults, Dropped); the value itself is in no source, so 24 KB.
    log_quota: int = 24576
    # The agent's own floor: it applies max(logQuota, 12000) (aliyun_assist_client agent/taskengine/basetask.go,
    # defaultQuoto). A world may lower it (to 0) to test a client against quotas no agent we know applies.
    agent_min_quota: int = 12000
    # StopInvocation on a started one-shot run: 'kill' (the agent: SIGKILL of the script's main process,
    # agent/taskengine/scheduletask.go dispatchStopTask) or 'continue' (the API reference: "the executions that
    # have started are not interrupted").
    stop_started: str = 'kill'

    @property
    def output_quota(self) -> int:
        """The bytes of output one execution keeps (head and tail together)."""
        return max(self.log_quota, self.agent_min_quota)


@dataclass
class AliWorld:
    region: str
    credentials: list[AliCredential]
    container_groups: list[ContainerGroup]
    instances: list[EcsInstance]
    eci_exec: EciExecSettings = field(default_factory=EciExecSettings)
    assist: AssistSettings = field(default_factory=AssistSettings)

    def credential(self, access_key_id: str) -> AliCredential | None:
        return next((c for c in self.credentials if c.access_key_id == access_key_id), None)

    def container_group(self, group_id: str) -> ContainerGroup | None:
        return next((g for g in self.container_groups if g.group_id == group_id), None)

    def instance(self, instance_id: str) -> EcsInstance | None:
        return next((i for i in self.instances if i.instance_id == instance_id), None)


@dataclass
class World:
    aws: AwsWorld
    alicloud: AliWorld
    faults: list[dict[str, Any]]
    source: Path | None = None
    started_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))

    def summary(self) -> dict[str, Any]:
        """A JSON-able overview for the admin API and humans."""
        return {
            'source': str(self.source) if self.source else None,
            'aws': {
                'region': self.aws.region,
                'account_id': self.aws.account_id,
                'access_keys': [c.access_key for c in self.aws.credentials],
                'clusters': {
                    c.name: [{'task_id': t.task_id, 'containers': [x.name for x in t.containers],
                              'enable_execute_command': t.enable_execute_command, 'last_status': t.last_status}
                             for t in c.tasks]
                    for c in self.aws.clusters
                },
                'managed_nodes': [{'id': n.node_id, 'name': n.name, 'platform_type': n.platform_type, 'ping_status': n.ping_status,
                                   'state': n.state if n.is_ec2 else None, 'resource_type': n.resource_type}
                                  for n in self.aws.managed_nodes],
                'session_documents': ([PREFERENCES_DOCUMENT] if self.aws.session_preferences is not None else [])
                + [d.name for d in self.aws.session_documents],
            },
            'alicloud': {
                'region': self.alicloud.region,
                'access_keys': [c.access_key_id for c in self.alicloud.credentials],
                'container_groups': [{'id': g.group_id, 'name': g.name, 'region': g.region, 'status': g.status,
                                      'containers': [c.name for c in g.containers]} for g in self.alicloud.container_groups],
                'instances': [{'id': i.instance_id, 'name': i.name, 'region': i.region, 'status': i.status,
                               'os_type': i.os_type, 'cloud_assistant': i.cloud_assistant.online}
                              for i in self.alicloud.instances],
            },
        }


# --------------------------------------------------------------------------- loading helpers


def _digest(*parts: object) -> str:
    """A stable hex digest, so generated ids are the same on every load of the same world."""
    return hashlib.sha256('/'.join(str(p) for p in parts).encode()).hexdigest()


def _check_keys(data: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WorldError(f'{where}: expected a mapping, got {type(data).__name__}')
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise WorldError(f'{where}: unknown key(s) {", ".join(unknown)}; allowed: {", ".join(sorted(allowed))}')
    return data


def _choice(value: str, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise WorldError(f'{where}: {value!r} is not one of {", ".join(allowed)}')
    return value


def _tags(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WorldError(f'{where}: tags must be a mapping of key to value')
    return {str(k): '' if v is None else str(v) for k, v in value.items()}


def expand_generators(items: Any, where: str) -> list[dict[str, Any]]:
    """Expand generator entries: ``count: N`` with ``<key>_pattern`` strings formatted with ``index``.

    ``{count: 3, start: 1, id_pattern: "i-fleet{index:04d}", name_pattern: "fleet-{index}"}`` becomes three
    entries with ``id`` i-fleet0001..0003 and ``name`` fleet-1..3; every other key is copied as is.
    """
    if items is None:
        return []
    if not isinstance(items, list):
        raise WorldError(f'{where}: expected a list')
    out: list[dict[str, Any]] = []
    for pos, item in enumerate(items):
        if not isinstance(item, dict):
            raise WorldError(f'{where}[{pos}]: expected a mapping')
        if 'count' not in item:
            if any(k.endswith('_pattern') for k in item):
                raise WorldError(f'{where}[{pos}]: *_pattern keys need a count')
            out.append(item)
            continue
        count, start = item['count'], item.get('start', 1)
        if not isinstance(count, int) or count < 0 or not isinstance(start, int):
            raise WorldError(f'{where}[{pos}]: count and start must be non-negative integers')
        template = {k: v for k, v in item.items() if k not in ('count', 'start')}
        for index in range(start, start + count):
            entry = copy.deepcopy({k: v for k, v in template.items() if not k.endswith('_pattern')})
            for key, pattern in template.items():
                if key.endswith('_pattern'):
                    try:
                        entry[key[:-len('_pattern')]] = str(pattern).format(index=index)
                    except (KeyError, IndexError, ValueError) as exc:
                        raise WorldError(f'{where}[{pos}]: bad {key} {pattern!r}: {exc}') from exc
            entry['_index'] = index
            out.append(entry)
    return out


def _ip_for(network: str, position: int) -> str:
    """Hand out private addresses in a network in world order, skipping the network's first hosts."""
    net = ipaddress.ip_network(network)
    return str(net.network_address + 10 + position)


# --------------------------------------------------------------------------- AWS section

_AWS_KEYS = {'region', 'account_id', 'credentials', 'clusters', 'exec', 'vpc_endpoints', 'managed_nodes', 'session_preferences',
             'session_documents', 'ssm'}
_EXEC_KEYS = {'session_limit', 'token_ttl_seconds', 'idle_timeout_seconds', 'agent_start_ms', 'output_delay_ms', 'resumable'}
_AWS_CRED_KEYS = {'access_key', 'secret_key', 'session_token', 'principal', 'deny', 'tags'}
_CLUSTER_KEYS = {'name', 'tags', 'status', 'kms_key_id', 'container_insights', 'services', 'tasks', 'exec_logging'}
_TASK_KEYS = {'id', 'family', 'revision', 'service', 'launch_type', 'platform_version', 'enable_execute_command',
              'last_status', 'desired_status', 'tags', 'started_by', 'availability_zone', 'cpu', 'memory', 'containers', '_index',
              'task_role_arn', 'task_role_permissions_ok', 'public_ip', 'vpc_id', 'ecs_agent_version'}
_ECS_CONTAINER_KEYS = {'name', 'image', 'last_status', 'agent_status', 'runtime_id', 'cpu', 'memory', 'become_password'}


def _load_aws(data: dict[str, Any], now: datetime.datetime) -> AwsWorld:
    data = _check_keys(data, _AWS_KEYS, 'aws')
    region = str(data.get('region', 'us-east-1'))
    account = str(data.get('account_id', '123456789012'))
    creds = []
    for pos, raw in enumerate(data.get('credentials') or []):
        raw = _check_keys(raw, _AWS_CRED_KEYS, f'aws.credentials[{pos}]')
        if not raw.get('access_key') or not raw.get('secret_key'):
            raise WorldError(f'aws.credentials[{pos}]: access_key and secret_key are required')
        creds.append(AwsCredential(
            access_key=str(raw['access_key']), secret_key=str(raw['secret_key']),
            session_token=str(raw['session_token']) if raw.get('session_token') else None,
            principal=str(raw.get('principal') or f'arn:aws:iam::{account}:user/emulator'),
            deny=tuple(str(a) for a in raw.get('deny') or ()),
            tags=_tags(raw.get('tags'), f'aws.credentials[{pos}]'),
        ))
    clusters = [_load_cluster(raw, f'aws.clusters[{pos}]', region, account, now)
                for pos, raw in enumerate(expand_generators(data.get('clusters'), 'aws.clusters'))]
    names = [c.name for c in clusters]
    if len(names) != len(set(names)):
        raise WorldError('aws.clusters: cluster names must be unique')
    endpoints = []
    for pos, raw in enumerate(data.get('vpc_endpoints') or []):
        raw = _check_keys(raw, {'vpc_id', 'service_name'}, f'aws.vpc_endpoints[{pos}]')
        endpoints.append((str(raw.get('vpc_id', 'vpc-emulator0001')), str(raw.get('service_name', f'com.amazonaws.{region}.ssmmessages'))))
    nodes = [_load_managed_node(raw, f'aws.managed_nodes[{pos}]', region, pos, now)
             for pos, raw in enumerate(expand_generators(data.get('managed_nodes'), 'aws.managed_nodes'))]
    node_ids = [n.node_id for n in nodes]
    if len(node_ids) != len(set(node_ids)):
        raise WorldError('aws.managed_nodes: duplicate node ids')
    preferences = None
    if data.get('session_preferences') is not None:
        preferences = SessionInputs(_session_inputs(data['session_preferences'], 'aws.session_preferences', region, account))
    documents = [_load_session_document(raw, f'aws.session_documents[{pos}]', region, account, now)
                 for pos, raw in enumerate(data.get('session_documents') or [])]
    if len({d.name for d in documents}) != len(documents):
        raise WorldError('aws.session_documents: document names must be unique')
    return AwsWorld(region=region, account_id=account, credentials=creds, clusters=clusters,
                    exec_settings=_load_exec_settings(data.get('exec') or {}), vpc_endpoints=endpoints,
                    managed_nodes=nodes, session_preferences=preferences, session_documents=documents,
                    ssm=_load_ssm_settings(data.get('ssm') or {}))


def _load_exec_settings(raw: Any) -> EcsExecSettings:
    raw = _check_keys(raw, _EXEC_KEYS, 'aws.exec')
    settings = EcsExecSettings()
    for key, value in raw.items():
        kind = type(getattr(settings, key))
        if kind is bool:
            if not isinstance(value, bool):
                raise WorldError(f'aws.exec.{key}: expected true or false, got {value!r}')
            setattr(settings, key, value)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (kind is int and not isinstance(value, int)):
            raise WorldError(f'aws.exec.{key}: expected a non-negative {"integer" if kind is int else "number"}, got {value!r}')
        setattr(settings, key, kind(value))
    if settings.session_limit < 1:
        raise WorldError('aws.exec.session_limit: must be at least 1')
    return settings


def _load_cluster(raw: dict[str, Any], where: str, region: str, account: str, now: datetime.datetime) -> EcsCluster:
    raw = _check_keys({k: v for k, v in raw.items() if k != '_index'}, _CLUSTER_KEYS, where)
    name = raw.get('name')
    if not name:
        raise WorldError(f'{where}: name is required')
    cluster = EcsCluster(
        name=str(name), arn=f'arn:aws:ecs:{region}:{account}:cluster/{name}', tasks=[],
        services=[str(s) for s in raw.get('services') or []], tags=_tags(raw.get('tags'), where),
        status=str(raw.get('status', 'ACTIVE')), kms_key_id=raw.get('kms_key_id'),
        container_insights=str(raw.get('container_insights', 'disabled')),
        exec_logging=_choice(str(raw.get('exec_logging', 'DEFAULT')), ('DEFAULT', 'NONE', 'OVERRIDE'), f'{where}.exec_logging'),
    )
    seen: set[str] = set()
    for pos, traw in enumerate(expand_generators(raw.get('tasks'), f'{where}.tasks')):
        task = _load_task(traw, f'{where}.tasks[{pos}]', cluster, region, account, now - datetime.timedelta(minutes=30 - pos % 30))
        if task.task_id in seen:
            raise WorldError(f'{where}: duplicate task id {task.task_id}')
        seen.add(task.task_id)
        cluster.tasks.append(task)
        if task.service and task.service not in cluster.services:
            cluster.services.append(task.service)
    return cluster


def _load_task(raw: dict[str, Any], where: str, cluster: EcsCluster, region: str, account: str, created: datetime.datetime) -> EcsTask:
    raw = _check_keys(raw, _TASK_KEYS, where)
    family = str(raw.get('family') or 'task')
    task_id = str(raw.get('id') or _digest(cluster.name, family, raw.get('_index', len(cluster.tasks)))[:32])
    launch_type = _choice(str(raw.get('launch_type', 'FARGATE')), ECS_LAUNCH_TYPES, f'{where}.launch_type')
    task = EcsTask(
        task_id=task_id, cluster=cluster.name, family=family, revision=int(raw.get('revision', 1)), containers=[],
        launch_type=launch_type,
        platform_version=str(raw.get('platform_version', '1.4.0')) if launch_type == 'FARGATE' else None,
        service=raw.get('service'), started_by=raw.get('started_by'),
        enable_execute_command=bool(raw.get('enable_execute_command', True)),
        last_status=_choice(str(raw.get('last_status', 'RUNNING')), ECS_TASK_STATUSES, f'{where}.last_status'),
        desired_status=_choice(str(raw.get('desired_status', 'RUNNING')), ('RUNNING', 'PENDING', 'STOPPED'), f'{where}.desired_status'),
        availability_zone=str(raw.get('availability_zone', f'{region}a')),
        cpu=str(raw.get('cpu', '256')), memory=str(raw.get('memory', '512')),
        tags=_tags(raw.get('tags'), where), created_at=created,
        arn=f'arn:aws:ecs:{region}:{account}:task/{cluster.name}/{task_id}',
        task_definition_arn=f'arn:aws:ecs:{region}:{account}:task-definition/{family}:{int(raw.get("revision", 1))}',
        task_role_arn=(str(raw['task_role_arn']) if raw.get('task_role_arn') else None) if 'task_role_arn' in raw
        else f'arn:aws:iam::{account}:role/{family}-task-role',
        task_role_permissions_ok=bool(raw.get('task_role_permissions_ok', True)),
        public_ip=str(raw['public_ip']) if raw.get('public_ip') else None, vpc_id=str(raw.get('vpc_id', 'vpc-emulator0001')),
        ecs_agent_version=str(raw.get('ecs_agent_version', '1.89.0')),
    )
    if task.service and not task.started_by:
        task.started_by = 'ecs-svc/' + _digest(cluster.name, task.service)[:19]
    containers = raw.get('containers') or [{'name': family}]
    for pos, craw in enumerate(containers):
        craw = _check_keys(craw, _ECS_CONTAINER_KEYS, f'{where}.containers[{pos}]')
        if not craw.get('name'):
            raise WorldError(f'{where}.containers[{pos}]: name is required')
        cname = str(craw['name'])
        # The runtime id is what ECS Exec targets (ecs:<cluster>_<task>_<runtimeId>); Fargate uses
        # "<task id>-<number>", the EC2 launch type the Docker container id.
        if launch_type == 'FARGATE':
            default_runtime = f'{task_id}-{int(_digest(task_id, cname)[:8], 16)}'
        else:
            default_runtime = _digest('docker', task_id, cname)[:64]
        container_uuid = _digest('uuid', task_id, cname)
        container_uuid = '-'.join((container_uuid[:8], container_uuid[8:12], container_uuid[12:16], container_uuid[16:20], container_uuid[20:32]))
        task.containers.append(EcsContainer(
            name=cname, image=str(craw.get('image', 'public.ecr.aws/docker/library/busybox:latest')),
            runtime_id=str(craw.get('runtime_id') or default_runtime), container_uuid=container_uuid,
            last_status=_choice(str(craw.get('last_status', task.last_status)), ECS_TASK_STATUSES, f'{where}.containers[{pos}].last_status'),
            agent_status=_choice(str(craw.get('agent_status', 'RUNNING')), ECS_AGENT_STATUSES, f'{where}.containers[{pos}].agent_status'),
            cpu=str(craw.get('cpu', '0')), memory=str(craw['memory']) if craw.get('memory') is not None else None,
            arn=f'arn:aws:ecs:{region}:{account}:container/{cluster.name}/{task_id}/{container_uuid}',
            become_password=str(craw['become_password']) if craw.get('become_password') is not None else None,
        ))
    if len({c.name for c in task.containers}) != len(task.containers):
        raise WorldError(f'{where}: container names must be unique within a task')
    return task


# --------------------------------------------------------------------------- AWS: Systems Manager

_NODE_KEYS = {'id', 'name', 'resource_type', 'tags', 'platform_type', 'platform_name', 'platform_version', 'ping_status',
              'agent_version', 'state', 'computer_name', 'ip_address', 'instance_type', 'availability_zone', 'vpc_id', 'subnet_id',
              'image_id', 'iam_role', 'activation_id', 'last_ping_age', 'shell_profile', 'users', 'become_password', '_index'}
_SSM_SETTING_KEYS = {'latest_agent_version', 'token_ttl_seconds', 'agent_start_ms', 'output_delay_ms', 'idle_timeout_seconds',
                     'invocation_visible_ms', 'delivery_timeout_seconds'}
_DOCUMENT_KEYS = {'name', 'content', 'tags'}
_DOCUMENT_CONTENT_KEYS = {'schemaVersion', 'description', 'sessionType', 'inputs', 'parameters', 'properties'}
# Name prefixes AWS keeps for its own documents, in any case (SSM user guide, "Creating SSM document content": aws,
# amazon, amzn), and the Name pattern (botocore ssm service-2.json, shape DocumentName).
_RESERVED_DOCUMENT_PREFIXES = ('aws', 'amazon', 'amzn')
DOCUMENT_NAME_PATTERN = re.compile(r'^[a-zA-Z0-9_\-.]{3,128}$')
_PLATFORM_DEFAULTS = {
    'Linux': ('Amazon Linux', '2023'),
    'Windows': ('Microsoft Windows Server 2022 Datacenter', '10.0.20348'),
    'MacOS': ('macOS', '14.5'),
}
_KMS_KEY_ID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^mrk-[0-9a-f]{32}$')
_KMS_KEY_ARN = re.compile(r'^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(\S+)$')


def _load_managed_node(raw: dict[str, Any], where: str, region: str, pos: int, now: datetime.datetime) -> ManagedNode:
    raw = _check_keys(raw, _NODE_KEYS, where)
    index = raw.get('_index', pos)
    resource_type = raw.get('resource_type')
    node_id = raw.get('id')
    if node_id is None:
        kind = _choice(str(resource_type or 'EC2Instance'), SSM_RESOURCE_TYPES, f'{where}.resource_type')
        prefix = 'i-' if kind == 'EC2Instance' else 'mi-'
        node_id = prefix + _digest('ssm-node', region, raw.get('name') or '', index)[:17]
    node_id = str(node_id)
    if not (EC2_ID_PATTERN.match(node_id) or HYBRID_ID_PATTERN.match(node_id)):
        raise WorldError(f'{where}.id: {node_id!r} is neither an EC2 instance id (i- and 17 hex digits) nor a hybrid node id '
                         '(mi- and 17 hex digits)')
    is_ec2 = node_id.startswith('i-')
    if resource_type is not None and resource_type != ('EC2Instance' if is_ec2 else 'ManagedInstance'):
        raise WorldError(f'{where}.resource_type: {resource_type!r} does not match the id {node_id} '
                         '(i-: EC2Instance, mi-: ManagedInstance)')
    platform_type = _choice(str(raw.get('platform_type', 'Linux')), SSM_PLATFORM_TYPES, f'{where}.platform_type')
    default_name, default_version = _PLATFORM_DEFAULTS[platform_type]
    tags = _tags(raw.get('tags'), where)
    name = raw.get('name')
    if is_ec2:
        # An EC2 instance's name is its Name tag: the two must agree.
        if name is not None and tags.setdefault('Name', str(name)) != str(name):
            raise WorldError(f'{where}: name {name!r} and the Name tag {tags["Name"]!r} differ')
        name = tags.get('Name')
    state = _choice(str(raw.get('state', 'running')), tuple(EC2_STATE_CODES), f'{where}.state')
    if not is_ec2 and 'state' in raw:
        raise WorldError(f'{where}.state: only EC2 instances (i- ids) have an instance state')
    ping_status = _choice(str(raw.get('ping_status', 'Online' if state == 'running' else 'ConnectionLost')), SSM_PING_STATUSES,
                          f'{where}.ping_status')
    if ping_status == 'Online' and state != 'running':
        raise WorldError(f'{where}: an instance in state {state} cannot have an Online agent')
    agent_version = str(raw.get('agent_version', SSM_DEFAULT_AGENT_VERSION))
    if not AGENT_VERSION_PATTERN.match(agent_version):
        raise WorldError(f'{where}.agent_version: {agent_version!r} is not a version such as 3.3.1802.0')
    network = '172.31.0.0/16' if is_ec2 else '192.168.10.0/24'
    ip_address = str(raw.get('ip_address') or _ip_for(network, pos))
    if is_ec2:
        # EC2's private DNS name, which the agent reports as the computer name (us-east-1 has its own domain).
        domain = 'ec2.internal' if region == 'us-east-1' else f'{region}.compute.internal'
        default_host = f'ip-{ip_address.replace(".", "-")}.{domain}'
    else:
        default_host = str(name or node_id)
    users = raw.get('users', ['ec2-user'] if is_ec2 and platform_type == 'Linux' else [])
    if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
        raise WorldError(f'{where}.users: expected a list of user names')
    last_ping_age = raw.get('last_ping_age', 0 if ping_status == 'Online' else 86400)
    if isinstance(last_ping_age, bool) or not isinstance(last_ping_age, int) or last_ping_age < 0:
        raise WorldError(f'{where}.last_ping_age: expected a non-negative integer of seconds')
    activation_id = raw.get('activation_id')
    if activation_id is None and not is_ec2:
        digest = _digest('activation', node_id)
        activation_id = '-'.join((digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32]))
    return ManagedNode(
        node_id=node_id, name=str(name) if name is not None else None, platform_type=platform_type,
        platform_name=str(raw.get('platform_name', default_name)), platform_version=str(raw.get('platform_version', default_version)),
        ping_status=ping_status, agent_version=agent_version, computer_name=str(raw.get('computer_name') or default_host),
        ip_address=ip_address, tags=tags, state=state, instance_type=str(raw.get('instance_type', 't3.micro')),
        availability_zone=str(raw.get('availability_zone', f'{region}a')), vpc_id=str(raw.get('vpc_id', 'vpc-emulator0001')),
        subnet_id=str(raw.get('subnet_id', 'subnet-emulator0001')), image_id=str(raw.get('image_id', 'ami-0e0a1b2c3d4e5f601')),
        iam_role=str(raw['iam_role']) if raw.get('iam_role') else (None if is_ec2 else 'SSMServiceRole'),
        activation_id=str(activation_id) if activation_id else None, last_ping_age=last_ping_age,
        shell_profile=str(raw['shell_profile']) if raw.get('shell_profile') is not None else None,
        users=tuple(users), become_password=str(raw['become_password']) if raw.get('become_password') is not None else None,
        launch_time=now - datetime.timedelta(days=1),
    )


def _kms_key_arn(value: str, where: str, region: str, account: str) -> str:
    """A KMS key ARN, or a key id made into the ARN of this account's key (the emulator's KMS knows keys by ARN)."""
    if not value or _KMS_KEY_ARN.match(value):
        return value
    if _KMS_KEY_ID.match(value):
        return f'arn:aws:kms:{region}:{account}:key/{value}'
    raise WorldError(f'{where}: {value!r} is neither a KMS key ARN nor a key id (aliases are not emulated)')


def _session_inputs(raw: Any, where: str, region: str, account: str) -> dict[str, Any]:
    """Session preferences (a Standard_Stream document's inputs), checked and completed with the defaults."""
    raw = _check_keys(raw, set(SESSION_INPUT_DEFAULTS), where)
    inputs = copy.deepcopy(SESSION_INPUT_DEFAULTS)
    for key, value in raw.items():
        if key in _BOOL_INPUTS:
            if not isinstance(value, bool):
                raise WorldError(f'{where}.{key}: expected true or false, got {value!r}')
        elif key in _STR_INPUTS:
            value = '' if value is None else str(value)
        elif key == 'kmsKeyId':
            value = _kms_key_arn('' if value is None else str(value), f'{where}.kmsKeyId', region, account)
        elif key == 'idleSessionTimeout':
            # Session Manager preferences: 1 to 60 minutes, a string in the document.
            if isinstance(value, bool) or not str(value).isdigit() or not 1 <= int(value) <= 60:
                raise WorldError(f'{where}.idleSessionTimeout: expected 1 to 60 (minutes), got {value!r}')
            value = str(int(value))
        elif key == 'maxSessionDuration':
            if value not in (None, '') and (isinstance(value, bool) or not str(value).isdigit() or not 1 <= int(value) <= 1440):
                raise WorldError(f'{where}.maxSessionDuration: expected 1 to 1440 (minutes) or empty, got {value!r}')
            value = '' if value in (None, '') else str(int(value))
        elif key == 'shellProfile':
            profile = _check_keys(value or {}, {'linux', 'windows'}, f'{where}.shellProfile')
            value = {'windows': str(profile.get('windows') or ''), 'linux': str(profile.get('linux') or '')}
        inputs[key] = value
    return inputs


def _load_session_document(raw: Any, where: str, region: str, account: str, now: datetime.datetime) -> SessionDocument:
    raw = _check_keys(raw, _DOCUMENT_KEYS, where)
    name = str(raw.get('name') or '')
    if not DOCUMENT_NAME_PATTERN.match(name):
        raise WorldError(f'{where}.name: {name!r} must be 3 to 128 of a-z, A-Z, 0-9, _, - and .')
    if name == PREFERENCES_DOCUMENT or name.lower().startswith(_RESERVED_DOCUMENT_PREFIXES):
        raise WorldError(f'{where}.name: {name!r} is reserved (set aws.session_preferences for {PREFERENCES_DOCUMENT}; '
                         'names starting with AWS, Amazon or amzn are AWS\'s)')
    content = _check_keys(raw.get('content'), _DOCUMENT_CONTENT_KEYS, f'{where}.content')
    session_type = _choice(str(content.get('sessionType')), SESSION_TYPES, f'{where}.content.sessionType')
    document: dict[str, Any] = {'schemaVersion': str(content.get('schemaVersion', '1.0')),
                                'description': str(content.get('description', '')), 'sessionType': session_type}
    if session_type == 'Standard_Stream':
        if content.get('parameters') or content.get('properties'):
            raise WorldError(f'{where}.content: a Standard_Stream document has inputs, not parameters or properties')
        document['inputs'] = _session_inputs(content.get('inputs') or {}, f'{where}.content.inputs', region, account)
    else:
        if content.get('inputs'):
            # The agent's Run As, profile and KMS settings then come from the account's preferences (see ssm_sessions).
            raise WorldError(f'{where}.content: inputs are for Standard_Stream documents; this emulator applies the '
                             'account preferences to InteractiveCommands sessions')
        parameters = content.get('parameters') or {}
        if not isinstance(parameters, dict) or not all(isinstance(v, dict) for v in parameters.values()):
            raise WorldError(f'{where}.content.parameters: expected a mapping of name to {{type, description, default}}')
        for pname, spec in parameters.items():
            _check_keys(spec, {'type', 'description', 'default', 'allowedPattern', 'allowedValues'},
                        f'{where}.content.parameters.{pname}')
            _choice(str(spec.get('type', 'String')), ('String', 'StringList'), f'{where}.content.parameters.{pname}.type')
        properties = _check_keys(content.get('properties') or {}, {'linux', 'windows', 'macos'}, f'{where}.content.properties')
        if not isinstance((properties.get('linux') or {}).get('commands', ''), str):
            raise WorldError(f'{where}.content.properties.linux.commands: expected a string')
        document['parameters'] = copy.deepcopy(parameters)
        document['properties'] = copy.deepcopy(properties)
    return SessionDocument(name=name, owner=account, content=document, created=now - datetime.timedelta(days=7),
                           tags=_tags(raw.get('tags'), where))


def _load_ssm_settings(raw: Any) -> SsmSettings:
    raw = _check_keys(raw, _SSM_SETTING_KEYS, 'aws.ssm')
    settings = SsmSettings()
    for key, value in raw.items():
        if key == 'latest_agent_version':
            if not AGENT_VERSION_PATTERN.match(str(value)):
                raise WorldError(f'aws.ssm.latest_agent_version: {value!r} is not a version such as 3.3.1802.0')
            settings.latest_agent_version = str(value)
            continue
        if key in ('idle_timeout_seconds', 'delivery_timeout_seconds') and value is None:
            continue
        integer = key in ('agent_start_ms', 'output_delay_ms', 'invocation_visible_ms')
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (integer and not isinstance(value, int)):
            raise WorldError(f'aws.ssm.{key}: expected a non-negative {"integer" if integer else "number"}, got {value!r}')
        setattr(settings, key, int(value) if integer else float(value))
    return settings


# --------------------------------------------------------------------------- Alibaba section

_ALI_KEYS = {'region', 'credentials', 'container_groups', 'instances', 'exec', 'assist'}
_ECI_EXEC_KEYS = {'token_ttl_seconds', 'sync_timeout_seconds', 'stream'}
_ASSIST_SETTING_KEYS = {'log_quota', 'agent_min_quota', 'stop_started'}
_ALI_CRED_KEYS = {'access_key_id', 'access_key_secret', 'security_token', 'expired'}
_GROUP_KEYS = {'id', 'name', 'region', 'zone', 'status', 'tags', 'containers', 'vpc_id', 'vswitch_id', 'security_group_id',
               'intranet_ip', 'cpu', 'memory', 'instance_type', 'restart_policy', 'exec_stream', '_index'}
_ECI_CONTAINER_KEYS = {'name', 'image', 'state', 'ready', 'restart_count', 'commands', 'args', 'cpu', 'memory', 'become_password'}
_INSTANCE_KEYS = {'id', 'name', 'region', 'zone', 'status', 'os_type', 'os_name', 'instance_type', 'cpu', 'memory', 'vpc_id',
                  'vswitch_id', 'private_ip', 'hostname', 'image_id', 'security_group_id', 'tags', 'cloud_assistant', 'become_password',
                  '_index'}
_ASSISTANT_KEYS = {'online', 'version', 'session_manager', 'active_task_count', 'invocation_count', 'last_heartbeat_age'}


def _load_alicloud(data: dict[str, Any], now: datetime.datetime) -> AliWorld:
    data = _check_keys(data, _ALI_KEYS, 'alicloud')
    region = str(data.get('region', 'cn-hangzhou'))
    creds = []
    for pos, raw in enumerate(data.get('credentials') or []):
        raw = _check_keys(raw, _ALI_CRED_KEYS, f'alicloud.credentials[{pos}]')
        if not raw.get('access_key_id') or not raw.get('access_key_secret'):
            raise WorldError(f'alicloud.credentials[{pos}]: access_key_id and access_key_secret are required')
        creds.append(AliCredential(
            access_key_id=str(raw['access_key_id']), access_key_secret=str(raw['access_key_secret']),
            security_token=str(raw['security_token']) if raw.get('security_token') else None,
            expired=bool(raw.get('expired', False)),
        ))
    groups = [_load_group(raw, f'alicloud.container_groups[{pos}]', region, pos, now)
              for pos, raw in enumerate(expand_generators(data.get('container_groups'), 'alicloud.container_groups'))]
    instances = [_load_instance(raw, f'alicloud.instances[{pos}]', region, pos, now)
                 for pos, raw in enumerate(expand_generators(data.get('instances'), 'alicloud.instances'))]
    for kind, ids in (('container group', [g.group_id for g in groups]), ('instance', [i.instance_id for i in instances])):
        if len(ids) != len(set(ids)):
            raise WorldError(f'alicloud: duplicate {kind} ids')
    return AliWorld(region=region, credentials=creds, container_groups=groups, instances=instances,
                    eci_exec=_load_eci_exec(data.get('exec') or {}), assist=_load_assist_settings(data.get('assist') or {}))


def _load_assist_settings(raw: Any) -> AssistSettings:
    raw = _check_keys(raw, _ASSIST_SETTING_KEYS, 'alicloud.assist')
    settings = AssistSettings()
    for key in ('log_quota', 'agent_min_quota'):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise WorldError(f'alicloud.assist.{key}: expected a non-negative integer, got {value!r}')
            setattr(settings, key, value)
    if settings.output_quota < 1024:
        raise WorldError(f'alicloud.assist: the output quota max(log_quota, agent_min_quota) is {settings.output_quota}; '
                         'it must be at least 1024 bytes')
    if 'stop_started' in raw:
        settings.stop_started = _choice(str(raw['stop_started']), STOP_STARTED_MODES, 'alicloud.assist.stop_started')
    return settings


def _load_eci_exec(raw: Any) -> EciExecSettings:
    raw = _check_keys(raw, _ECI_EXEC_KEYS, 'alicloud.exec')
    settings = EciExecSettings()
    for key, value in raw.items():
        if key == 'stream':
            settings.stream = _choice(str(value), ECI_STREAM_VARIANTS, 'alicloud.exec.stream')
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise WorldError(f'alicloud.exec.{key}: expected a positive number, got {value!r}')
        setattr(settings, key, float(value))
    return settings


def _load_group(raw: dict[str, Any], where: str, region: str, pos: int, now: datetime.datetime) -> ContainerGroup:
    raw = _check_keys(raw, _GROUP_KEYS, where)
    name = str(raw.get('name') or f'group-{pos + 1}')
    group_region = str(raw.get('region', region))
    status = _choice(str(raw.get('status', 'Running')), ECI_STATUSES, f'{where}.status')
    group = ContainerGroup(
        group_id=str(raw.get('id') or 'eci-' + _digest('eci', group_region, name)[:20]), name=name,
        region=group_region, zone=str(raw.get('zone', f'{group_region}-h')), status=status, containers=[],
        tags=_tags(raw.get('tags'), where), vpc_id=str(raw.get('vpc_id', 'vpc-emulator0001')),
        vswitch_id=str(raw.get('vswitch_id', 'vsw-emulator0001')), security_group_id=str(raw.get('security_group_id', 'sg-emulator0001')),
        intranet_ip=str(raw.get('intranet_ip') or _ip_for('172.16.0.0/16', pos)),
        cpu=float(raw.get('cpu', 1.0)), memory=float(raw.get('memory', 2.0)), instance_type=str(raw.get('instance_type', '')),
        restart_policy=str(raw.get('restart_policy', 'Always')), created_at=now - datetime.timedelta(hours=1),
        exec_stream=_choice(str(raw['exec_stream']), ECI_STREAM_VARIANTS, f'{where}.exec_stream') if raw.get('exec_stream') else None,
    )
    # A group's containers follow its phase unless the world says otherwise.
    default_state = {'Running': 'Running', 'Succeeded': 'Terminated', 'Failed': 'Terminated'}.get(status, 'Waiting')
    for cpos, craw in enumerate(raw.get('containers') or [{'name': name}]):
        craw = _check_keys(craw, _ECI_CONTAINER_KEYS, f'{where}.containers[{cpos}]')
        if not craw.get('name'):
            raise WorldError(f'{where}.containers[{cpos}]: name is required')
        state = str(craw.get('state', default_state))
        group.containers.append(EciContainer(
            name=str(craw['name']), image=str(craw.get('image', 'registry.cn-hangzhou.aliyuncs.com/library/busybox:latest')),
            state=state, ready=bool(craw.get('ready', state == 'Running')), restart_count=int(craw.get('restart_count', 0)),
            commands=[str(c) for c in craw.get('commands') or []], args=[str(a) for a in craw.get('args') or []],
            cpu=float(craw.get('cpu', 0.0)), memory=float(craw.get('memory', 0.0)),
            become_password=str(craw['become_password']) if craw.get('become_password') is not None else None,
        ))
    if len({c.name for c in group.containers}) != len(group.containers):
        raise WorldError(f'{where}: container names must be unique within a group')
    return group


def _load_instance(raw: dict[str, Any], where: str, region: str, pos: int, now: datetime.datetime) -> EcsInstance:
    raw = _check_keys(raw, _INSTANCE_KEYS, where)
    name = str(raw.get('name') or f'instance-{pos + 1}')
    inst_region = str(raw.get('region', region))
    os_type = _choice(str(raw.get('os_type', 'linux')).lower(), OS_TYPES, f'{where}.os_type')
    assistant_raw = _check_keys(raw.get('cloud_assistant') or {}, _ASSISTANT_KEYS, f'{where}.cloud_assistant')
    assistant = CloudAssistant(
        online=bool(assistant_raw.get('online', True)), version=str(assistant_raw.get('version', '2.2.3.857')),
        session_manager=bool(assistant_raw.get('session_manager', True)),
        active_task_count=int(assistant_raw.get('active_task_count', 0)),
        invocation_count=int(assistant_raw.get('invocation_count', 0)),
        last_heartbeat_age=int(assistant_raw.get('last_heartbeat_age', 0 if assistant_raw.get('online', True) else 86400)),
    )
    instance_id = str(raw.get('id') or 'i-' + _digest('ecs', inst_region, name)[:20])
    default_os = 'Windows Server 2022 Datacenter 64bit' if os_type == 'windows' else 'Alibaba Cloud Linux 3.2104 LTS 64 bit'
    default_image = 'win2022_21H2_x64_dtc_en-us_40G_alibase_20240101.vhd' if os_type == 'windows' else 'aliyun_3_x64_20G_alibase_20240101.vhd'
    return EcsInstance(
        instance_id=instance_id, name=name, region=inst_region, zone=str(raw.get('zone', f'{inst_region}-h')),
        status=_choice(str(raw.get('status', 'Running')), ECS_INSTANCE_STATUSES, f'{where}.status'),
        os_type=os_type, os_name=str(raw.get('os_name', default_os)), instance_type=str(raw.get('instance_type', 'ecs.g7.large')),
        cpu=int(raw.get('cpu', 2)), memory=int(raw.get('memory', 8192)), vpc_id=str(raw.get('vpc_id', 'vpc-emulator0001')),
        vswitch_id=str(raw.get('vswitch_id', 'vsw-emulator0001')), private_ip=str(raw.get('private_ip') or _ip_for('10.0.0.0/8', pos)),
        hostname=str(raw.get('hostname') or name), image_id=str(raw.get('image_id', default_image)),
        security_group_id=str(raw.get('security_group_id', 'sg-emulator0001')), cloud_assistant=assistant,
        tags=_tags(raw.get('tags'), where), created_at=now - datetime.timedelta(days=1),
        become_password=str(raw['become_password']) if raw.get('become_password') is not None else None,
    )


# --------------------------------------------------------------------------- entry points

_TOP_KEYS = {'aws', 'alicloud', 'faults'}


def parse_world(data: Any, source: Path | None = None) -> World:
    """Build a :class:`World` from already-parsed YAML data."""
    data = _check_keys(data if data is not None else {}, _TOP_KEYS, 'world')
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    faults = data.get('faults') or []
    if not isinstance(faults, list):
        raise WorldError('faults: expected a list of rules')
    return World(aws=_load_aws(data.get('aws') or {}, now), alicloud=_load_alicloud(data.get('alicloud') or {}, now),
                 faults=faults, source=source, started_at=now)


def load_world(path: str | Path | None = None) -> World:
    """Load a world file (the shipped default when ``path`` is None)."""
    world_path = Path(path) if path else DEFAULT_WORLD
    try:
        data = yaml.safe_load(world_path.read_text(encoding='utf-8'))
    except OSError as exc:
        raise WorldError(f'cannot read world file {world_path}: {exc}') from exc
    except yaml.YAMLError as exc:
        raise WorldError(f'world file {world_path} is not valid YAML: {exc}') from exc
    return parse_world(data, world_path)
