# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """AWS authentication options, named as amazon.aws names them."""

    # Modules: options only; the environment is read by boto3's own chain and the legacy names below.
    MODULES = r'''
options:
  access_key:
    description:
      - AWS access key ID.
      - When not set, boto3's credential chain is used (E(AWS_ACCESS_KEY_ID), O(profile), C(~/.aws), instance
        and task roles); the older amazon.aws names E(AWS_ACCESS_KEY) and E(EC2_ACCESS_KEY) are also read.
      - Cannot be combined with O(profile).
    type: str
    aliases: [aws_access_key_id, aws_access_key, ec2_access_key]
  secret_key:
    description:
      - AWS secret access key, with O(access_key). Never logged.
      - Falls back like O(access_key) (E(AWS_SECRET_ACCESS_KEY), E(AWS_SECRET_KEY), E(EC2_SECRET_KEY)).
    type: str
    aliases: [aws_secret_access_key, aws_secret_key, ec2_secret_key]
  session_token:
    description:
      - AWS session token for temporary credentials. Never logged.
      - Falls back to E(AWS_SESSION_TOKEN), E(AWS_SECURITY_TOKEN) or E(EC2_SECURITY_TOKEN).
    type: str
    aliases: [aws_session_token, security_token, aws_security_token, access_token]
  profile:
    description:
      - A named profile of C(~/.aws/config) and C(~/.aws/credentials). Falls back to E(AWS_PROFILE).
      - Cannot be combined with O(access_key) or O(secret_key).
    type: str
    aliases: [aws_profile]
  region:
    description:
      - The AWS region, for example V(us-east-1). Falls back to E(AWS_REGION), E(AWS_DEFAULT_REGION) or E(EC2_REGION).
    type: str
    aliases: [aws_region, ec2_region]
  endpoint_url:
    description:
      - Send API calls to this URL instead of the public endpoint (a VPC endpoint, or the collection's emulator).
      - When not set, boto3 reads E(AWS_ENDPOINT_URL_ECS) and E(AWS_ENDPOINT_URL).
    type: str
    aliases: [aws_endpoint_url]
  validate_certs:
    description:
      - Verify the TLS certificates of AWS endpoints. Turn off only for trusted test endpoints.
    type: bool
    default: true
  aws_ca_bundle:
    description:
      - A CA bundle to verify TLS certificates with. Falls back to E(AWS_CA_BUNDLE).
    type: path
  retry_mode:
    description:
      - botocore's retry mode for throttled and failed calls. V(adaptive) also rate-limits the client.
    type: str
    choices: [standard, adaptive, legacy]
    default: standard
  max_attempts:
    description:
      - Attempts per API call, including the first, before a throttling or server error is reported.
    type: int
    default: 5
requirements:
  - boto3 >= 1.28.0
  - botocore >= 1.31.0
notes:
  - Credentials and tokens are marked C(no_log) and never appear in results.
'''

    # Connection and inventory plugins: the same options, with env: and vars: sources.
    PLUGINS = r'''
options:
  access_key:
    description:
      - AWS access key ID. When not set, boto3's credential chain is used (profile, C(~/.aws), instance and task roles).
    type: str
    aliases: [aws_access_key_id]
    env:
      - name: AWS_ACCESS_KEY_ID
      - name: AWS_ACCESS_KEY
      - name: EC2_ACCESS_KEY
    vars:
      - name: ansible_aws_access_key_id
  secret_key:
    description:
      - AWS secret access key. Never logged.
    type: str
    aliases: [aws_secret_access_key]
    env:
      - name: AWS_SECRET_ACCESS_KEY
      - name: AWS_SECRET_KEY
      - name: EC2_SECRET_KEY
    vars:
      - name: ansible_aws_secret_access_key
  session_token:
    description:
      - AWS session token for temporary credentials. Never logged.
    type: str
    aliases: [aws_session_token]
    env:
      - name: AWS_SESSION_TOKEN
      - name: AWS_SECURITY_TOKEN
      - name: EC2_SECURITY_TOKEN
    vars:
      - name: ansible_aws_session_token
  profile:
    description:
      - A named AWS profile. Cannot be combined with O(access_key).
    type: str
    aliases: [aws_profile]
    env:
      - name: AWS_PROFILE
    vars:
      - name: ansible_aws_profile
  region:
    description:
      - The AWS region.
    type: str
    aliases: [aws_region]
    env:
      - name: AWS_REGION
      - name: AWS_DEFAULT_REGION
      - name: EC2_REGION
    vars:
      - name: ansible_aws_region
  endpoint_url:
    description:
      - Send ECS API calls to this URL instead of the public endpoint (a VPC endpoint, or the collection's emulator).
    type: str
    aliases: [aws_endpoint_url]
    env:
      - name: AWS_ENDPOINT_URL_ECS
      - name: AWS_ENDPOINT_URL
    vars:
      - name: ansible_aws_endpoint_url
  validate_certs:
    description:
      - Verify the TLS certificates of AWS endpoints.
    type: bool
    default: true
    env:
      - name: CLOUDEXEC_AWS_VALIDATE_CERTS
    vars:
      - name: ansible_aws_validate_certs
  aws_ca_bundle:
    description:
      - A CA bundle to verify TLS certificates with.
    type: path
    env:
      - name: AWS_CA_BUNDLE
    vars:
      - name: ansible_aws_ca_bundle
  retry_mode:
    description:
      - botocore's retry mode for throttled and failed calls.
    type: str
    choices: [standard, adaptive, legacy]
    default: standard
    env:
      - name: AWS_RETRY_MODE
  max_attempts:
    description:
      - Attempts per API call, including the first.
    type: int
    default: 5
    env:
      - name: AWS_MAX_ATTEMPTS
requirements:
  - boto3 >= 1.28.0
  - botocore >= 1.31.0
'''
