"""Shared pytest wiring.

A test whose infrastructure is missing skips with its reason on a laptop; under CI=true every
skip is turned into a failure, so nothing goes silently untested in CI.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester", "deepmarket.devcluster.pytest_plugin"]

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every prerequisite must exist: {reason}"


@pytest.fixture(scope="module", autouse=True)
def no_operator_outlives_its_module():
    """An operator process left running keeps syncing and writing in the session cluster as
    the operator's ServiceAccount, so a later module's audit-log assertions see its writes
    (test_sync_cluster's zero-write poll did). Fail the module that leaked it, and stop it."""
    yield
    import sys

    tests = sys.modules.get("test_operator_cluster")
    leaked = tests.Operator.reap() if tests is not None else []
    assert not leaked, f"operators still running at the end of the module (logs: {leaked})"
