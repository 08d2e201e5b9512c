"""Running grantflow as an operator does: subprocesses in their own process groups (stopped, or killed
mid-step, group and all), their logs, waits on ports and conditions, and the ``grantflow`` CLI with
settings given as ``GRANTFLOW_*`` variables. Shared by the production-like run and the reliability rig."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

WAIT = 90.0


def wait_for(what: str, check: Callable[[], T | None], timeout: float = WAIT, every: float = 0.3) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = WAIT) -> None:
    def answers() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(f"127.0.0.1:{port}", answers, timeout)


@dataclass
class Processes:
    """Subprocesses, each in its own process group (so a kill takes everything it started)."""

    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.running[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL, no warning: the process and everything in its group die mid-step."""
        process = self.running.pop(name)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def stop(self, name: str) -> int | None:
        """SIGTERM, as an orchestrator stops a process; SIGKILL after 20 s."""
        process = self.running.pop(name)
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return process.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


def grantflow_env(settings: dict[str, str], state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANTFLOW_")}
    env.update({f"GRANTFLOW_{name.upper()}": value for name, value in settings.items()})
    env["GRANTFLOW_STATE_DIR"] = str(state_dir)
    return env


def run_grantflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``grantflow ARGS`` as the operator runs it; with ``check``, a non-zero exit fails with its output."""
    result = subprocess.run(
        [sys.executable, "-m", "grantflow", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result
