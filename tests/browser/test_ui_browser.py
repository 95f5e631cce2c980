"""The web UI in a real browser against a real daemon (issue 18).

Headless Chromium composes an experiment from a template through the form, sees the
validator's problem at its field, fixes it, submits, and watches the job finish with
its curves drawn; suspends, resumes and cancels a running job; compares two finished
jobs; and is refused without the token. Experiments are tiny (digits, 200 samples,
1-2 epochs), so jobs finish in seconds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.browser.conftest import UI, screenshot

pytestmark = pytest.mark.timeout(180)

#: A tiny MLP with drift inference: seconds from submission to results.
TINY: dict[str, Any] = {
    "name": "tiny-mlp",
    "dataset": {"name": "digits", "max_train": 200, "max_test": 100},
    "model": {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 10}]},
    "training": {"epochs": 2},
    "inference": {"drift_times": [1, 86400], "repetitions": 1},
}
FINISHED = 120_000  # ms a job may take to finish, on a loaded machine


def csrf(page: Any) -> str:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return str(cookies["aif_csrf"])


def submit(page: Any, ui: UI, experiment: dict[str, Any]) -> str:
    reply = page.request.post(
        f"{ui.base}/api/jobs",
        data={"experiment": experiment, "priority": 0},
        headers={"X-AIF-CSRF": csrf(page)},
    )
    assert reply.status == 201, reply.text()
    return str(reply.json()["job"]["id"])


def wait_state(page: Any, ui: UI, job: str, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = page.request.get(f"{ui.base}/api/jobs/{job}").json()["job"]["state"]
        if seen == state:
            return
        assert seen not in ("failed", "cancelled") or seen == state, f"job {job} {seen}"
        time.sleep(0.2)
    raise AssertionError(f"job {job} is {seen}, not {state}, after {timeout} s")


def set_field(page: Any, path: str, value: str) -> None:
    """Type ``value`` into the form field at ``path`` and leave it (a change event)."""
    field = page.locator(f"[data-path='{path}'] > :is(input, select, textarea)").first
    if field.evaluate("el => el.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)
        field.dispatch_event("change")


def test_compose_from_a_template_check_fix_submit_and_watch_it_finish(page: Any, ui: UI) -> None:
    page.goto(f"{ui.base}/compose")
    page.wait_for_selector("#form[data-ready='1']")
    page.select_option("#template-select", "shipped/hwa-cnn")
    page.click("#template-start")
    page.wait_for_function("() => document.querySelector('#yaml').value.includes('name: hwa-cnn')")

    set_field(page, "name", "ui-hwa-cnn")
    set_field(page, "dataset.max_train", "200")
    set_field(page, "dataset.max_test", "100")
    set_field(page, "training.epochs", "2")
    set_field(page, "inference.repetitions", "1")
    set_field(page, "inference.drift_times", "1s, 1d")
    last = page.locator("#layers .layer").count() - 1
    set_field(page, f"model.layers.{last}.out_features", "7")
    yaml = page.input_value("#yaml")
    assert "name: ui-hwa-cnn" in yaml and "epochs: 2" in yaml and "out_features: 7" in yaml

    page.click("#check")
    problem = page.locator(f".layer[data-path='model.layers.{last}'].invalid .problem")
    problem.wait_for()
    assert "10 classes" in problem.text_content()
    screenshot(page, "composer")

    set_field(page, f"model.layers.{last}.out_features", "10")
    page.click("#check")
    page.wait_for_selector("#check-ok")
    assert page.locator(".invalid").count() == 0

    page.click("#submit")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("main[data-state='succeeded']", timeout=FINISHED)
    # Two epochs of accuracy and loss; accuracy after 2 drift times, with and without.
    page.wait_for_function(
        "() => +document.querySelector('#chart-training').dataset.points >= 4"
        " && +document.querySelector('#chart-drift').dataset.points >= 4"
    )
    assert page.locator("#chart-training canvas").count() == 1
    assert "ui-hwa-cnn" in page.text_content("#job-experiment")
    assert page.text_content("#job-log").strip()
    href = page.get_attribute("#job-results", "href")
    download = page.request.get(f"{ui.base}{href}")
    assert download.status == 200 and download.body()[:2] == b"PK"
    screenshot(page, "job")


def test_suspend_resume_and_cancel_a_running_job(page: Any, ui: UI) -> None:
    # All of digits in batches of 4: a few epochs a second, so it is still running when
    # the buttons are pressed (it is cancelled long before its last epoch).
    long_job = {
        "name": "ui-long",
        "dataset": {"name": "digits", "batch_size": 4},
        "model": TINY["model"],
        "training": {"epochs": 2000},
    }
    page.goto(f"{ui.base}/compose")
    page.wait_for_selector("#form[data-ready='1']")
    # The YAML pane edits the form too.
    page.fill("#yaml", json.dumps(long_job))
    page.wait_for_function("() => document.querySelector('#f-name').value === 'ui-long'")
    assert page.input_value("#f-training-epochs") == "2000"
    page.click("#submit")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("main[data-state='running']", timeout=FINISHED)
    # Epochs arrive live on the chart.
    page.wait_for_function(
        "() => +document.querySelector('#chart-training').dataset.points >= 2", timeout=FINISHED
    )
    page.wait_for_selector("#job-aims tr")  # a running job's AIMs, with their capabilities
    page.click("#job-suspend")
    page.wait_for_selector("main[data-state='suspended']")
    page.click("#job-resume")
    page.wait_for_selector("main[data-state='running']")
    page.click("#job-cancel")
    page.wait_for_selector("main[data-state='cancelled']")


def test_compare_two_finished_jobs_from_the_jobs_page(page: Any, ui: UI) -> None:
    # Experiment text is data, never markup: this description must show as it is.
    markup = '<img src=x onerror="window.pwned = 1">'
    one = submit(
        page, ui, {**TINY, "name": "ui-one", "training": {"epochs": 1}, "description": markup}
    )
    two = submit(page, ui, {**TINY, "name": "ui-two", "training": {"epochs": 2}})
    wait_state(page, ui, one, "succeeded")
    wait_state(page, ui, two, "succeeded")

    page.goto(ui.base + "/")
    for job in (one, two):
        page.locator(f"#jobs-body tr[data-id='{job}'][data-state='succeeded'] .select-job").check()
    screenshot(page, "jobs")
    page.click("#compare-selected")
    page.wait_for_url("**/compare?jobs=*")
    page.wait_for_selector("#compare-results[data-ready='1']")
    differences = page.text_content("#compare-differences")
    assert "training.epochs" in differences
    assert markup in differences and page.locator("#compare-differences img").count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert +int(page.get_attribute("#compare-drift", "data-points") or 0) >= 4
    assert +int(page.get_attribute("#compare-training", "data-points") or 0) == 3
    screenshot(page, "compare")


def test_several_values_of_an_rpu_field_make_a_sweep(page: Any, ui: UI) -> None:
    page.goto(f"{ui.base}/compose")
    page.wait_for_selector("#form[data-ready='1']")
    page.locator("[data-path='rpu'] .section-toggle").check()
    page.locator("[data-path='rpu.config'] .sweep-toggle").click()
    page.fill(
        "[data-path='rpu.config'] .sweep-values", "InferenceRPUConfig, TorchInferenceRPUConfig"
    )
    page.click("[data-path='rpu.config'] .sweep-apply")
    page.wait_for_selector("#sweep [data-path='sweep.TorchInferenceRPUConfig.config']")
    yaml = page.input_value("#yaml")
    assert "sweep:" in yaml and "rpu:" not in yaml
    sweep = page.evaluate("() => jsyaml.load(document.querySelector('#yaml').value).sweep")
    assert sweep == {
        "InferenceRPUConfig": {"config": "InferenceRPUConfig"},
        "TorchInferenceRPUConfig": {"config": "TorchInferenceRPUConfig"},
    }
    page.click("#check")
    page.wait_for_selector("#check-ok")


def test_a_request_without_the_token_is_refused(browser: Any, ui: UI) -> None:
    stranger = browser.new_context()
    try:
        assert stranger.request.get(f"{ui.base}/api/jobs").status in (401, 403)
        assert stranger.request.get(f"{ui.base}/?token=not-the-token").status in (401, 403)
        page = stranger.new_page()
        page.goto(ui.base + "/")
        assert page.locator("#jobs-body tr").count() == 0
    finally:
        stranger.close()


def test_a_post_without_the_csrf_header_is_refused(page: Any, ui: UI) -> None:
    reply = page.request.post(f"{ui.base}/api/check", data={"experiment": TINY})
    assert reply.status == 403
    ok = page.request.post(
        f"{ui.base}/api/check", data={"experiment": TINY}, headers={"X-AIF-CSRF": csrf(page)}
    )
    assert ok.status == 200 and ok.json()["ok"] is True
