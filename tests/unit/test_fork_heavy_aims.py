"""Which AIMs of a run a warm worker forks (``fork_heavy_aims``): the default-placed ones
whose type imports heavy modules, when the run has a worker at all; an AIW that writes
``placement: inproc`` keeps it, and warm-ups alone do not make an AIM heavy."""

from __future__ import annotations

from aif.controller.plan import fork_heavy_aims, plan_run
from aif.workflow import load_workflow_text, resolve

HEAVY = "tests.helpers.warm_aims:WarmProbe"  # warm_modules = ("torch",)


def placements(text: str) -> dict[str, str]:
    plan = fork_heavy_aims(plan_run(resolve(load_workflow_text(text))))
    return {name: aim.placement for name, aim in plan.aims.items()}


def test_a_default_placed_heavy_aim_is_forked_when_the_run_has_a_worker() -> None:
    text = f"""
name: w
aims:
  simulator: {{type: {HEAVY}, placement: process}}
  validator: {{type: {HEAVY}}}
  written: {{type: {HEAVY}, placement: inproc}}
  light: {{type: source}}
  reporter: {{type: analog-reporter}}
inputs: {{reporter.metrics: [], reporter.results: [], reporter.rejections: []}}
"""
    assert placements(text) == {
        "simulator": "process",
        "validator": "process",  # left to the default: forked
        "written": "inproc",  # the AIW said so
        "light": "inproc",  # no warm modules
        "reporter": "inproc",  # only a warm-up: not heavy
    }


def test_without_a_process_aim_that_opts_in_nothing_moves() -> None:
    text = f"""
name: w
aims:
  validator: {{type: {HEAVY}}}
"""
    assert placements(text) == {"validator": "inproc"}
