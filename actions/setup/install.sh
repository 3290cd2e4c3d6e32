#!/usr/bin/env bash
# Set lepton-ci up for this job (bootstrap.py does the work). Checked here first, before any
# Python of ours runs, each refused in one line: the runner OS and the Python version.
# Portable to macOS's bash 3.2. Usage: install.sh [check]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The action's `python` input, else the one an earlier setup in this job chose, else python3.
py="${LEPTON_INPUT_PYTHON:-${LEPTON_PYTHON:-python3}}"

fail() {
  if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
    # the message may quote the `python` input: a line break in it must not start a command
    local msg="${1//%/%25}"
    msg="${msg//$'\r'/%0D}"
    echo "::error title=lepton-ci setup::${msg//$'\n'/%0A}"
  else
    echo "error: $1" >&2
  fi
  exit 1
}

case "${RUNNER_OS:-$(uname -s)}" in
  Linux | macOS | Darwin) ;;
  *) fail "lepton-ci runs on Linux and macOS runners (ubuntu-*, macos-*); this is ${RUNNER_OS:-$(uname -s)}. Use runs-on: ubuntu-latest for the job that runs lepton-ci." ;;
esac

command -v -- "$py" >/dev/null 2>&1 ||
  fail "Python interpreter '$py' not found. Add actions/setup-python (python-version: '3.12') before this step, or set the action's python input to a Python 3.11+ interpreter."
version="$("$py" -S -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null)" ||
  fail "'$py' did not run as a Python interpreter. Set the action's python input to a Python 3.11+ interpreter."
case "$version" in
  3.1[1-9].* | 3.[2-9][0-9].* | [4-9].*) ;;
  *) fail "lepton-ci needs Python 3.11 or newer; '$py' is $version (ubuntu-22.04's python3 is 3.10). Add uses: actions/setup-python with python-version: '3.12' before this step, or set the action's python input to a 3.11+ interpreter." ;;
esac
# -S: the standard library is all bootstrap.py needs; the interpreter's site-packages
# (slow .pth files, a user's packages) stay out of it.
exec "$py" -S "$here/bootstrap.py" "$@"
