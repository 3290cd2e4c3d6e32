"""prometheus-operator's published CRD schemas (ServiceMonitor, PrometheusRule), offline.

The npm package @kubernetes-models/prometheus-operator ships validators compiled from the
CRDs' OpenAPI schemas; .ci/setup installs it into the test cache and node runs them here.
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
_RUN = """
const { validate } = await import(process.argv[1]);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const ok = validate(JSON.parse(input));
if (!ok) console.log(JSON.stringify(validate.errors));
process.exit(ok ? 0 : 1);
"""


def available() -> bool:
    return SCHEMAS.is_dir() and shutil.which("node") is not None


def violations(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """What the published schema of the object's kind says is wrong with it ([] if nothing)."""
    module = (
        SCHEMAS
        / f"ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1{obj['kind']}.js"
    )
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
