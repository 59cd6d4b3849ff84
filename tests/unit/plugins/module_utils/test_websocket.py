# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The websocket helpers shared by the SSM data channel and the ECI exec stream."""

from __future__ import annotations

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import websocket
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError


def test_a_function_that_names_its_options_gets_only_those():
    # websockets' own connect() hands unknown keywords to socket.create_connection: an option its version lacks
    # (legacy, proxy) must never reach it.
    def library_connect(uri, *, open_timeout=10, compression='deflate', **kwargs):
        return uri, open_timeout, compression, kwargs

    assert websocket.supported_kwargs(library_connect) == frozenset({'uri', 'open_timeout', 'compression'})
    assert websocket.connect('ws://h/x', connect=library_connect, connect_timeout=3, logger=websocket.quiet_logger('t')) == \
        ('ws://h/x', 3, None, {})


def test_a_wrapper_that_only_takes_kwargs_gets_everything():
    seen = {}

    def wrapper(uri, **kwargs):
        seen.update(kwargs)

    websocket.connect('ws://h/x', connect=wrapper, connect_timeout=3, logger=websocket.quiet_logger('t'), subprotocols=['a'])
    assert seen['legacy'] is True and seen['max_size'] is None and seen['subprotocols'] == ['a'] and seen['open_timeout'] == 3


def test_the_library_logger_never_logs_debug():
    assert websocket.quiet_logger('anything').getEffectiveLevel() > 10


@pytest.mark.parametrize('url', ['wss://eci-cn-hangzhou.aliyun.com/exec/?s=SECRETTOKEN123',
                                 'wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/sess-SECRETTOKEN123?role=publish_subscribe'])
def test_the_redactor_keeps_only_the_host(url):
    redact = websocket.Redactor(url, 'tokentokentoken')
    path_and_query = url.split('.com', 1)[1]
    text = redact(f'failed on {websocket.host_of(url)}: {url} ({path_and_query}) with tokentokentoken')
    assert 'SECRETTOKEN123' not in text and 'tokentokentoken' not in text, text
    assert text.startswith(f'failed on {websocket.host_of(url)}: '), text


def test_sanitize_strips_escapes_and_bounds_text():
    assert websocket.sanitize('\x1b[31mred\x1b[0m\x00 a\nb' + 'x' * 600, lambda t: t, limit=20) == 'red a b' + 'x' * 13 + '...'


def test_only_websocket_urls_with_a_host_are_taken_and_never_named():
    with pytest.raises(CloudExecError) as caught:
        websocket.check_url('https://h/x?s=SECRET', 'the URI', 'pass it unchanged')
    assert caught.value.code == 'InvalidParameter' and 'SECRET' not in str(caught.value)
