# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Exact-text tests of the data channel payloads.

Expected JSON is what Go's encoding/json writes for AWS's structs (session-manager-plugin
src/message/clientmessage.go + handshakemessage.go, src/service/service.go); the parse tests
reuse the payloads of AWS's src/message/messageparser_test.go.
"""

from __future__ import annotations

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import PayloadTypeFlag, SSMProtocolError
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.payloads import (
    AcknowledgeContent,
    ActionStatus,
    ChannelClosed,
    EncryptionChallenge,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    OpenDataChannelRequest,
    ProcessedClientAction,
    RequestedClientAction,
    SessionTypeRequest,
    KMSEncryptionRequest,
    answer_handshake,
    build_exit_code,
    build_flag,
    build_open_data_channel,
    build_size,
    go_json,
    kms_encryption_result,
    parse_acknowledge,
    parse_channel_closed,
    parse_encryption_challenge,
    parse_exit_code,
    parse_flag,
    parse_handshake_complete,
    parse_handshake_request,
    parse_handshake_response,
    parse_kms_encryption_result,
    parse_open_data_channel,
    parse_size,
)

TOKEN = 'AAEAAtoken-value-SECRET+/=='
MESSAGE_ID = 'dd01e56b-ff48-483e-a508-b5f073f31b16'


# --- OpenDataChannel -----------------------------------------------------------------------------
def test_open_data_channel_text_is_exact():
    text = build_open_data_channel(TOKEN, client_id='c0ffee00-0000-4000-8000-000000000001', client_version='1.2.650.0',
                                   request_id='5e1f0000-0000-4000-8000-000000000002')
    assert text == ('{"MessageSchemaVersion":"1.0","RequestId":"5e1f0000-0000-4000-8000-000000000002",'
                    '"TokenValue":"AAEAAtoken-value-SECRET+/==","ClientId":"c0ffee00-0000-4000-8000-000000000001",'
                    '"ClientVersion":"1.2.650.0"}')


def test_open_data_channel_generates_request_id():
    a = parse_open_data_channel(build_open_data_channel(TOKEN, 'c', '1'))
    b = parse_open_data_channel(build_open_data_channel(TOKEN, 'c', '1'))
    assert len(a.request_id) == 36 and a.request_id != b.request_id


def test_agent_variant_puts_instance_id_before_client_id():
    request = OpenDataChannelRequest(token_value='t', client_id='c', request_id='r', client_instance_id='i-1')
    assert request.to_json() == ('{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t",'
                                 '"ClientInstanceId":"i-1","ClientId":"c"}')


def test_token_never_in_repr_or_str():
    request = parse_open_data_channel(build_open_data_channel(TOKEN, 'client', '1.0'))
    assert request.token_value == TOKEN
    for text in (repr(request), str(request), '%s' % request, '{0!r}'.format(request)):
        assert 'SECRET' not in text
        assert '<redacted>' in text


def test_token_never_in_parse_errors():
    broken = '{"TokenValue":"%s", oops' % TOKEN
    with pytest.raises(SSMProtocolError) as info:
        parse_open_data_channel(broken)
    assert 'SECRET' not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
    with pytest.raises(SSMProtocolError, match='no TokenValue'):
        parse_open_data_channel('{"ClientId":"c"}')
    with pytest.raises(SSMProtocolError, match='token value is empty'):
        build_open_data_channel('', 'c', '1')


# --- acknowledge ---------------------------------------------------------------------------------
def test_acknowledge_json_is_exactly_what_go_marshals():
    content = AcknowledgeContent('output_stream_data', MESSAGE_ID, 2, True)
    assert content.to_json() == (b'{"AcknowledgedMessageType":"output_stream_data",'
                                 b'"AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16",'
                                 b'"AcknowledgedMessageSequenceNumber":2,"IsSequentialMessage":true}')
    assert parse_acknowledge(content.to_json()) == content


def test_parse_acknowledge_of_awss_test_payload():
    # messageparser_test.go ackMessagePayload: pretty-printed, no sequence number field.
    payload = ('{\n\t\t\t"AcknowledgedMessageType": "acknowledge",\n\t\t\t"AcknowledgedMessageId":"%s"\n\t\t}' % MESSAGE_ID).encode()
    content = parse_acknowledge(payload)
    assert content == AcknowledgeContent('acknowledge', MESSAGE_ID, 0, False)


def test_parse_acknowledge_go_rules():
    # Keys match case-insensitively, as Go's decoder does; wrong types are errors.
    assert parse_acknowledge(b'{"acknowledgedmessagesequencenumber":7}').sequence_number == 7
    with pytest.raises(SSMProtocolError, match='AcknowledgedMessageSequenceNumber must be an integer'):
        parse_acknowledge(b'{"AcknowledgedMessageSequenceNumber":"7"}')
    with pytest.raises(SSMProtocolError, match='not valid JSON'):
        parse_acknowledge(b'payload')
    with pytest.raises(SSMProtocolError, match='expected an object'):
        parse_acknowledge(b'[1]')


# --- handshake -----------------------------------------------------------------------------------
def test_parse_handshake_request_of_awss_test_payload():
    # messageparser_test.go handshakeReqPayload.
    payload = b'''{
            "AgentVersion": "3.0",
            "RequestedClientActions": [
                {
                    "ActionType": "start",
                    "ActionParameters": {"name": "richard"}
                }
            ]
        }'''
    request = parse_handshake_request(payload)
    assert request.agent_version == '3.0'
    assert request.requested_client_actions == [RequestedClientAction('start', {'name': 'richard'})]


def test_handshake_request_round_trip_as_the_agent_writes_it():
    request = HandshakeRequest('3.3.1142.0', [
        RequestedClientAction('SessionType', SessionTypeRequest('InteractiveCommands', {'commands': 'sh'})),
        RequestedClientAction('KMSEncryption', KMSEncryptionRequest('arn:aws:kms:eu-west-1:1:key/k', 'Y2hhbGxlbmdl')),
    ])
    assert request.to_json() == (b'{"AgentVersion":"3.3.1142.0","RequestedClientActions":['
                                 b'{"ActionType":"SessionType","ActionParameters":{"SessionType":"InteractiveCommands",'
                                 b'"Properties":{"commands":"sh"}}},'
                                 b'{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:eu-west-1:1:key/k",'
                                 b'"Challenge":"Y2hhbGxlbmdl"}}]}')
    parsed = parse_handshake_request(request.to_json())
    assert parsed.action('SessionType').session_type_request() == SessionTypeRequest('InteractiveCommands', {'commands': 'sh'})
    assert parsed.action('KMSEncryption').kms_encryption_request() == KMSEncryptionRequest('arn:aws:kms:eu-west-1:1:key/k',
                                                                                           'Y2hhbGxlbmdl')
    assert parsed.action('Nope') is None


def test_handshake_response_json_matches_go():
    # Bytes printed by AWS's own structs through Go's json.Marshal (handshakemessage.go).
    response = HandshakeResponse('1.2.0.0', [ProcessedClientAction('SessionType', ActionStatus.SUCCESS)])
    assert response.to_json() == (b'{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType",'
                                  b'"ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}')
    kms = ProcessedClientAction('KMSEncryption', ActionStatus.SUCCESS, kms_encryption_result(b'\x01\x02\x03'))
    assert go_json(kms.to_dict()) == (b'{"ActionType":"KMSEncryption","ActionStatus":1,'
                                      b'"ActionResult":{"KMSCipherTextKey":"AQID","KMSCipherTextHash":null},"Error":""}')


def test_kms_result_challenge_acknowledgement():
    result = kms_encryption_result(b'\xff', challenge_acknowledgement=True)
    assert go_json(result) == b'{"KMSCipherTextKey":"/w==","KMSCipherTextHash":null,"ChallengeAcknowledgement":true}'
    assert parse_kms_encryption_result(result) == (b'\xff', True)
    with pytest.raises(SSMProtocolError, match='not valid base64'):
        parse_kms_encryption_result({'KMSCipherTextKey': '***'})


def test_answer_handshake_session_type_only():
    request = parse_handshake_request(b'{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType",'
                                      b'"ActionParameters":{"SessionType":"InteractiveCommands","Properties":null}}]}')
    response, session_type = answer_handshake(request, '1.2.650.0')
    assert session_type == 'InteractiveCommands'
    assert response.to_json() == (b'{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType",'
                                  b'"ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}')


def test_answer_handshake_failures():
    request = HandshakeRequest('3', [RequestedClientAction('SessionType', {'SessionType': 'Weird'}),
                                     RequestedClientAction('KMSEncryption', {'KMSKeyId': 'k'}),
                                     RequestedClientAction('Teleport', None)])
    response, session_type = answer_handshake(request, '1')
    assert session_type is None
    assert [(a.action_type, int(a.action_status)) for a in response.processed_client_actions] == [
        ('SessionType', 2), ('KMSEncryption', 2), ('Teleport', 3)]
    assert response.errors == ['Unknown session type Weird', 'KMS encryption is not available in this client',
                               'Unsupported action Teleport']
    parsed = parse_handshake_response(response.to_json())
    assert parsed == response


def test_answer_handshake_with_kms_result():
    request = HandshakeRequest('3', [RequestedClientAction('KMSEncryption', {'KMSKeyId': 'k', 'Challenge': 'c'})])
    response = answer_handshake(request, '1', kms_action_result=kms_encryption_result(b'\x01', True))[0]
    assert response.errors == []
    assert response.processed_client_actions[0].action_status == ActionStatus.SUCCESS
    assert b'"Errors":null' in response.to_json()


def test_handshake_complete_of_awss_test_payload_and_go_escaping():
    # messageparser_test.go handshakeCompletePayload (Duration in nanoseconds).
    parsed = parse_handshake_complete(b'{\n"HandshakeTimeToComplete": 1000000,\n"CustomerMessage": "Handshake Complete"\n}')
    assert parsed == HandshakeComplete(1000000, 'Handshake Complete')
    # Go escapes <, > and & in strings.
    assert HandshakeComplete(1500000000, 'a<b>&c').to_json() == (b'{"HandshakeTimeToComplete":1500000000,'
                                                                 b'"CustomerMessage":"a\\u003cb\\u003e\\u0026c"}')


def test_encryption_challenge_is_base64():
    challenge = EncryptionChallenge(b'\x00\x01\xfe')
    assert challenge.to_json() == b'{"Challenge":"AAH+"}'
    assert parse_encryption_challenge(challenge.to_json()) == challenge
    assert 'AAH+' not in repr(challenge) and '\\x01' not in repr(challenge)


# --- channel_closed ------------------------------------------------------------------------------
def test_parse_channel_closed_of_awss_test_payload():
    payload = b'''{
            "MessageType": "channel_closed",
            "MessageId": "dd01e56b-ff48-483e-a508-b5f073f31b16",
            "CreatedDate": "1503434274948",
            "SessionId": "sessionId_01234567890abcedf",
            "SchemaVersion": 1,
            "Output": "payload"
        }'''
    assert parse_channel_closed(payload) == ChannelClosed(
        message_id=MESSAGE_ID, created_date='1503434274948', destination_id='', session_id='sessionId_01234567890abcedf',
        message_type='channel_closed', schema_version=1, output='payload')


def test_channel_closed_json_field_order():
    closed = ChannelClosed('m', '2018-01-01', 'd', 's', 'channel_closed', 1, 'bye')
    assert closed.to_json() == (b'{"MessageId":"m","CreatedDate":"2018-01-01","DestinationId":"d","SessionId":"s",'
                                b'"MessageType":"channel_closed","SchemaVersion":1,"Output":"bye"}')


# --- small payloads ------------------------------------------------------------------------------
def test_size_payload_is_exact():
    assert build_size(80, 24) == b'{"cols":80,"rows":24}'
    assert parse_size(b'{"cols":132,"rows":43}') == (132, 43)
    with pytest.raises(SSMProtocolError, match='cols'):
        build_size(-1, 24)
    with pytest.raises(SSMProtocolError, match='rows'):
        build_size(80, True)


def test_flag_payload_is_big_endian_u32():
    assert build_flag(PayloadTypeFlag.TERMINATE_SESSION) == b'\x00\x00\x00\x02'
    assert build_flag(PayloadTypeFlag.DISCONNECT_TO_PORT) == b'\x00\x00\x00\x01'
    assert parse_flag(b'\x00\x00\x00\x02') is PayloadTypeFlag.TERMINATE_SESSION
    assert parse_flag(b'\x00\x00\x00\x09') == 9
    with pytest.raises(SSMProtocolError, match='3 bytes, expected 4'):
        parse_flag(b'\x00\x00\x02')


def test_exit_code_payload():
    assert build_exit_code(0) == b'EXIT_CODE: 0'
    assert build_exit_code(127) == b'EXIT_CODE: 127'
    assert parse_exit_code(b'EXIT_CODE: 3') == 3
    assert parse_exit_code(b'EXIT_CODE: -1\r\n') == -1
    for bad in (b'EXIT_CODE: x', b'exit 3', b'EXIT_CODE: 1_0'):
        with pytest.raises(SSMProtocolError):
            parse_exit_code(bad)


def test_go_json_escapes_like_go():
    assert go_json({'a': '<&>\u2028é'}) == '{"a":"\\u003c\\u0026\\u003e\\u2028é"}'.encode('utf-8')
    assert go_json([True, None, 1]) == b'[true,null,1]'
