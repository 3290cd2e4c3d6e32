#!/usr/bin/env bash
# The main job on the example, locally: no GitHub, no cluster. In a scratch git repository:
#   1. run + register digits v0.1.0 (gates pass), promote it to staging;
#   2. a regression the gates catch (exit 1, nothing registered);
#   3. build the image of v0.1.0 into a local registry and deploy it with podman;
#   4. v0.1.1 passes its gates but its server answers /predict wrongly: the deploy's golden
#      check fails and lepton-ci puts v0.1.0 back by itself (it never served: podman deploys
#      start the new revision beside the old one, behind an nginx splitter);
#   5. the same v0.1.1 as a canary (steps 10/50/100) under a steady client: the first step's
#      checks fail, the canary goes away, and it answered about a tenth of the requests.
# Exits 0 when every step behaved as it should. Needs what .ci/setup installs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/.ci/setup" >/dev/null
export PATH="$here/.venv/bin:$PATH"

work="$(mktemp -d "${TMPDIR:-/tmp}/lepton-demo.XXXXXX")"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Local services: a registry and podman with this demo's own configuration.
reg_port="$(free_port)"; app_port="$(free_port)"
registry="127.0.0.1:$reg_port"
mkdir -p "$work/services"
cat > "$work/services/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $work/services/registry-data}}
http: {addr: $registry}
health: {storagedriver: {enabled: false}}
log: {level: error}
YAML
docker-registry serve "$work/services/registry.yml" > "$work/services/registry.log" 2>&1 &
registry_pid=$!
export CONTAINERS_CONF="$work/services/containers.conf"
export CONTAINERS_STORAGE_CONF="$work/services/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$work/services/registries.conf"
printf '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n' > "$CONTAINERS_CONF"
printf '[storage]\ndriver = "overlay"\nrunroot = "%s/run"\ngraphroot = "%s/graph"\n' "$work/services" "$work/services" > "$CONTAINERS_STORAGE_CONF"
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$registry" > "$CONTAINERS_REGISTRIES_CONF"
cleanup() {
  if [ -n "${client_pid:-}" ]; then kill "$client_pid" 2>/dev/null || true; fi
  podman pod rm -af -t 0 >/dev/null 2>&1 || true
  # the splitters (nginx) lepton-ci started for the demo's environments
  for pid_file in "$work"/repo/.lepton/deploy/*/*/*.splitter/nginx.pid; do
    if [ -f "$pid_file" ]; then kill -QUIT "$(cat "$pid_file")" 2>/dev/null || true; fi
  done
  kill "$registry_pid" 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p "$work/repo"
cp -r "$here/examples/digits/." "$work/repo/"
cd "$work/repo"
rm -rf model.joblib predictions.json metrics.json .lepton __pycache__
sed -i "s#127.0.0.1:5000#$registry#g; s#host_port: 18080#host_port: $app_port#" lepton.yaml
git init -q -b main
git config user.name >/dev/null || git config user.name "lepton-ci demo"
git config user.email >/dev/null || git config user.email "demo@localhost"
git add -A && git commit -qm "feat: digits classifier"

say "1. first run: train, evaluate, record evidence (no baseline yet)"
lepton-ci run
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
if [ "$code" -ne 1 ]; then echo "demo FAILED: the regression was not caught (exit $code)" >&2; exit 1; fi
lepton-ci run --no-fail | grep -m1 "run-cache" || true
git revert --no-edit HEAD >/dev/null  # back to the good params

say "3. build the v0.1.0 image into the local registry and deploy it to staging (podman)"
podman import -q /var/cache/lepton-ci/pybase-bookworm.tar localhost/pybase:bookworm >/dev/null
podman push -q --tls-verify=false localhost/pybase:bookworm "$registry/pybase:bookworm"
git checkout -q digits@v0.1.0
lepton-ci run >/dev/null
lepton-ci build
lepton-ci deploy staging
curl -s -X POST "http://127.0.0.1:$app_port/predict" -H 'Content-Type: application/json' \
  -d "{\"instances\": [$(python3 -c 'import yaml;print(yaml.safe_load(open("lepton.yaml"))["models"]["digits"]["deploy"]["environments"]["staging"]["checks"]["golden"][0]["request"]["instances"][0])')]}"
echo
git checkout -q main

say "4. v0.1.1: gates pass, but its server answers /predict wrongly; deploy must revert"
sed -i 's/        preds = \[int(c) for c in self.model.predict(instances)\]/        preds = [(int(c) + 1) % 10 for c in self.model.predict(instances)]/' serve.py
git commit -qam "perf: faster response path"
lepton-ci run >/dev/null
lepton-ci register
lepton-ci build
set +e
lepton-ci deploy staging
code=$?
set -e
if [ "$code" -ne 1 ]; then echo "demo FAILED: the broken release was not reverted (exit $code)" >&2; exit 1; fi
lepton-ci history staging
serving="$(curl -s "http://127.0.0.1:$app_port/readyz")"
echo "now serving: $serving"
case "$serving" in *'"v0.1.0"'*) ;; *) echo "demo FAILED: v0.1.0 is not serving" >&2; exit 1;; esac


say "5. the same v0.1.1 as a canary (10% -> 50% -> 100%) under a request every 20 ms"
python3 - <<'PY'
import yaml
cfg = yaml.safe_load(open("lepton.yaml"))
env = cfg["models"]["digits"]["deploy"]["environments"]["staging"]
env["rollout"] = {"strategy": "canary", "steps": [10, 50, 100], "interval": 3}
env.pop("watch")  # no Prometheus in the demo: the deploy checks judge each step
yaml.safe_dump(cfg, open("lepton.yaml", "w"), sort_keys=False)
PY
git commit -qam "ci: canary rollouts in staging"
body="{\"instances\": [$(python3 -c 'import yaml;print(yaml.safe_load(open("lepton.yaml"))["models"]["digits"]["deploy"]["environments"]["staging"]["checks"]["golden"][0]["request"]["instances"][0])')]}"
(while :; do
   curl -s -m 5 -X POST "http://127.0.0.1:$app_port/predict" -H 'Content-Type: application/json' \
     -d "$body" || echo '{"failed": true}'
   echo; sleep 0.02
 done > "$work/client.log") &
client_pid=$!
set +e
lepton-ci deploy staging
code=$?
set -e
kill "$client_pid"; wait "$client_pid" 2>/dev/null || true; client_pid=
if [ "$code" -ne 1 ]; then echo "demo FAILED: the broken canary was not aborted (exit $code)" >&2; exit 1; fi
lepton-ci history staging | tail -2
answered_new="$(grep -c '"v0.1.1"' "$work/client.log" || true)"
answered_old="$(grep -c '"v0.1.0"' "$work/client.log" || true)"
failed="$(grep -c '"failed"' "$work/client.log" || true)"
echo "the client: $answered_old answers from v0.1.0, $answered_new from the canary v0.1.1, $failed failed"
if [ "$failed" -ne 0 ]; then echo "demo FAILED: requests failed during the canary" >&2; exit 1; fi
serving="$(curl -s "http://127.0.0.1:$app_port/readyz")"
case "$serving" in *'"v0.1.0"'*) ;; *) echo "demo FAILED: v0.1.0 is not serving" >&2; exit 1;; esac

echo
echo "demo OK: v0.1.0 registered and deployed, the regression was caught (exit 1), the re-run hit"
echo "the cache, the broken v0.1.1 was reverted to v0.1.0 automatically, and as a canary it"
echo "answered a slice of the requests before it was taken away (none failed)."
echo "scratch repository: $work/repo  (try: lepton-ci -C $work/repo history digits)"
