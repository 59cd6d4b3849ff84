# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError

from ansible_collections.cloudexec.core.plugins.plugin_utils.inventory import connection_settings


def test_connection_settings_keep_only_what_is_set():
    settings = connection_settings({'ansible_aws_endpoint_url': 'http://127.0.0.1:4566', 'ansible_aws_profile': None,
                                    'ansible_alicloud_profile': ''})
    assert settings == {'ansible_aws_endpoint_url': 'http://127.0.0.1:4566'}


@pytest.mark.parametrize('name', ['ansible_aws_secret_access_key', 'ansible_aws_access_key_id', 'ansible_alicloud_secret_key',
                                  'ansible_alicloud_security_token'])
def test_connection_settings_refuse_secrets(name):
    with pytest.raises(AnsibleError):
        connection_settings({name: 'value', 'ansible_aws_profile': 'ops'})
