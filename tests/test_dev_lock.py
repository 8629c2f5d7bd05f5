"""Two `deepmarket dev up`/`down` on one state directory: the second refuses, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepmarket.devcluster import devenv
from deepmarket.errors import UserError

HOLD = """
import sys, time
from pathlib import Path
from deepmarket.devcluster.devenv import state_lock
with state_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_up_or_down_on_the_same_state_dir_is_refused_while_one_runs(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {"DEEPMARKET_DEV_DIR": str(tmp_path)}
        for command in (devenv.up, devenv.down):
            with pytest.raises(UserError) as err:
                command(lambda _msg: None, env)
            message = str(err.value)
            assert f"pid {holder.pid}" in message and "DEEPMARKET_DEV_DIR" in message
            assert "\n" not in message
        assert not (tmp_path / "state.json").exists()  # nothing was started or removed
    finally:
        holder.stdin.close()
        holder.wait(10)
    # Released: the next one gets the lock (`down` with nothing recorded is a no-op).
    said: list[str] = []
    assert devenv.down(said.append, {"DEEPMARKET_DEV_DIR": str(tmp_path)}) == 0
    assert said == ["no dev cluster is recorded; nothing to stop"]
