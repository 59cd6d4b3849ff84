# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The collection's version, sent in user agents so providers can tell our calls apart."""

from __future__ import annotations

COLLECTION_VERSION = '0.1.0'
USER_AGENT = f'cloudexec.core/{COLLECTION_VERSION}'
