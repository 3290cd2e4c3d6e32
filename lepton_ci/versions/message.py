"""Where our evidence record sits in a version tag's message, found by delimiters, not by `{`.

A tag message is `SUBJECT`, a blank line, then the record between two fence lines that JSON
cannot produce (it escapes newlines inside strings). Anything may come before (a subject that
names a metric `acc{split=test}`) or after (a PGP/SSH signature). Tags written by lepton-ci
before the fences (subject, blank line, bare JSON) are still read. The tag name grammar is
GTO's and unchanged; GTO reads the message only as free text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lepton_ci.core.errors import RecordError
from lepton_ci.core.escape import clean_line

if TYPE_CHECKING:
    from lepton_ci.core.record import Record

CACHE_KEY_TRAILER = "Lepton-Cache-Key"  # a git trailer: the run-cache key without the record
PROMOTED_BY = "Promoted-by"  # the trailer that names who promoted (the tagger is the runner)
# A stage tag whose message carries this trailer was deployed by the workflow that wrote
# it (model-promote): the tag workflow, which a PAT- or App-pushed tag also starts, must not
# deploy the same stage a second time.
DEPLOYED_TRAILER = "Lepton-Deployed-By"
BEGIN = "-----BEGIN LEPTON-CI RECORD-----"
END = "-----END LEPTON-CI RECORD-----"
_SIGNATURES = ("-----BEGIN PGP SIGNATURE-----", "-----BEGIN SSH SIGNATURE-----")


class ForeignMessage(RecordError):
    """A version tag's message looks like it holds a record but none can be read from it."""


def compose(subject: str, record: Record) -> str:
    """The message of a version tag; the subject is one line whatever the metric names hold.
    The run-cache key ends it as a git trailer, which `for-each-ref` reads without the
    record, so a cache lookup over 10,000 versions parses only the record that matches."""
    return (
        f"{clean_line(subject)}\n\n{BEGIN}\n{record.to_json()}{END}\n\n"
        f"{CACHE_KEY_TRAILER}: {clean_line(record.cache.key)}\n"
    )


def summary(record: Record) -> str:
    """The verdict and the key metrics (else the first three judged): a version tag's subject
    says them, so `git tag -n` and a tag listing read as a changelog."""
    gates = record.gates
    keys = [g for g in gates if g.key] or [g for g in gates if g.verdict != "info"][:3]
    shown = ", ".join(f"{g.metric}={g.candidate:.6g}" for g in keys if g.candidate is not None)
    return f"gates: {record.verdict}" + (f" ({shown})" if shown else "")


def registration(tag: str, record: Record) -> str:
    """The message `register` writes on the version tag `tag` (benches write the same)."""
    return compose(f"Register {tag}: {summary(record)}", record)


def promotion(
    tag: str, stage: str, *, promoted_by: str | None = None, deployed_by: str | None = None
) -> str:
    """The message of a stage tag: GTO's subject, then who promoted and the run that deploys
    the stage itself as trailers (checked by the caller: a login, a URL)."""
    trailers = [f"{PROMOTED_BY}: {promoted_by}"] if promoted_by else []
    if deployed_by:
        trailers.append(f"{DEPLOYED_TRAILER}: {deployed_by}")
    body = "".join(f"{t}\n" for t in trailers)
    return f"Promote {tag} to {stage}\n" + (f"\n{body}" if body else "")


def extract(message: str, source: str) -> Record | None:
    """The record in a tag message; None when the message carries none (a GTO tag, a note).

    Raises ForeignMessage when the message claims a record (our fence, or the bare JSON body
    of older lepton-ci tags) that does not parse: the caller skips that tag with a warning.
    """
    lines = message.split("\n")
    # The LAST begin fence: a subject or body text before ours cannot shadow the real record.
    begins = [i for i, line in enumerate(lines) if line.rstrip("\r") == BEGIN]
    if begins:
        start = begins[-1] + 1
        end = next((i for i in range(start, len(lines)) if lines[i].rstrip("\r") == END), None)
        if end is None:
            raise ForeignMessage(f"tag {source}: the record has no `{END}` line")
        return _parse("\n".join(lines[start:end]), source)
    _subject, sep, body = message.partition("\n\n")
    if not sep or not body.lstrip().startswith("{"):
        return None
    for marker in _SIGNATURES:
        body = body.split(marker, 1)[0]
    return _parse(body, source)


def _parse(text: str, source: str) -> Record:
    from lepton_ci.core.record import parse  # pydantic: only for commands that read records

    try:
        return parse(text, f"tag {source}")
    except RecordError as e:
        raise ForeignMessage(e.message) from None
