"""Registers Transcode Flow's listener and priority strategy with Airflow."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from transcode_flow import listeners
from transcode_flow.priority import JobPriorityWeight


class TranscodeFlowPlugin(AirflowPlugin):
    name = "transcode_flow"
    listeners = [listeners]
    priority_weight_strategies = [JobPriorityWeight]
