"""Data-parallel training of one analog job on several processes (``training.distributed``).

* ``link``: what ranks and the simulator say to each other, and where a rank is
  (torch's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``, or Slurm's);
* ``supervisor``: the simulator's side: rendezvous, one process per rank, signals in,
  reports out, a rank that dies fails the job naming it;
* ``rank``: a rank's training loop: DistributedDataParallel over aihwkit's tiles, a
  share of every global batch, metrics reduced over the ranks;
* ``standalone``: a rank started by torchrun, srun or by hand, with no simulator;
* ``__main__``: ``python -m aif.aims.analog.ddp``, the rank process.

Only the simulator imports this package, and only for a job that asks for ranks.
"""
