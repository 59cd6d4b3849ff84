# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWS clients for cloudexec.core, on boto3/botocore, with amazon.aws's option names.

Credentials, region and endpoint resolve in this order: the options the user set; the legacy
environment variables amazon.aws users have in their shells (AWS_ACCESS_KEY, EC2_REGION, ...);
then boto3's own chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws, instance roles, AWS_ENDPOINT_URL_ECS,
AWS_CA_BUNDLE, ...). Signing, retries and HTTP are botocore's; we only map its errors.
"""

from __future__ import annotations

import os
import traceback
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import auth_options
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.version import USER_AGENT

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None

# The auth options live apart from boto3 so connection plugins can name them without importing it.
AWS_AUTH_ARGSPEC = auth_options.AWS_AUTH_ARGSPEC

# amazon.aws still honours these older names; boto3 itself does not.
_LEGACY_ENV = {
    'access_key': ('AWS_ACCESS_KEY', 'EC2_ACCESS_KEY'),
    'secret_key': ('AWS_SECRET_KEY', 'EC2_SECRET_KEY'),
    'session_token': ('AWS_SECURITY_TOKEN', 'EC2_SECURITY_TOKEN'),
    'region': ('EC2_REGION',),
}

# What to do about each AWS error code we know; anything else keeps AWS's own message.
AWS_REMEDIES = {
    'UnrecognizedClientException': 'The access key is not known to AWS: check access_key/secret_key, profile or the AWS_* '
                                   'environment variables, and that the key is active',
    'InvalidClientTokenId': 'The access key is not known to AWS: check access_key, profile or AWS_ACCESS_KEY_ID',
    'InvalidSignatureException': 'The secret key does not match the access key: check secret_key (or AWS_SECRET_ACCESS_KEY) '
                                 'and that the controller clock is correct',
    'SignatureDoesNotMatch': 'The secret key does not match the access key: check secret_key and the controller clock',
    'IncompleteSignatureException': 'The request was not signed completely: check that the credentials are complete '
                                    '(access key, secret key and, for temporary credentials, session_token)',
    'MissingAuthenticationTokenException': 'The request carried no credentials: set access_key/secret_key or profile',
    'ExpiredTokenException': 'The temporary credentials have expired: refresh session_token (or the profile) and retry',
    'ExpiredToken': 'The temporary credentials have expired: refresh session_token (or the profile) and retry',
    'AccessDeniedException': 'The IAM principal may not call this action: grant it in an IAM policy '
                             '(see the collection docs for a least-privilege policy)',
    'ClusterNotFoundException': 'No such ECS cluster in this region: check the cluster name or ARN and the region',
    'InvalidParameterException': 'AWS refused a parameter: check the value named in the message',
    'TargetNotConnectedException': 'The ECS Exec agent in the container is not connected: check that the task was started '
                                   'with enableExecuteCommand, that its role allows ssmmessages:*, and that it can reach '
                                   'ssmmessages (run cloudexec.core.aws_ecs_exec_check)',
    'ThrottlingException': 'AWS throttled the calls of this account: retry later, lower forks, or raise max_attempts',
    'ServerException': 'ECS had an internal error: retry later',
    'ClientException': 'ECS refused the request: check the parameters named in the message',
    'InvalidDocument': 'No such SSM document in this account and region: check the document name',
    'InvalidParameters': 'The SSM document does not take these parameters: check its parameters',
}


@dataclass
class AwsAuth:
    """Everything needed to build AWS clients; secrets stay out of repr()."""

    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    validate_certs: bool = True
    aws_ca_bundle: str | None = None
    retry_mode: str = 'standard'
    max_attempts: int = 5

    @classmethod
    def from_options(cls, get: t.Callable[[str], t.Any], environ: t.Mapping[str, str] | None = None) -> 'AwsAuth':
        """Build from module params (params.get) or plugin options (a get_option wrapper)."""
        environ = os.environ if environ is None else environ
        values = {name: get(name) for name in AWS_AUTH_ARGSPEC}
        # Legacy variables fill the gaps, except when a profile was asked for: a profile and keys
        # together are ambiguous, and amazon.aws refuses that combination too.
        if not values.get('profile'):
            for name, env_names in _LEGACY_ENV.items():
                if values.get(name) is None:
                    values[name] = next((environ[e] for e in env_names if environ.get(e)), None)
        auth = cls(**{k: v for k, v in values.items() if v is not None})
        auth.validate()
        return auth

    def validate(self) -> None:
        """Refuse combinations boto3 would reject late or confusingly."""
        if self.profile and (self.access_key or self.secret_key):
            raise ValidationError('profile', 'it cannot be combined with access_key/secret_key',
                                  remedy='Use either a profile or explicit keys')
        if bool(self.access_key) != bool(self.secret_key):
            missing = 'secret_key' if self.access_key else 'access_key'
            raise ValidationError(missing, 'access_key and secret_key must be given together')
        if self.session_token and not self.access_key:
            raise ValidationError('session_token', 'it needs access_key and secret_key too')
        if self.max_attempts < 1:
            raise ValidationError('max_attempts', f'{self.max_attempts} is below the minimum of 1')


def require_boto3() -> None:
    """Raise a clear error when boto3/botocore are missing."""
    if not HAS_BOTO3:
        raise CloudExecError('boto3 and botocore are required on the controller', code='MissingDependency',
                             provider='cloudexec', remedy='pip install boto3 (see the collection requirements.txt)')


def aws_session(auth: AwsAuth) -> 'boto3.session.Session':
    """A boto3 session from the resolved auth; boto3's chain fills whatever is unset."""
    require_boto3()
    try:
        return boto3.session.Session(aws_access_key_id=auth.access_key, aws_secret_access_key=auth.secret_key,
                                     aws_session_token=auth.session_token, profile_name=auth.profile,
                                     region_name=auth.region)
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc) from None


def aws_client(auth: AwsAuth, service: str, session: t.Any = None, *, use_endpoint_url: bool = True,
               max_attempts: int | None = None, timeouts: tuple[float, float] | None = None) -> t.Any:
    """A botocore client for service, with our retry mode and user agent.

    endpoint_url is ECS's; other services (KMS) take boto3's own per-service settings (AWS_ENDPOINT_URL_KMS...).
    max_attempts (else auth's) and timeouts (connect, read; else botocore's 60 s each) bound a caller that retries itself.
    """
    session = session or aws_session(auth)
    if not session.region_name:
        raise ValidationError('region', 'no region is set', remedy='Set region, or AWS_REGION in the environment')
    extra: dict[str, t.Any] = {}
    if timeouts is not None:
        extra.update(connect_timeout=timeouts[0], read_timeout=timeouts[1])
    config = botocore.config.Config(
        retries={'mode': auth.retry_mode, 'total_max_attempts': max_attempts or auth.max_attempts},
        user_agent_extra=USER_AGENT,
        **extra,
    )
    verify: bool | str = (auth.aws_ca_bundle or True) if auth.validate_certs else False
    try:
        return session.client(service, endpoint_url=(auth.endpoint_url if use_endpoint_url else None) or None, verify=verify,
                              config=config)
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc) from None


def kms_data_key_provider(auth: AwsAuth) -> t.Callable[[str, dict[str, str]], tuple[bytes, bytes]]:
    """GenerateDataKey for KMS-encrypted ECS Exec sessions: (plaintext, ciphertext blob) of a 64-byte data key.

    The KMS client is made on first use: most clusters encrypt with TLS only and never ask for a key.
    """
    clients: list[t.Any] = []

    def generate(key_id: str, encryption_context: dict[str, str]) -> tuple[bytes, bytes]:
        if not clients:
            clients.append(aws_client(auth, 'kms', use_endpoint_url=False))
        try:
            response = clients[0].generate_data_key(KeyId=key_id, NumberOfBytes=64, EncryptionContext=encryption_context)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            raise aws_error(exc, 'GenerateDataKey') from None
        return response['Plaintext'], response['CiphertextBlob']

    return generate


# ResumeSession calls: (connect, read) timeouts in seconds.
RESUME_CALL_TIMEOUTS = (10.0, 20.0)


def ssm_session_resumer(auth: AwsAuth, *, ssm_endpoint: bool = False) -> t.Callable[[str], tuple[str | None, str]]:
    """SSM ResumeSession for a dropped data channel: (stream URL, token) of a new connection to the session.

    The SSM client uses the same credentials and region; its endpoint is boto3's own for SSM (AWS_ENDPOINT_URL_SSM,
    the config file, or the regional default), not endpoint_url, which is ECS's for ECS Exec; with ssm_endpoint
    (the aws_ssm connection, whose endpoint_url is SSM's) it is endpoint_url. Made on first use: most sessions
    never lose their connection. Errors keep AWS's code: throttling, 5xx and network errors are retryable; anything
    else (DoesNotExistException, AccessDeniedException, BadRequest...) means this session cannot be resumed.
    """
    clients: list[t.Any] = []

    def resume(session_id: str) -> tuple[str | None, str]:
        if not clients:
            # The session's own loop retries (with AWS's plugin's back-off): each call stays short.
            clients.append(aws_client(auth, 'ssm', use_endpoint_url=ssm_endpoint, max_attempts=2, timeouts=RESUME_CALL_TIMEOUTS))
        try:
            response = clients[0].resume_session(SessionId=session_id)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            raise aws_error(exc, 'ResumeSession') from None
        token = response.get('TokenValue')
        if not token:
            # AWS's client reads a ResumeSession answer without a token as "the session timed out" (sessionhandler.go).
            raise CloudExecError('ResumeSession returned no token: the session has timed out', code='SessionTimedOut',
                                 provider='aws', retryable=False)
        return response.get('StreamUrl') or None, token

    return resume


def aws_error(exc: BaseException, action: str | None = None) -> CloudExecError:
    """Map a botocore exception to CloudExecError, with the remedy for its code."""
    prefix = f'{action} failed: ' if action else ''
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get('Error', {})
        meta = exc.response.get('ResponseMetadata', {})
        code = error.get('Code') or 'Unknown'
        return CloudExecError(prefix + (error.get('Message') or code), code=code, provider='aws',
                              remedy=AWS_REMEDIES.get(code), status=meta.get('HTTPStatusCode'),
                              request_id=meta.get('RequestId'))
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.NoCredentialsError):
        return CloudExecError(prefix + 'no AWS credentials were found', code='NoCredentials', provider='aws',
                              remedy='Set access_key and secret_key, a profile, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; the '
                                     'aws_ecs connection also reads ansible_aws_profile or ansible_aws_access_key_id and '
                                     'ansible_aws_secret_access_key (the aws_ecs inventory passes its profile to its hosts, '
                                     'never its keys)',
                              retryable=False)
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ProfileNotFound):
        return CloudExecError(prefix + str(exc), code='ProfileNotFound', provider='aws',
                              remedy='Check profile (or AWS_PROFILE) against ~/.aws/config', retryable=False)
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.SSLError):
        return CloudExecError(prefix + 'TLS verification failed', code='SSLError', provider='aws',
                              remedy='Check aws_ca_bundle, or set validate_certs=false for a trusted test endpoint',
                              retryable=False)
    if HAS_BOTO3 and isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                                      botocore.exceptions.ReadTimeoutError)):
        return CloudExecError(prefix + str(exc), code='ConnectionError', provider='aws',
                              remedy='Check network access to the endpoint, endpoint_url and region', retryable=True)
    return CloudExecError(prefix + str(exc), code=type(exc).__name__, provider='aws', retryable=False)


def call(client: t.Any, operation: str, **kwargs: t.Any) -> dict[str, t.Any]:
    """Call one API operation, mapping botocore errors (botocore has already retried)."""
    try:
        return getattr(client, operation)(**kwargs)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, action=_action_name(client, operation)) from None


def paginate(client: t.Any, operation: str, result_key: str, **kwargs: t.Any) -> list[t.Any]:
    """All items of a paginated operation, through botocore's own paginator."""
    items: list[t.Any] = []
    try:
        for page in client.get_paginator(operation).paginate(**kwargs):
            items.extend(page.get(result_key, []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, action=_action_name(client, operation)) from None
    return items


def _action_name(client: t.Any, operation: str) -> str:
    try:
        return client.meta.method_to_api_mapping.get(operation, operation)
    except AttributeError:
        return operation
