"""``python -m aif.aims.analog.ddp``: one rank of a data-parallel job.

Without arguments, a rank the analog simulator started (``AIF_DDP_CONTROL`` names its
socket); with an experiment file, a rank started by torchrun, srun or by hand.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from aif.aims.analog.ddp.link import CONTROL_ENV, RankPlace
from aif.aims.analog.ddp.rank import die_with_parent, run_rank
from aif.errors import AIFError


def main(argv: list[str] | None = None) -> None:
    """A rank the simulator started (``AIF_DDP_CONTROL`` set, no arguments), or one
    started by torchrun, srun or by hand with an experiment file (see
    :mod:`aif.aims.analog.ddp.standalone`)."""
    import argparse

    from aif.fast_exit import exit_now

    parser = argparse.ArgumentParser(
        prog="python -m aif.aims.analog.ddp",
        description="One rank of a data-parallel analog training job. Without arguments: "
        "a rank the analog simulator started. With an experiment file: a rank started by "
        "torchrun, srun or by hand, finding the others through MASTER_ADDR, MASTER_PORT, "
        "RANK and WORLD_SIZE (or Slurm's SLURM_PROCID and SLURM_NTASKS); rank 0 writes "
        "the results. See docs/multi-machine.md.",
    )
    parser.add_argument("experiment", nargs="?", type=Path, help="experiment YAML file")
    parser.add_argument("--out", type=Path, default=Path("ddp-results"), help="rank 0 writes here")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda if torch has a GPU"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        place = RankPlace.from_environ()
    except AIFError as exc:
        sys.stderr.write(f"error: {exc}\n")
        exit_now(2)
    if args.experiment is not None:
        from aif.aims.analog.ddp.standalone import run_standalone

        exit_now(run_standalone(place, args.experiment, args.out, args.device))
    die_with_parent()
    endpoint = os.environ.get(CONTROL_ENV)
    if not endpoint:
        parser.print_usage(sys.stderr)
        sys.stderr.write(
            f"error: give an experiment file, or let the analog simulator start the rank "
            f"({CONTROL_ENV} is not set)\n"
        )
        exit_now(2)
    exit_now(run_rank(place, endpoint))


if __name__ == "__main__":
    main()
