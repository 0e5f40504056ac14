"""``envcap replay -- CMD``: rerun a workload in the snapshot's image and report what differs.

The rooms: ``request`` (what was asked), ``image`` (which image), ``preflight`` (can this host run
it), ``container_probe`` (snapshot B), ``run`` (one run of the workload), ``outputs`` (what it
wrote, against what), ``report``/``render`` (the result and its renderings), and ``session``, which
runs them in order and saves the report whatever happens.
"""

from __future__ import annotations

from envcap.replay.image import IMAGE_MEMO, REPLAYS
from envcap.replay.report import ReplayReport, ReplayStatus
from envcap.replay.request import GPU_CHOICES, GpuChoice, ReplayRequest, decide_gpus, new_replay_id
from envcap.replay.run import describe_exit, workload_env
from envcap.replay.session import REPLAY_LABEL, ReplayFailed, ReplayInterrupted, replay

__all__ = ["GPU_CHOICES", "IMAGE_MEMO", "REPLAYS", "REPLAY_LABEL", "GpuChoice", "ReplayFailed", "ReplayInterrupted",
           "ReplayReport", "ReplayRequest", "ReplayStatus", "decide_gpus", "describe_exit", "new_replay_id", "replay",
           "workload_env"]
