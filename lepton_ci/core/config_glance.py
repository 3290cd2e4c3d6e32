"""What a glance at `lepton.yaml` answers without validating it.

Validation needs pydantic, whose import alone costs 0.1-0.15 s: `history NAME` asks only
whether NAME is a deploy environment, and reads the YAML for that.
"""

from __future__ import annotations

from lepton_ci.core.config_file import MAX_BYTES, find_config
from lepton_ci.core.errors import ConfigError


def names_environment(explicit: str | None, name: str) -> bool:
    """`history NAME`: is NAME a deploy environment (and no model)? Without a config, no.
    A glance at the YAML answers the usual "no"; a "yes" is confirmed by the validated config,
    so an invalid file answers no, as it always did."""
    try:
        path = find_config(explicit)
    except ConfigError:
        return False
    # A file that never says `environments` names none (PyYAML's import is 25 ms more).
    try:
        with path.open("rb") as f:
            if b"environments" not in f.read(MAX_BYTES + 1):
                return False
    except OSError:
        return False
    from lepton_ci.core import yamlfile

    try:
        text = yamlfile.read_text(path, "config", ConfigError, max_bytes=MAX_BYTES)
        data, _ = yamlfile.load(text, str(path), "config", ConfigError)
        models = data["models"]
        if name in models or not any(
            name in ((m or {}).get("deploy") or {}).get("environments", {}) for m in models.values()
        ):
            return False
    except ConfigError:
        return False
    except (TypeError, KeyError, AttributeError):
        pass  # a shape the glance does not know: the validated config decides
    from lepton_ci.core.config import load

    try:
        cfg = load(path).config
    except ConfigError:
        return False
    return name not in cfg.models and any(
        m.deploy and name in m.deploy.environments for m in cfg.models.values()
    )
