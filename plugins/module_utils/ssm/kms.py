# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""KMS encryption of a Session Manager session: the data key, and sealing and opening payloads with it.

When the cluster's executeCommandConfiguration names a KMS key, the agent's handshake asks for one: the client
calls KMS GenerateDataKey (64 bytes, with the session id and target id, and a newer agent's RandomChallenge, as
encryption context), hands the agent the ciphertext blob, and from then on payloads are AES-256-GCM: a 12-byte
random nonce, then the sealed data. AWS's client decrypts with the first half of the key and encrypts with the
second (session-manager-plugin src/encryption/encrypter.go); the agent does the reverse.
"""

from __future__ import annotations

import os
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import SSMProtocolError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    HAS_CRYPTOGRAPHY = False
else:
    HAS_CRYPTOGRAPHY = True

PROVIDER = 'aws'
NONCE_SIZE = 12
DATA_KEY_SIZE = 64

# generate_data_key(key_id, encryption_context) -> (plaintext, ciphertext_blob): KMS GenerateDataKey, 64 bytes.
GenerateDataKey = t.Callable[[str, t.Dict[str, str]], t.Tuple[bytes, bytes]]


class SessionCipher:
    """The two AES-GCM keys of one session: seal() what the client sends, open() what the agent sends."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != DATA_KEY_SIZE:
            raise CloudExecError(f'KMS returned a {len(data_key)}-byte data key, the session needs {DATA_KEY_SIZE}',
                                 code='KMSEncryptionFailed', provider=PROVIDER, retryable=False,
                                 remedy='Call GenerateDataKey with NumberOfBytes=64')
        self._sealer = AESGCM(bytes(data_key[32:]))
        self._opener = AESGCM(bytes(data_key[:32]))

    def seal(self, data: bytes) -> bytes:
        """A random nonce, then the data sealed with the client's key."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._sealer.encrypt(nonce, data, None)

    def open(self, data: bytes) -> bytes:
        """The data the agent sealed; SSMProtocolError when it does not authenticate."""
        if len(data) < NONCE_SIZE:
            raise SSMProtocolError('encrypted payload is shorter than its nonce')
        try:
            return self._opener.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
        except InvalidTag:
            raise SSMProtocolError('encrypted payload failed authentication (wrong data key?)') from None


def new_session_key(generate: GenerateDataKey, key_id: str, session_id: str | None, target_id: str | None,
                    challenge: str | None) -> tuple[SessionCipher, bytes]:
    """(the session's cipher, the ciphertext blob for the agent), from KMS GenerateDataKey."""
    if not HAS_CRYPTOGRAPHY:
        raise CloudExecError('the cryptography package is required for KMS-encrypted ECS Exec sessions',
                             code='MissingDependency', provider='cloudexec', retryable=False, remedy='pip install cryptography')
    if not session_id or not target_id:
        raise CloudExecError('KMS encryption needs the session id and the target id (ecs:<cluster>_<taskId>_<runtimeId>)',
                             code='KMSEncryptionFailed', provider='cloudexec', retryable=False,
                             remedy='Pass session_id and target_id to DataChannelSession')
    context = {'aws:ssm:SessionId': session_id, 'aws:ssm:TargetId': target_id}
    if challenge:
        # Newer agents decrypt the key with the challenge in the context when we acknowledge it.
        context['aws:ssm:RandomChallenge'] = challenge
    try:
        plaintext, ciphertext = generate(key_id, dict(context))
    except CloudExecError:
        raise
    except Exception as exc:  # pylint: disable=broad-exception-caught
        raise CloudExecError(f'KMS GenerateDataKey failed: {type(exc).__name__}', code='KMSEncryptionFailed', provider=PROVIDER,
                             retryable=False, remedy='Allow kms:GenerateDataKey on the cluster key for the caller') from None
    return SessionCipher(plaintext), ciphertext
