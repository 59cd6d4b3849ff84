# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Sans-I/O implementation of the SSM Session Manager data channel (the protocol behind ECS Exec)."""

from __future__ import annotations
