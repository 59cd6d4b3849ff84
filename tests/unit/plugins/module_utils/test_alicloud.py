# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os

import pytest

pytest.importorskip('alibabacloud_tea_openapi')
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException  # noqa: E402  pylint: disable=wrong-import-position

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
