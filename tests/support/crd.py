"""Published CRD schemas, offline: prometheus-operator's (ServiceMonitor, PrometheusRule) and
the Gateway API's (HTTPRoute).

The npm packages @kubernetes-models/prometheus-operator and @kubernetes-models/gateway-api ship
validators compiled from the CRDs' OpenAPI schemas; .ci/setup installs them into the test
cache and node runs them here. (The schemas' CEL rules, x-kubernetes-validations, are not
compiled into them: those only an API server checks.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("LEPTON_TEST_CACHE", "/var/cache/lepton-ci")) / "npm"
SCHEMAS = (
    CACHE
    / "crd-prometheus-operator-6.0.0"
    / "node_modules"
    / "@kubernetes-models"
    / "prometheus-operator"
    / "_schemas"
)
GATEWAY_API = (
    CACHE
    / "crd-gateway-api-2.0.0"
    / "node_modules"
    / "@kubernetes-models"
    / "gateway-api"
    / "_schemas"
)
# apiVersion -> (where its validators are, the prefix of their module names)
MODULES = {
    "monitoring.coreos.com/v1": (
        SCHEMAS,
        "ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1",
    ),
    "gateway.networking.k8s.io/v1": (GATEWAY_API, "IoK8sSigsGatewayApiApisV1"),
}
_RUN = """
const { validate } = await import(process.argv[1]);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const ok = validate(JSON.parse(input));
if (!ok) console.log(JSON.stringify(validate.errors));
process.exit(ok ? 0 : 1);
"""


def available() -> bool:
    return all(d.is_dir() for d, _ in MODULES.values()) and shutil.which("node") is not None


def violations(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """What the published schema of the object's kind says is wrong with it ([] if nothing)."""
    where, prefix = MODULES.get(obj["apiVersion"], (CACHE, "-"))
    module = where / f"{prefix}{obj['kind']}.js"
    if not module.is_file():
        raise LookupError(f"no published schema for {obj['apiVersion']} {obj['kind']}")
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", _RUN, str(module)],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not proc.stdout.strip()):
        raise RuntimeError(f"node could not run the validator: {proc.stderr[-500:]}")
    return json.loads(proc.stdout) if proc.returncode else []
