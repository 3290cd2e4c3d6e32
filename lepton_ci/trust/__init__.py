"""Evidence you can trust: in-toto statements of versions and images, signed, kept and verified.

- statement.py  the in-toto Statement v1 (SLSA provenance v1) of a version and of an image
- signer.py     who signs: a PEM key (DSSE via securesystemslib) or Sigstore keyless
- store.py      a version's bundles in git, under refs/lepton-ci/attestations/<tag>
- referrers.py  an image's bundle in the registry, as an OCI 1.1 referrer
- policy.py     who is trusted: `trust:` in lepton.yaml, as keys and identities
- verify.py     the chain from a signature to the tag's record, the files and the image
- attest.py     what register and build sign
- cluster.py    the same policy as a cluster-side admission rule

trust/ sits below versions/: it is handed a version's tag, commit and record (a Claim) and
knows nothing of the registry; versions/trusted.py reads the registry for it, and holds what
`trust.require` refuses.

sigstore, securesystemslib and model_signing are imported only where a command signs or
verifies: every other command starts as fast as before.
"""
