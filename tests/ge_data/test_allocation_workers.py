"""The multi-worker wait: the manifest follows finished shards, and stopping the run stops its workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from jakiro.ge_data.allocation import wait_for_workers


def _worker(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script])


def test_reports_each_shard_as_it_lands(tmp_path):
    landing = (f"import pathlib, time\n"
               f"for i in range(2):\n"
               f"    time.sleep(0.3)\n"
               f"    pathlib.Path({str(tmp_path)!r}, f'shard_{{i:05d}}.safetensors').touch()\n"
               f"time.sleep(0.3)\n")
    counts = []
    processes = [_worker(landing), _worker("import time; time.sleep(0.2)")]
    wait_for_workers(processes, tmp_path, lambda: counts.append(len(list(tmp_path.glob("shard_*")))),
                     poll_seconds=0.05)
    assert counts == [1, 2]
    assert [p.returncode for p in processes] == [0, 0]


def test_sigterm_terminates_workers_and_reports_what_finished(tmp_path):
    (tmp_path / "shard_00000.safetensors").touch()
    processes = [_worker("import time; time.sleep(60)") for _ in range(2)]
    counts = []

    def land_then_interrupt():
        time.sleep(0.3)
        (tmp_path / "shard_00001.safetensors").touch()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=land_then_interrupt, daemon=True).start()
    handler_before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        wait_for_workers(processes, tmp_path, lambda: counts.append(len(list(tmp_path.glob("shard_*")))),
                         poll_seconds=10.0)
    assert time.monotonic() - started < 10
    assert all(p.poll() is not None for p in processes), "workers must not outlive an interrupted run"
    assert counts == [2]
    assert signal.getsignal(signal.SIGTERM) == handler_before, "the caller's SIGTERM handler comes back"
