# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The cloud auth options, without the SDKs: connection plugins read them in every task's worker
process, and importing boto3 or the Tea SDK there would cost a fifth of a second per task."""

from __future__ import annotations

import typing as t

# Module argument spec shared by every AWS module (see doc_fragments/aws_auth.py, MODULES variant).
AWS_AUTH_ARGSPEC: dict[str, dict[str, t.Any]] = {
    'access_key': {'type': 'str', 'aliases': ['aws_access_key_id', 'aws_access_key', 'ec2_access_key'], 'no_log': False},
    'secret_key': {'type': 'str', 'aliases': ['aws_secret_access_key', 'aws_secret_key', 'ec2_secret_key'], 'no_log': True},
    'session_token': {'type': 'str', 'aliases': ['aws_session_token', 'security_token', 'aws_security_token', 'access_token'],
                      'no_log': True},
    'profile': {'type': 'str', 'aliases': ['aws_profile']},
    'region': {'type': 'str', 'aliases': ['aws_region', 'ec2_region']},
    'endpoint_url': {'type': 'str', 'aliases': ['aws_endpoint_url']},
    'validate_certs': {'type': 'bool', 'default': True},
    'aws_ca_bundle': {'type': 'path'},
    'retry_mode': {'type': 'str', 'choices': ['standard', 'adaptive', 'legacy'], 'default': 'standard'},
    'max_attempts': {'type': 'int', 'default': 5},
}

# Module argument spec shared by every Alibaba module (see doc_fragments/alicloud_auth.py, MODULES variant).
# Environment fallbacks are added by the module layer (env_fallback lives in ansible.module_utils).
ALICLOUD_AUTH_ENV: dict[str, list[str]] = {
    'alicloud_access_key': ['ALICLOUD_ACCESS_KEY', 'ALICLOUD_ACCESS_KEY_ID', 'ALIBABA_CLOUD_ACCESS_KEY_ID'],
    'alicloud_secret_key': ['ALICLOUD_SECRET_KEY', 'ALICLOUD_SECRET_ACCESS_KEY', 'ALIBABA_CLOUD_ACCESS_KEY_SECRET'],
    'alicloud_security_token': ['ALICLOUD_SECURITY_TOKEN', 'ALIBABA_CLOUD_SECURITY_TOKEN'],
    'alicloud_region': ['ALICLOUD_REGION', 'ALICLOUD_REGION_ID', 'ALIBABA_CLOUD_REGION_ID'],
    'alicloud_assume_role_arn': ['ALICLOUD_ASSUME_ROLE_ARN', 'ALIBABA_CLOUD_ROLE_ARN'],
    'alicloud_assume_role_session_name': ['ALICLOUD_ASSUME_ROLE_SESSION_NAME', 'ALIBABA_CLOUD_ROLE_SESSION_NAME'],
    'ecs_role_name': ['ALICLOUD_ECS_ROLE_NAME', 'ALIBABA_CLOUD_ECS_METADATA'],
    'profile': ['ALICLOUD_PROFILE', 'ALIBABA_CLOUD_PROFILE'],
    'shared_credentials_file': ['ALICLOUD_SHARED_CREDENTIALS_FILE'],
    'ecs_endpoint': ['ALICLOUD_ECS_ENDPOINT'],
    'eci_endpoint': ['ALICLOUD_ECI_ENDPOINT'],
    'read_timeout': ['ALICLOUD_READ_TIMEOUT'],
}

ALICLOUD_AUTH_ARGSPEC: dict[str, dict[str, t.Any]] = {
    'alicloud_access_key': {'type': 'str', 'aliases': ['access_key_id', 'access_key'], 'no_log': False},
    'alicloud_secret_key': {'type': 'str', 'aliases': ['secret_access_key', 'secret_key'], 'no_log': True},
    'alicloud_security_token': {'type': 'str', 'aliases': ['security_token'], 'no_log': True},
    'alicloud_region': {'type': 'str', 'aliases': ['region', 'region_id']},
    'alicloud_assume_role_arn': {'type': 'str', 'aliases': ['assume_role_arn']},
    'alicloud_assume_role_session_name': {'type': 'str', 'aliases': ['assume_role_session_name']},
    'ecs_role_name': {'type': 'str', 'aliases': ['role_name']},
    'profile': {'type': 'str'},
    'shared_credentials_file': {'type': 'path'},
    'ecs_endpoint': {'type': 'str'},
    'eci_endpoint': {'type': 'str'},
    'validate_certs': {'type': 'bool', 'default': True},
    'read_timeout': {'type': 'int', 'default': 60},
}
