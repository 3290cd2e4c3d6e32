#!/usr/bin/env bash
# The main job on the example, locally (no GitHub, no cluster): in a scratch git repository,
# run + register a first digits version, then commit a regression that a gate must catch.
# Exits 0 when everything behaved as it should, including the gate failing the second run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/.ci/setup" >/dev/null
export PATH="$here/.venv/bin:$PATH"

work="$(mktemp -d "${TMPDIR:-/tmp}/lepton-demo.XXXXXX")"
cp -r "$here/examples/digits/." "$work/"
rm -f "$work/model.json" "$work/metrics.json"
cd "$work"
git init -q -b main
git config user.name >/dev/null || git config user.name "lepton-ci demo"
git config user.email >/dev/null || git config user.email "demo@localhost"
git add -A && git commit -qm "feat: digits classifier"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. first run: train, evaluate, record evidence (no baseline yet)"
lepton-ci run
say "register it as a version tag and promote it to staging"
lepton-ci register
lepton-ci promote digits v0.1.0 staging
lepton-ci versions digits

say "2. a change that trains on 60 samples: the gates must catch the regression"
sed -i 's/max_samples: null.*/max_samples: 60/' params.yaml
git commit -qam "fix: train faster on a sample"
set +e
lepton-ci run
code=$?
set -e
if [ "$code" -ne 1 ]; then
  echo "demo FAILED: the regression was not caught (exit $code)" >&2
  exit 1
fi

say "3. same inputs again: served from the run-cache, no training"
lepton-ci run --no-fail
echo
echo "demo OK: v0.1.0 registered, the regression was caught (exit 1), the re-run hit the cache."
echo "scratch repository: $work  (try: lepton-ci -C $work history digits)"
