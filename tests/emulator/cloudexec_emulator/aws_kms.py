# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS KMS (JSON 1.1, TrentService) as far as Session Manager's session encryption needs it.

A cluster whose executeCommandConfiguration names a kmsKeyId (ECS Exec), or session preferences that name one (SSM
StartSession: the session document's inputs.kmsKeyId), makes the agent ask the client for a data key in the
session handshake. The client calls GenerateDataKey (64 bytes, with the session id and target id as encryption
context) and sends the ciphertext blob; the agent has KMS decrypt it and both ends seal the stream with AES-GCM.
Here the keys are the world's clusters' kms_key_id values and the session preferences' and documents' kmsKeyId; a
ciphertext blob is the data key and its context sealed with a master key of this emulator process, so only this
emulator can open it, as only KMS can open a real one.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .context import ActionTable, CallContext, EmulatorState
from .errors import ApiError

TARGET_PREFIX = 'TrentService'
SIGNING_NAME = 'kms'
_MASTER_KEY = 'aws-kms-master-key'
_BLOB_MAGIC = b'CEKMS1'
_KEY_SPECS = {'AES_256': 32, 'AES_128': 16}

ACTIONS = ActionTable()


class InvalidCiphertext(Exception):
    """The blob was not made by this emulator, or for another encryption context."""


def _master(state: EmulatorState) -> AESGCM:
    if _MASTER_KEY not in state.extensions:
        state.extensions[_MASTER_KEY] = AESGCM(AESGCM.generate_key(bit_length=256))
    return state.extensions[_MASTER_KEY]


def _key_arn(ctx: CallContext, key_id: str) -> str:
    """The ARN of a key the world knows (by ARN, key id or alias ARN), else NotFoundException."""
    for arn in ctx.world.aws.kms_keys():
        if key_id in (arn, arn.rsplit('/', 1)[-1]):
            return arn
    raise ApiError('NotFoundException', f"Key '{key_id}' does not exist", 400)


def _context(ctx: CallContext) -> dict[str, str]:
    context = ctx.param('EncryptionContext') or {}
    if not isinstance(context, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items()):
        raise ApiError('ValidationException', 'EncryptionContext must be a map of strings to strings', 400)
    return context


def seal(state: EmulatorState, key_arn: str, plaintext: bytes, context: dict[str, str]) -> bytes:
    """A ciphertext blob: the data key, bound to its key and encryption context."""
    nonce = os.urandom(12)
    body = json.dumps({'key': key_arn, 'plaintext': base64.b64encode(plaintext).decode()}).encode()
    aad = json.dumps(context, sort_keys=True).encode()
    return _BLOB_MAGIC + nonce + _master(state).encrypt(nonce, body, aad)


def unseal(state: EmulatorState, blob: bytes, context: dict[str, str]) -> tuple[str, bytes]:
    """(key ARN, data key) of a blob made by seal() with exactly this encryption context."""
    if not blob.startswith(_BLOB_MAGIC) or len(blob) < len(_BLOB_MAGIC) + 12 + 16:
        raise InvalidCiphertext('not a ciphertext blob of this KMS')
    nonce = blob[len(_BLOB_MAGIC):len(_BLOB_MAGIC) + 12]
    try:
        body = _master(state).decrypt(nonce, blob[len(_BLOB_MAGIC) + 12:], json.dumps(context, sort_keys=True).encode())
    except InvalidTag as exc:
        raise InvalidCiphertext('the blob does not open with this encryption context') from exc
    data = json.loads(body)
    return data['key'], base64.b64decode(data['plaintext'])


@ACTIONS.register('GenerateDataKey')
async def generate_data_key(ctx: CallContext) -> dict[str, Any]:
    arn = _key_arn(ctx, str(ctx.require('KeyId')))
    size, spec = ctx.param('NumberOfBytes'), ctx.param('KeySpec')
    if (size is None) == (spec is None):
        raise ApiError('ValidationException', 'Please specify either number of bytes or key spec.', 400)
    if spec is not None:
        if spec not in _KEY_SPECS:
            raise ApiError('ValidationException', f"1 validation error detected: Value '{spec}' at 'keySpec' failed to satisfy "
                           'constraint: Member must satisfy enum value set: [AES_256, AES_128]', 400)
        size = _KEY_SPECS[spec]
    if not isinstance(size, int) or not 1 <= size <= 1024:
        raise ApiError('ValidationException', "1 validation error detected: Value at 'numberOfBytes' failed to satisfy "
                       'constraint: Member must have value between 1 and 1024', 400)
    plaintext = os.urandom(size)
    blob = seal(ctx.state, arn, plaintext, _context(ctx))
    return {'KeyId': arn, 'Plaintext': base64.b64encode(plaintext).decode(), 'CiphertextBlob': base64.b64encode(blob).decode()}


@ACTIONS.register('Decrypt')
async def decrypt(ctx: CallContext) -> dict[str, Any]:
    try:
        blob = base64.b64decode(str(ctx.require('CiphertextBlob')), validate=True)
        arn, plaintext = unseal(ctx.state, blob, _context(ctx))
    except (InvalidCiphertext, binascii.Error, ValueError) as exc:
        raise ApiError('InvalidCiphertextException', '', 400) from exc
    return {'KeyId': arn, 'Plaintext': base64.b64encode(plaintext).decode(), 'EncryptionAlgorithm': 'SYMMETRIC_DEFAULT'}
