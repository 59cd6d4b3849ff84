# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

botocore = pytest.importorskip('botocore')
from botocore.exceptions import ClientError, NoCredentialsError  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.cloudexec.core.plugins.module_utils import aws  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.errors import ValidationError  # noqa: E402  pylint: disable=wrong-import-position


def options(**values):
    return values.get


def test_explicit_options_win_over_legacy_environment():
    auth = aws.AwsAuth.from_options(options(access_key='AKIA1', secret_key='s1', region='eu-west-1'),
                                    environ={'AWS_ACCESS_KEY': 'AKIA2', 'AWS_SECRET_KEY': 's2', 'EC2_REGION': 'us-east-2'})
    assert (auth.access_key, auth.secret_key, auth.region) == ('AKIA1', 's1', 'eu-west-1')


def test_legacy_environment_fills_gaps():
    auth = aws.AwsAuth.from_options(options(), environ={'EC2_ACCESS_KEY': 'AKIA3', 'EC2_SECRET_KEY': 's3',
                                                        'AWS_SECURITY_TOKEN': 'tok', 'EC2_REGION': 'ap-south-1'})
    assert (auth.access_key, auth.secret_key, auth.session_token, auth.region) == ('AKIA3', 's3', 'tok', 'ap-south-1')


def test_profile_is_not_mixed_with_legacy_keys():
    auth = aws.AwsAuth.from_options(options(profile='dev'), environ={'AWS_ACCESS_KEY': 'AKIA2', 'AWS_SECRET_KEY': 's2'})
    assert auth.profile == 'dev' and auth.access_key is None


def test_secrets_are_not_in_repr():
    auth = aws.AwsAuth.from_options(options(access_key='AKIAVISIBLE', secret_key='very-secret', session_token='tok-secret'),
                                    environ={})
    text = repr(auth)
    assert 'AKIAVISIBLE' in text and 'very-secret' not in text and 'tok-secret' not in text


@pytest.mark.parametrize('values, parameter', [
    ({'access_key': 'AKIA'}, 'secret_key'),
    ({'secret_key': 's'}, 'access_key'),
    ({'profile': 'p', 'access_key': 'a', 'secret_key': 's'}, 'profile'),
    ({'session_token': 't'}, 'session_token'),
    ({'max_attempts': 0}, 'max_attempts'),
])
def test_bad_combinations_name_the_parameter(values, parameter):
    with pytest.raises(ValidationError) as info:
        aws.AwsAuth.from_options(options(**values), environ={})
    assert info.value.parameter == parameter
    assert parameter in str(info.value)


def test_client_error_maps_code_status_request_id_and_remedy():
    exc = ClientError({'Error': {'Code': 'InvalidSignatureException', 'Message': 'The request signature we calculated does not match'},
                       'ResponseMetadata': {'HTTPStatusCode': 400, 'RequestId': 'req-1'}}, 'ListTasks')
    err = aws.aws_error(exc, action='ListTasks')
    assert err.code == 'InvalidSignatureException'
    assert err.status == 400 and err.request_id == 'req-1' and err.provider == 'aws'
    assert 'secret_key' in err.remedy
    assert str(err).startswith('InvalidSignatureException: ListTasks failed: The request signature we calculated does not match.')
    assert not err.retryable


def test_throttling_client_error_is_retryable():
    exc = ClientError({'Error': {'Code': 'ThrottlingException', 'Message': 'Rate exceeded'},
                       'ResponseMetadata': {'HTTPStatusCode': 400}}, 'DescribeTasks')
    err = aws.aws_error(exc)
    assert err.retryable and err.throttling


def test_no_credentials_has_a_remedy():
    err = aws.aws_error(NoCredentialsError())
    assert err.code == 'NoCredentials' and 'AWS_ACCESS_KEY_ID' in err.remedy


def test_client_without_region_is_refused(monkeypatch):
    for name in ('AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_CONFIG_FILE', 'AWS_PROFILE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('AWS_CONFIG_FILE', '/nonexistent')
    auth = aws.AwsAuth(access_key='AKIA', secret_key='s')
    with pytest.raises(ValidationError) as info:
        aws.aws_client(auth, 'ecs')
    assert info.value.parameter == 'region'


def test_client_carries_retry_mode_and_user_agent():
    auth = aws.AwsAuth(access_key='AKIA', secret_key='s', region='us-east-1', retry_mode='adaptive', max_attempts=7,
                       endpoint_url='http://127.0.0.1:9')
    client = aws.aws_client(auth, 'ecs')
    assert client.meta.endpoint_url == 'http://127.0.0.1:9'
    assert client.meta.config.retries == {'mode': 'adaptive', 'total_max_attempts': 7}
    assert 'cloudexec.core/' in client.meta.config.user_agent_extra


class _FakeSSM:
    """An SSM client whose resume_session answers (or raises) what it is given."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def resume_session(self, **kwargs):
        self.calls.append(kwargs)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _resumer(monkeypatch, answer, **options):
    fake = _FakeSSM(answer)
    made = []

    def client(auth, service, session=None, *, use_endpoint_url=True, max_attempts=None, timeouts=None):
        made.append((service, use_endpoint_url, max_attempts, timeouts))
        return fake

    monkeypatch.setattr(aws, 'aws_client', client)
    return aws.ssm_session_resumer(aws.AwsAuth(region='us-east-1', endpoint_url='http://ecs.example'), **options), fake, made


def _client_error(code, status=400):
    return ClientError({'Error': {'Code': code, 'Message': f'{code} happened'}, 'ResponseMetadata': {'HTTPStatusCode': status}},
                       'ResumeSession')


def test_ssm_resumer_answers_url_and_token_from_the_ssm_endpoint(monkeypatch):
    resume, fake, made = _resumer(monkeypatch, {'SessionId': 's-1', 'TokenValue': 'tok', 'StreamUrl': 'wss://h/v1/data-channel/s-1'})
    assert resume('s-1') == ('wss://h/v1/data-channel/s-1', 'tok')
    assert resume('s-1') == ('wss://h/v1/data-channel/s-1', 'tok')
    # One client, for SSM, on boto3's own SSM endpoint (endpoint_url is ECS's).
    assert made == [('ssm', False, 2, (10.0, 20.0))] and fake.calls == [{'SessionId': 's-1'}] * 2


def test_ssm_resumer_of_the_aws_ssm_connection_uses_its_endpoint_url(monkeypatch):
    # There endpoint_url is SSM's own (the connection's StartSession went to it): ResumeSession goes there too.
    resume, _fake, made = _resumer(monkeypatch, {'SessionId': 's-1', 'TokenValue': 'tok'}, ssm_endpoint=True)
    assert resume('s-1') == (None, 'tok')
    assert made == [('ssm', True, 2, (10.0, 20.0))]


@pytest.mark.parametrize('code, status, retryable', [
    ('DoesNotExistException', 400, False), ('AccessDeniedException', 400, False), ('BadRequest', 400, False),
    ('ThrottlingException', 400, True), ('InternalServerError', 500, True),
])
def test_ssm_resumer_says_which_refusals_are_final(monkeypatch, code, status, retryable):
    resume, _fake, _made = _resumer(monkeypatch, _client_error(code, status))
    with pytest.raises(aws.CloudExecError) as caught:
        resume('s-1')
    assert caught.value.code == code and caught.value.retryable is retryable
    assert caught.value.message.startswith('ResumeSession failed: ')


def test_ssm_resumer_without_a_token_means_timed_out(monkeypatch):
    resume, _fake, _made = _resumer(monkeypatch, {'SessionId': 's-1'})
    with pytest.raises(aws.CloudExecError) as caught:
        resume('s-1')
    assert caught.value.code == 'SessionTimedOut' and not caught.value.retryable
