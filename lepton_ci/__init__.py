"""lepton-ci: version, gate and ship ML models from git, in CI, with evidence."""

__version__ = "0.1.0"
