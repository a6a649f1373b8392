"""The peers of ``--peers``: one module per system, each installing its server (on request, from
Debian's packages), starting it on 127.0.0.1 in a temporary directory, driving it and stopping it.
``run_peer(name, ...)`` returns that peer's rows.

Debian's maintainer scripts would start each service at install time; the install runs with a
``policy-rc.d`` that forbids that (unless one is already in place), so the only servers running
are the ones the benchmark starts itself, in their own process groups.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.clients import ROOT, KafkaClient
from benchmarks.model import Row, Sizes

POLICY = Path("/usr/sbin/policy-rc.d")
_apt_updated = False


def apt_install(packages: list[str], binaries: list[str]) -> None:
    """apt-get install ``packages`` unless every one of ``binaries`` is already there."""
    global _apt_updated
    if all(shutil.which(b) or Path(b).exists() for b in binaries):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(f"{binaries} missing and apt-get needs root: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    created = False
    if not POLICY.exists():
        POLICY.write_text("#!/bin/sh\n# written by strom's benchmarks while installing: start nothing\nexit 101\n")
        POLICY.chmod(0o755)
        created = True
    try:
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
            _apt_updated = True
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                       check=True, env=env, timeout=1200)
    finally:
        if created:
            with contextlib.suppress(OSError):
                POLICY.unlink()


_pip_done = False


def pip_bench() -> None:
    """Install the ``bench`` extra (the peers' Python clients) into this interpreter."""
    global _pip_done
    if _pip_done:
        return
    try:
        import hiredis  # noqa: F401
        import nats  # noqa: F401
        import redis  # noqa: F401
        import rstream  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"],
                       check=True, timeout=1200)
    _pip_done = True


def deadline_loop(seconds: float) -> float:
    return time.monotonic() + seconds


def run_peer(name: str, client: KafkaClient, sizes: Sizes, workloads: set[str]) -> list[Row]:
    if name != "tansu":
        pip_bench()
    module = importlib.import_module(f"benchmarks.peers.{name}")
    return module.run(client, sizes, workloads)
