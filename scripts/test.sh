#!/usr/bin/env bash
# The one command that installs what the tests need and runs them.
# Works on a fresh Debian 12 (root, Python 3.11) from any directory; extra args go to pytest,
# e.g.  bash scripts/test.sh tests/e2e/test_admin.py -k describe
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

apt_updated=0
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
            echo "test.sh: need root (or sudo) to apt-get install $*" >&2; return 1
        fi
    fi
    if [ "$apt_updated" -eq 0 ]; then
        $sudo apt-get update -qq
        apt_updated=1
    fi
    $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# kcat: the command-line client used by tests/e2e/test_kcat.py
if ! command -v kcat >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt_install kcat
    else
        echo "test.sh: kcat is missing and apt-get is not available; kcat tests will be skipped" >&2
    fi
fi

# etcd: the metadata store of cluster mode (the cluster tests start throwaway etcd servers)
if ! command -v etcd >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt_install etcd-server
    else
        echo "test.sh: etcd is missing and apt-get is not available; cluster tests will fail" >&2
    fi
fi

# Chromium and its driver: the headless browser of tests/console/test_console_browser.py
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt_install chromium chromium-driver
    else
        echo "test.sh: chromium or chromedriver is missing and apt-get is not available; browser tests will be skipped" >&2
    fi
fi

# Node.js and kafkajs: the Node client of tests/e2e/test_kafkajs.py, pinned in tests/js/package.json
# (Debian's nodejs and npm, only when missing; kafkajs from npm, reinstalled only when the lock changes)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        node_pkgs=()
        command -v node >/dev/null 2>&1 || node_pkgs+=(nodejs)
        command -v npm >/dev/null 2>&1 || node_pkgs+=(npm)
        apt_install "${node_pkgs[@]}"
    else
        echo "test.sh: node or npm is missing and apt-get is not available; kafkajs tests will be skipped" >&2
    fi
fi
if command -v npm >/dev/null 2>&1 && ! cmp -s tests/js/package-lock.json tests/js/node_modules/.strom-lock.json; then
    npm ci --prefix tests/js --no-audit --no-fund --no-update-notifier --loglevel=error >/dev/null
    cp tests/js/package-lock.json tests/js/node_modules/.strom-lock.json
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    # Debian's python3 needs python3-venv for ensurepip
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    "$PYTHON" -m venv .venv
fi

.venv/bin/python -m pip install -q -e '.[test]'

# Types first (strict, all of src/strom; the config is [tool.mypy] in pyproject.toml): a type
# error fails the command before the tests run.
.venv/bin/python -m mypy

# Measured on 2 cores: -n 2 spreads the modules (each starts its own broker) over two workers.
# --dist loadfile keeps a module's tests on one worker so they share one broker.
set +e
.venv/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadfile "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests (exit 5): treating that as a failure" >&2
    exit 1
fi
exit "$rc"
