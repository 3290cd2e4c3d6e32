"""A user's deploy templates against the Kubernetes API schemas, when kubernetes-validate is
installed (it ships the schemas; nothing is fetched). Our own templates are held to 1.25 and
1.37 by the tests; a user's are checked against the newest version only, so a field newer
than 1.25 that their cluster has is no error, while a misspelt or unknown one is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lepton_ci.core.errors import ConfigError

NEWEST = "1.37"


def check(doc: dict[str, Any], template: Path) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        return
    meta = doc.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    what = f"{doc.get('kind')} {name}".strip()
    try:
        kubernetes_validate.validate(doc, NEWEST, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return  # a custom resource (or a removed API): its schema is not in the package
    except kubernetes_validate.ValidationError as e:
        at = ".".join(str(p) for p in e.path) or "the object"
        raise ConfigError(
            f"template {template}: {what} is not valid Kubernetes {NEWEST}: {e.message} (at {at})",
            hint="fix the template; `kubectl explain` shows the fields of each kind",
        ) from None
