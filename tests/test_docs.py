"""The reference parts of docs/ are generated from the code and must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_security_recipe_works_as_written(tmp_path):
    """docs/security.md's ten-minute recipe, run line by line (on a free port instead of
    9093): alice reads orders, and her produce and her read of payroll are refused."""
    import contextlib
    import os
    import re
    import shutil
    import signal

    from tests.conftest import free_port

    if shutil.which("kcat") is None:
        import pytest

        pytest.skip("kcat is not installed (scripts/test.sh installs it)")
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "security.md").read_text(), re.S)[:5]
    script = "\n".join(blocks).replace("9093", str(free_port())) + "\nkill %1; wait\n"  # stop the broker
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever a failed run left behind
    assert "User:alice   ALLOW        READ        TOPIC           orders" in out, out
    assert "\nfirst-order\n" in out, out
    assert out.count("Topic authorization failed") == 2, out


def test_the_queue_examples_run_as_written(tmp_path):
    """docs/queues.md's Python blocks, in order, against a real broker (on a free port)."""
    import re

    from tests.conftest import Broker

    broker = Broker(tmp_path / "data")
    broker.start()
    try:
        blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "queues.md").read_text(), re.S)
        assert len(blocks) == 4
        script = "\n".join(blocks).replace("127.0.0.1:9092", broker.bootstrap)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("doing job") == 20
    finally:
        broker.stop()
