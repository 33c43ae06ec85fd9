"""Worker processes for concurrency tests (importable from every test: ``pythonpath = tests``).

Each worker runs a Python snippet that prints ``ready`` (and its pid) once its imports are
done, then answers every line it reads on stdin with one line. Sending a line to all
workers back to back makes them act within a millisecond of each other, so the tests race
for real without paying the start-up of a process per attempt.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_workers(code, count, *args):
    """``count`` processes running ``code`` (with ``args``); returns ``(procs, pids)``
    once every one is ready."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(count)]
    pids = []
    for proc in procs:
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["ready"], f"worker did not start: {ready}"
        pids.append(int(ready[1]))
    return procs, pids


def broadcast(procs, line):
    """Send ``line`` to every worker, then collect one answer line from each."""
    for proc in procs:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    return [proc.stdout.readline().strip() for proc in procs]


def stop_workers(procs):
    """Close the workers' input and wait for them to exit (killing any that hang)."""
    for proc in procs:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=60))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes
