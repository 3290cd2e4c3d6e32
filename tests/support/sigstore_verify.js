// sigstore-js's verifier (@sigstore/verify, the library under @sigstore/cli's `verify`), run on
// one bundle against a trusted root file: an implementation independent of sigstore-python.
// argv: TRUSTED_ROOT.json BUNDLE.json SAN ISSUER. Prints one JSON line; exit 0 when it verifies.
"use strict";
const fs = require("fs");
const { bundleFromJSON } = require("@sigstore/bundle");
const { TrustedRoot } = require("@sigstore/protobuf-specs");
const { Verifier, toSignedEntity, toTrustMaterial } = require("@sigstore/verify");

const [rootPath, bundlePath, san, issuer] = process.argv.slice(2);
try {
  const root = TrustedRoot.fromJSON(JSON.parse(fs.readFileSync(rootPath, "utf8")));
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, "utf8")));
  const verifier = new Verifier(toTrustMaterial(root), { tlogThreshold: 1, ctlogThreshold: 1 });
  const signer = verifier.verify(toSignedEntity(bundle), {
    subjectAlternativeName: san,
    extensions: { issuer },
  });
  const envelope = bundle.content.dsseEnvelope;
  process.stdout.write(
    JSON.stringify({
      verified: true,
      san: signer.identity?.subjectAlternativeName,
      issuer: signer.identity?.extensions?.issuer,
      payloadType: envelope.payloadType,
      payload: Buffer.from(envelope.payload).toString("utf8"),
    }) + "\n",
  );
} catch (e) {
  process.stdout.write(JSON.stringify({ verified: false, error: `${e.name}: ${e.message}` }) + "\n");
  process.exit(1);
}
