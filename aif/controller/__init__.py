"""The MPAI-AIF Controller: it registers AIMs, wires their ports and runs AIWs.

- ``controller``: ``Controller``, its phases (setup → start → shutdown → cleanup) and
  the AIM API dispatcher; ``run``: ``WorkflowRun``, its states and result.
- ``plan``: a resolved AIW turned into what to start and connect; ``wiring``: the
  channels the controller itself reads or feeds; ``host_messages``: what each AIM API
  message from a host does to a run; ``supervision``: heartbeats, failures, completion;
  ``liveness``: the CPU time that tells a silent AIM that is busy from one that hangs.
- ``secure_profile``: the secure profile's keys, storage grants and attestation.
- ``launchers/``: the seam between the Controller and the place an AIM runs.

May import: ``aif.workflow``, ``aif.host`` (only through ``launchers.local``, for
inproc AIMs), ``aif.aims``, ``aif.api`` and below; never ``aif.daemon``, ``aif.cli``.
"""
