# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Alibaba Cloud authentication options, named as alibaba.alicloud names them."""

    MODULES = r'''
options:
  alicloud_access_key:
    description:
      - Alibaba Cloud AccessKey ID.
      - Falls back to E(ALICLOUD_ACCESS_KEY), E(ALICLOUD_ACCESS_KEY_ID) or E(ALIBABA_CLOUD_ACCESS_KEY_ID).
      - When no key is given by any means, the SDK's default credential chain is used (C(~/.aliyun), OIDC, instance roles).
    type: str
    aliases: [access_key_id, access_key]
  alicloud_secret_key:
    description:
      - Alibaba Cloud AccessKey secret, with O(alicloud_access_key). Never logged.
      - Falls back to E(ALICLOUD_SECRET_KEY), E(ALICLOUD_SECRET_ACCESS_KEY) or E(ALIBABA_CLOUD_ACCESS_KEY_SECRET).
    type: str
    aliases: [secret_access_key, secret_key]
  alicloud_security_token:
    description:
      - STS security token for temporary credentials. Never logged.
      - Falls back to E(ALICLOUD_SECURITY_TOKEN) or E(ALIBABA_CLOUD_SECURITY_TOKEN).
    type: str
    aliases: [security_token]
  alicloud_region:
    description:
      - The region, for example V(cn-hangzhou). Required, by this option or its environment variables.
      - Falls back to E(ALICLOUD_REGION), E(ALICLOUD_REGION_ID) or E(ALIBABA_CLOUD_REGION_ID).
    type: str
    aliases: [region, region_id]
  alicloud_assume_role_arn:
    description:
      - Assume this RAM role (with the given AccessKey) and use its temporary credentials.
      - Falls back to E(ALICLOUD_ASSUME_ROLE_ARN).
    type: str
    aliases: [assume_role_arn]
  alicloud_assume_role_session_name:
    description:
      - The session name when assuming O(alicloud_assume_role_arn). Defaults to V(cloudexec-core).
      - Falls back to E(ALICLOUD_ASSUME_ROLE_SESSION_NAME).
    type: str
    aliases: [assume_role_session_name]
  ecs_role_name:
    description:
      - Use the credentials of this RAM role attached to the ECS instance the controller runs on.
      - Falls back to E(ALICLOUD_ECS_ROLE_NAME).
    type: str
    aliases: [role_name]
  profile:
    description:
      - A profile of the Alibaba Cloud CLI configuration (C(~/.aliyun/config.json)).
      - Falls back to E(ALICLOUD_PROFILE) or E(ALIBABA_CLOUD_PROFILE).
    type: str
  shared_credentials_file:
    description:
      - The CLI configuration file to read O(profile) from. Falls back to E(ALICLOUD_SHARED_CREDENTIALS_FILE).
    type: path
  ecs_endpoint:
    description:
      - The ECS API endpoint (a host name or an C(http[s]://) URL), for private endpoints or the collection's emulator.
      - Defaults to C(ecs.<region>.aliyuncs.com). Falls back to E(ALICLOUD_ECS_ENDPOINT).
    type: str
  eci_endpoint:
    description:
      - The ECI API endpoint (a host name or an C(http[s]://) URL).
      - Defaults to C(eci.<region>.aliyuncs.com). Falls back to E(ALICLOUD_ECI_ENDPOINT).
    type: str
  validate_certs:
    description:
      - Verify the TLS certificates of the endpoints. Turn off only for trusted test endpoints.
    type: bool
    default: true
  read_timeout:
    description:
      - Seconds to wait for the answer to one API call. An endpoint that accepts the connection but does not answer
        fails after this long, as a read timeout (C(Connection.ReadTimeout)), and is not retried.
      - A refused connection or an unknown host fails within seconds, whatever this value.
      - Falls back to E(ALICLOUD_READ_TIMEOUT).
    type: int
    default: 60
requirements:
  - alibabacloud-ecs20140526
  - alibabacloud-eci20180808
  - alibabacloud-credentials
notes:
  - AccessKey secrets and STS tokens are marked C(no_log) and never appear in results.
'''

    PLUGINS = r'''
options:
  alicloud_access_key:
    description:
      - Alibaba Cloud AccessKey ID. Without one, the SDK's default credential chain is used.
    type: str
    aliases: [access_key_id]
    env:
      - name: ALICLOUD_ACCESS_KEY
      - name: ALICLOUD_ACCESS_KEY_ID
      - name: ALIBABA_CLOUD_ACCESS_KEY_ID
    vars:
      - name: ansible_alicloud_access_key
  alicloud_secret_key:
    description:
      - Alibaba Cloud AccessKey secret. Never logged.
    type: str
    aliases: [secret_access_key]
    env:
      - name: ALICLOUD_SECRET_KEY
      - name: ALICLOUD_SECRET_ACCESS_KEY
      - name: ALIBABA_CLOUD_ACCESS_KEY_SECRET
    vars:
      - name: ansible_alicloud_secret_key
  alicloud_security_token:
    description:
      - STS security token. Never logged.
    type: str
    aliases: [security_token]
    env:
      - name: ALICLOUD_SECURITY_TOKEN
      - name: ALIBABA_CLOUD_SECURITY_TOKEN
    vars:
      - name: ansible_alicloud_security_token
  alicloud_region:
    description:
      - The region, for example V(cn-hangzhou).
    type: str
    aliases: [region_id]
    env:
      - name: ALICLOUD_REGION
      - name: ALICLOUD_REGION_ID
      - name: ALIBABA_CLOUD_REGION_ID
    vars:
      - name: ansible_alicloud_region
  alicloud_assume_role_arn:
    description:
      - Assume this RAM role and use its temporary credentials.
    type: str
    env:
      - name: ALICLOUD_ASSUME_ROLE_ARN
    vars:
      - name: ansible_alicloud_assume_role_arn
  alicloud_assume_role_session_name:
    description:
      - The session name when assuming O(alicloud_assume_role_arn).
    type: str
    env:
      - name: ALICLOUD_ASSUME_ROLE_SESSION_NAME
  ecs_role_name:
    description:
      - Use the credentials of this RAM role attached to the controller's ECS instance.
    type: str
    env:
      - name: ALICLOUD_ECS_ROLE_NAME
  profile:
    description:
      - A profile of the Alibaba Cloud CLI configuration (C(~/.aliyun/config.json)).
    type: str
    env:
      - name: ALICLOUD_PROFILE
      - name: ALIBABA_CLOUD_PROFILE
    vars:
      - name: ansible_alicloud_profile
  shared_credentials_file:
    description:
      - The CLI configuration file to read O(profile) from.
    type: path
    env:
      - name: ALICLOUD_SHARED_CREDENTIALS_FILE
    vars:
      - name: ansible_alicloud_shared_credentials_file
  validate_certs:
    description:
      - Verify the TLS certificates of the endpoints.
    type: bool
    default: true
    env:
      - name: ALICLOUD_VALIDATE_CERTS
    vars:
      - name: ansible_alicloud_validate_certs
  read_timeout:
    description:
      - Seconds to wait for the answer to one API call. An endpoint that accepts the connection but does not answer
        fails after this long, as a read timeout, and is not retried.
      - A refused connection or an unknown host fails within seconds, whatever this value.
    type: int
    default: 60
    env:
      - name: ALICLOUD_READ_TIMEOUT
    vars:
      - name: ansible_alicloud_read_timeout
requirements:
  - alibabacloud-ecs20140526
  - alibabacloud-eci20180808
  - alibabacloud-credentials
'''

    # Each plugin documents only the endpoint of the API it calls, next to PLUGINS.
    ECS_ENDPOINT = r'''
options:
  ecs_endpoint:
    description:
      - The ECS API endpoint (a host name or an C(http[s]://) URL), for private endpoints or the collection's emulator.
      - Defaults to C(ecs.<region>.aliyuncs.com).
    type: str
    env:
      - name: ALICLOUD_ECS_ENDPOINT
    vars:
      - name: ansible_alicloud_ecs_endpoint
'''

    ECI_ENDPOINT = r'''
options:
  eci_endpoint:
    description:
      - The ECI API endpoint (a host name or an C(http[s]://) URL), for private endpoints or the collection's emulator.
      - Defaults to C(eci.<region>.aliyuncs.com).
    type: str
    env:
      - name: ALICLOUD_ECI_ENDPOINT
    vars:
      - name: ansible_alicloud_eci_endpoint
'''
