# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import types

import pytest

pytest.importorskip('alibabacloud_tea_openapi')
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException  # noqa: E402  pylint: disable=wrong-import-position
from darabonba.exceptions import RetryError  # noqa: E402  pylint: disable=wrong-import-position
from Tea.exceptions import UnretryableException  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.errors import ValidationError  # noqa: E402  pylint: disable=wrong-import-position


def options(**values):
    return values.get


def test_region_is_required():
    with pytest.raises(ValidationError) as info:
        alicloud.AlicloudAuth.from_options(options(alicloud_access_key='LTAI', alicloud_secret_key='s'))
    assert info.value.parameter == 'alicloud_region'


def test_keys_come_in_pairs():
    with pytest.raises(ValidationError) as info:
        alicloud.AlicloudAuth.from_options(options(alicloud_access_key='LTAI', alicloud_region='cn-hangzhou'))
    assert info.value.parameter == 'alicloud_secret_key'


def test_a_plugin_documents_only_its_own_endpoint():
    """ali_assist has no eci_endpoint option and ali_eci no ecs_endpoint: get_option raises KeyError for them."""
    values = {'alicloud_region': 'cn-hangzhou', 'ecs_endpoint': 'http://127.0.0.1:1', 'read_timeout': 60, 'validate_certs': True}

    def get_option(name):
        if name == 'eci_endpoint':
            raise KeyError(name)
        return values.get(name)

    auth = alicloud.AlicloudAuth.from_options(get_option)
    assert auth.ecs_endpoint == 'http://127.0.0.1:1' and auth.eci_endpoint is None

    def missing_region(name):
        if name == 'alicloud_region':
            raise KeyError(name)
        return values.get(name)

    with pytest.raises(KeyError):
        alicloud.AlicloudAuth.from_options(missing_region)


def test_secrets_are_not_in_repr():
    auth = alicloud.AlicloudAuth(alicloud_access_key='LTAIvisible', alicloud_secret_key='s3cr3t', alicloud_security_token='sts-tok',
                                 alicloud_region='cn-hangzhou')
    assert 'LTAIvisible' in repr(auth) and 's3cr3t' not in repr(auth) and 'sts-tok' not in repr(auth)


@pytest.mark.parametrize('override, expected', [
    (None, ('ecs.cn-shanghai.aliyuncs.com', 'https')),
    ('http://127.0.0.1:8080', ('127.0.0.1:8080', 'http')),
    ('https://ecs-vpc.cn-shanghai.aliyuncs.com', ('ecs-vpc.cn-shanghai.aliyuncs.com', 'https')),
    ('ecs-internal.example', ('ecs-internal.example', 'https')),
])
def test_endpoint_override(override, expected):
    auth = alicloud.AlicloudAuth(alicloud_region='cn-shanghai', ecs_endpoint=override)
    assert alicloud.endpoint_config(auth, 'ecs') == expected


def test_eci_default_endpoint_is_regional():
    auth = alicloud.AlicloudAuth(alicloud_region='cn-beijing')
    assert alicloud.endpoint_config(auth, 'eci') == ('eci.cn-beijing.aliyuncs.com', 'https')


def test_bad_endpoint_scheme_is_refused():
    auth = alicloud.AlicloudAuth(alicloud_region='cn-beijing', eci_endpoint='ftp://x')
    with pytest.raises(ValidationError) as info:
        alicloud.endpoint_config(auth, 'eci')
    assert info.value.parameter == 'eci_endpoint'


def test_credential_kind_follows_options():
    sts = alicloud.credential_client(alicloud.AlicloudAuth(alicloud_access_key='LTAI', alicloud_secret_key='s',
                                                           alicloud_security_token='t', alicloud_region='cn-hangzhou'))
    assert sts.get_credential().type == 'sts'
    plain = alicloud.credential_client(alicloud.AlicloudAuth(alicloud_access_key='LTAI', alicloud_secret_key='s',
                                                             alicloud_region='cn-hangzhou'))
    assert plain.get_credential().type == 'access_key'
    assert plain.get_credential().access_key_id == 'LTAI'


def test_client_exception_maps_code_status_request_id_and_remedy():
    exc = ClientException(code='SignatureDoesNotMatch', message='Specified signature is not matched with our calculation.',
                          status_code=400, data={'RequestId': 'ABC-1', 'Code': 'SignatureDoesNotMatch'})
    err = alicloud.alicloud_error(exc, action='DescribeInstances')
    assert err.code == 'SignatureDoesNotMatch' and err.status == 400 and err.request_id == 'ABC-1'
    assert err.provider == 'alicloud' and 'alicloud_secret_key' in err.remedy
    assert 'DescribeInstances failed' in str(err)
    assert not err.retryable


def test_throttling_exception_is_retryable():
    exc = ThrottlingException(code='Throttling.User', message='Request was denied due to user flow control.', status_code=400,
                              data={'RequestId': 'R'})
    err = alicloud.alicloud_error(exc)
    assert err.retryable and err.throttling


def test_forked_child_does_not_reuse_the_parents_pooled_connections():
    # Ansible forks a worker per host after the inventory plugin has used the API; the Tea SDK pools its
    # keep-alive sockets in class attributes, which a child must not share with its siblings.
    from darabonba.core import DaraCore
    from Tea.core import TeaCore

    DaraCore._sessions['parent'] = object()  # pylint: disable=protected-access
    TeaCore._sessions['parent'] = object()  # pylint: disable=protected-access
    parent_adapter = DaraCore.http_adapter
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what it sees and leaves without running pytest's teardown
        os.close(read_end)
        fresh = not DaraCore._sessions and not TeaCore._sessions and DaraCore.http_adapter is not parent_adapter  # pylint: disable=protected-access
        os.write(write_end, b'fresh' if fresh else b'inherited')
        os._exit(0)  # pylint: disable=protected-access
    os.close(write_end)
    seen = os.read(read_end, 64)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert seen == b'fresh'
    assert 'parent' in DaraCore._sessions  # pylint: disable=protected-access
    DaraCore._sessions.pop('parent')  # pylint: disable=protected-access
    TeaCore._sessions.pop('parent')  # pylint: disable=protected-access


# What the SDK raises on a network failure: RetryError holding the text of the requests exception, which names the
# whole URL (with a v2 signature, the AccessKey ID and the signature are in its query string).
_QUERY = '/?Action=RunCommand&AccessKeyId=LTAIsecretish&Signature=c2lnbmF0dXJl&RegionId=cn-hangzhou'
NETWORK_TEXTS = {
    'refused': ("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: " + _QUERY + " (Caused by "
                "NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: "
                "[Errno 111] Connection refused\"))"),
    'read_timeout': "HTTPConnectionPool(host='127.0.0.1', port=9): Read timed out. (read timeout=7.0)",
    'dns': ("HTTPSConnectionPool(host='ecs.nowhere.aliyuncs.com', port=443): Max retries exceeded with url: " + _QUERY + " (Caused by "
            "NameResolutionError(\"HTTPSConnection(host='ecs.nowhere.aliyuncs.com', port=443): Failed to resolve "
            "'ecs.nowhere.aliyuncs.com' ([Errno -2] Name or service not known)\"))"),
    'connect_timeout': ("HTTPSConnectionPool(host='10.255.255.1', port=443): Max retries exceeded with url: " + _QUERY + " (Caused by "
                        "ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to 10.255.255.1 timed out. "
                        "(connect timeout=10.0)'))"),
    'tls': ("HTTPSConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: " + _QUERY + " (Caused by SSLError("
            "SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)')))"),
    'reset': "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
    'disconnected': "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))",
}


def network_exception(text: str, host: str = '127.0.0.1:9', protocol: str = 'http') -> UnretryableException:
    request = types.SimpleNamespace(protocol=protocol, port=80, headers={'host': host}, pathname='/', query={'Signature': 'c2ln'})
    return UnretryableException(request, RetryError(text))


@pytest.mark.parametrize('kind, code, cause, retry_limit', [
    ('refused', 'Connection.Refused', 'Connection refused', 2),
    ('read_timeout', 'Connection.ReadTimeout', 'Read timed out', None),
    ('dns', 'Connection.NameResolution', 'Name or service not known', 2),
    ('connect_timeout', 'Connection.Timeout', 'Connection timed out', 1),
    ('tls', 'Connection.TLS', 'TLS certificate verify failed', None),
    ('reset', 'Connection.Error', 'Connection reset by peer', 3),
    ('disconnected', 'Connection.Error', 'RemoteDisconnected: Remote end closed connection without response', 3),
])
def test_network_errors_name_the_url_and_the_cause(kind, code, cause, retry_limit):
    err = alicloud.alicloud_error(network_exception(NETWORK_TEXTS[kind]), action='RunCommand', read_timeout=7,
                                  endpoint_option='ecs_endpoint')
    text = str(err)
    assert err.code == code and err.provider == 'alicloud'
    assert err.retry_limit == retry_limit and err.retryable == (retry_limit is not None)
    assert text.startswith(f'{code}: RunCommand failed: ') and cause in text
    assert 'http://127.0.0.1:9' in text
    # Never the query string, the signature or the AccessKey ID the SDK's own text carries.
    for secretish in ('?', 'Signature', 'LTAIsecretish', 'Action=', 'RetryError', 'Max retries'):
        assert secretish not in text, (secretish, text)
    assert err.remedy


def test_refused_connection_names_the_endpoint_option():
    err = alicloud.alicloud_error(network_exception(NETWORK_TEXTS['refused']), action='DescribeContainerGroups',
                                  endpoint_option='eci_endpoint')
    assert str(err) == ('Connection.Refused: DescribeContainerGroups failed: cannot connect to http://127.0.0.1:9: Connection refused. '
                        'Nothing accepts connections at http://127.0.0.1:9: check eci_endpoint (ALICLOUD_ECI_ENDPOINT) and '
                        'alicloud_region, and that the controller can reach it.')


def test_read_timeout_is_named_with_its_seconds_and_option():
    err = alicloud.alicloud_error(network_exception(NETWORK_TEXTS['read_timeout']), action='DescribeInstances', read_timeout=7)
    assert err.message == 'DescribeInstances failed: no answer from http://127.0.0.1:9 within the read timeout of 7 seconds (Read timed out)'
    assert 'read_timeout' in err.remedy and 'ALICLOUD_READ_TIMEOUT' in err.remedy
    assert not err.retryable


def test_network_error_url_falls_back_to_the_text_and_drops_user_info():
    err = alicloud.alicloud_error(network_exception(NETWORK_TEXTS['dns'], host=''))
    assert 'https://ecs.nowhere.aliyuncs.com:443' in err.message
    err = alicloud.alicloud_error(network_exception(NETWORK_TEXTS['reset'], host='user:pw@ecs.example:8443', protocol='https'))
    assert 'https://ecs.example:8443' in err.message and 'pw' not in str(err)


def test_call_names_the_endpoint_option_of_the_client(monkeypatch):
    class EciLikeClient:
        def describe_container_groups_with_options(self, request, runtime):
            raise network_exception(NETWORK_TEXTS['read_timeout'])

    EciLikeClient.__module__ = 'alibabacloud_eci20180808.client'
    monkeypatch.setattr(alicloud, 'runtime_options', lambda auth, read_timeout=None: None)
    auth = alicloud.AlicloudAuth(alicloud_region='cn-hangzhou', read_timeout=9)
    with pytest.raises(Exception) as info:
        alicloud.call(EciLikeClient(), 'describe_container_groups', object(), auth)
    assert info.value.code == 'Connection.ReadTimeout'
    assert 'within the read timeout of 9 seconds' in info.value.message and 'eci_endpoint' in info.value.remedy
    with pytest.raises(Exception) as info:
        alicloud.call(EciLikeClient(), 'describe_container_groups', object(), auth, read_timeout=30)
    assert 'within the read timeout of 30 seconds' in info.value.message


def test_modules_read_read_timeout_from_the_environment():
    from ansible.module_utils.basic import env_fallback  # pylint: disable=import-outside-toplevel
    from ansible_collections.cloudexec.core.plugins.module_utils.module import alicloud_argument_spec  # pylint: disable=import-outside-toplevel

    assert alicloud_argument_spec()['read_timeout']['fallback'] == (env_fallback, ['ALICLOUD_READ_TIMEOUT'])
