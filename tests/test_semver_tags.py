import pytest

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.semver import Version, bump_from_commits
from lepton_ci.versions import grammar as tags
from lepton_ci.versions.grammar import Action

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "action", "version", "stage", "counter"),
    [
        ("digits@v1.2.3", Action.REGISTER, "v1.2.3", None, None),
        ("digits@v1.2.3!#4", Action.DEREGISTER, "v1.2.3", None, 4),
        ("digits#prod#3", Action.ASSIGN, None, "prod", 3),
        ("digits#prod", Action.ASSIGN, None, "prod", None),
        ("digits#prod!#5", Action.UNASSIGN, None, "prod", 5),
        ("digits@deprecated#6", Action.DEPRECATE, None, None, 6),
        ("team/digits@v0.1.0-rc.1", Action.REGISTER, "v0.1.0-rc.1", None, None),
    ],
)
def test_gto_tag_forms(name, action, version, stage, counter):
    t = tags.parse(name)
    assert t is not None
    assert (t.action, t.version, t.stage, t.counter) == (action, version, stage, counter)


@pytest.mark.parametrize(
    "name",
    ["v1.0.0", "digits@1.2.3", "_digits@v1.0.0", "digits@v1.2", "digits#prod#x", "release-2024"],
)
def test_foreign_tags_are_ignored(name):
    assert tags.parse(name) is None


def test_version_parse_bump_and_order():
    v = Version.parse("1.2.3")
    assert str(v) == "v1.2.3" and v.plain == "1.2.3"
    assert str(v.bump("patch")) == "v1.2.4"
    assert str(v.bump("minor")) == "v1.3.0"
    assert str(v.bump("major")) == "v2.0.0"
    assert str(Version.parse("v1.3.0-rc.1").bump("patch")) == "v1.3.0"
    ordered = sorted(
        ["v1.0.0", "v1.0.0-rc.2", "v1.0.0-rc.10", "v0.9.9", "v1.0.0-alpha"],
        key=lambda s: Version.parse(s).sort_key(),
    )
    assert ordered == ["v0.9.9", "v1.0.0-alpha", "v1.0.0-rc.2", "v1.0.0-rc.10", "v1.0.0"]


@pytest.mark.parametrize("bad", ["1.2", "v01.2.3", "1.2.3.4", "latest", ""])
def test_invalid_semver_says_format(bad):
    with pytest.raises(RegistryError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse(bad)


def test_conventional_commits():
    assert bump_from_commits(["fix: a", "chore: b"]) == "patch"
    assert bump_from_commits(["fix: a", "feat(data): more digits"]) == "minor"
    assert bump_from_commits(["feat!: new input shape"]) == "major"
    assert bump_from_commits(["refactor: x\n\nBREAKING CHANGE: drops v1 API"]) == "major"
    assert bump_from_commits([]) == "patch"


@pytest.mark.parametrize(
    "bad", ["1\u0661.0.0", "v1.0.\u0669", "1.0.0-rc.\u0661", "1.0.0+b\u0661", "\uff11.0.0"]
)
def test_versions_take_ascii_digits_only(bad):
    """`--version 1\\u0661.0.0` registered v11.0.0: \\d and int() read any Unicode digit."""
    with pytest.raises(RegistryError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse(bad)
    assert not Version.is_valid(bad)
    assert tags.parse(f"m@v{bad.removeprefix('v')}") is None  # a hand-made tag is no version
