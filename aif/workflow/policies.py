"""The policy words of an AIW (placement, profile, restarts), stated once.

Plain ``Literal`` types with no imports, so the daemon's job records and the client
that reads them share the workflow's own spelling without loading the YAML model.
"""

from __future__ import annotations

from typing import Literal

#: Where an AIM's host runs.
Placement = Literal["inproc", "process", "remote", "ray"]
#: The MPAI-AIF API profile of a workflow.
Profile = Literal["basic", "secure"]
#: What the daemon does when an AIM fails: give up, or restart the job.
RestartPolicy = Literal["never", "on-failure"]
#: What happens to a live job when its daemon restarts.
OnRestart = Literal["requeue", "interrupt"]
