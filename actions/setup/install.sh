#!/usr/bin/env bash
# Install lepton-ci from this action's own checkout into a virtualenv, once per runner:
# a venv whose stamp matches the source is reused. Puts lepton-ci on the job's PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
digest="$(cd "$root" && find pyproject.toml lepton_ci -type f -name '*.py' -o -type f -name '*.toml' \
  -o -type f -name '*.json' -o -type f -name '*.j2' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
venv="${LEPTON_VENV:-${RUNNER_TEMP:-/tmp}/lepton-ci-venv}"
if [ ! -f "$venv/.lepton-ci-$digest" ]; then
  "${LEPTON_PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$root[image,deploy]"
  touch "$venv/.lepton-ci-$digest"
fi
# Only lepton-ci goes on PATH: the venv's own python3 must not shadow the one the user's
# train and evaluate commands expect (with their packages).
bin="$venv-bin"
mkdir -p "$bin"
ln -sf "$venv/bin/lepton-ci" "$bin/lepton-ci"
echo "$bin" >> "${GITHUB_PATH:-/dev/null}"
echo "bin=$bin" >> "${GITHUB_OUTPUT:-/dev/null}"
"$bin/lepton-ci" --version
