// Fulcio and Rekor stand-ins for the keyless tests: @sigstore/mock's own CA, CT log and
// transparency log (the pieces sigstore-js tests itself with) behind one local HTTP server.
//
// Two things real Fulcio and Rekor do that the mock handlers leave out are done here:
// - Fulcio checks the OIDC token: its signature against the local issuer's public key (argv[2],
//   PEM), its audience `sigstore` and expiry; a GitHub Actions token is certified for
//   `https://github.com/<job_workflow_ref>` (Fulcio's GitHub principal), not for `sub`.
// - Rekor stores a dsse entry as its canonical body (envelope and payload hashes, signatures),
//   not as proposed: that body is what verifiers check against the bundle.
// On start it prints one JSON line: the URL and the keys a trusted root must name.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const http = require("http");
const jose = require("jose");
const mock = require("@sigstore/mock");

const SAN_CLAIM = "lepton_fulcio_san";

async function main() {
  const issuerKey = await jose.importSPKI(fs.readFileSync(process.argv[2], "utf8"), "RS256");
  const server = http.createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}`;

  const fulcioKeys = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ctlog = await mock.initializeCTLog(fulcioKeys);
  const ca = await mock.initializeCA(fulcioKeys, ctlog);
  const fulcio = mock.fulcioHandler(ca, { subjectClaim: SAN_CLAIM });
  const rekorKeys = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const tlog = await mock.initializeTLog(url, rekorKeys);
  const rekor = mock.rekorHandler(tlog);

  async function certify(body, headers) {
    // Fulcio takes the token as a bearer credential (sigstore-python) or in the body.
    const req = JSON.parse(body);
    const bearer = (headers.authorization || "").replace(/^Bearer /, "");
    const token = req.credentials?.oidcIdentityToken || bearer;
    let claims;
    try {
      ({ payload: claims } = await jose.jwtVerify(token, issuerKey, {
        audience: "sigstore",
      }));
    } catch (e) {
      return { statusCode: 401, response: `the OIDC token does not verify: ${e.message}` };
    }
    if (!claims.job_workflow_ref) {
      return { statusCode: 400, response: "the token has no job_workflow_ref claim" };
    }
    // The mock CA takes the SAN from a claim; it reads the token without checking it again.
    const inner = new jose.UnsecuredJWT({
      ...claims,
      [SAN_CLAIM]: `https://github.com/${claims.job_workflow_ref}`,
    }).encode();
    req.credentials = { oidcIdentityToken: inner };
    // Fulcio's API carries the CSR as base64 of its PEM; the mock CA parses PEM or DER.
    const csr = req.certificateSigningRequest;
    if (csr && !csr.startsWith("-----")) {
      req.certificateSigningRequest = Buffer.from(csr, "base64").toString();
    }
    return fulcio.fn(JSON.stringify(req));
  }

  function sha256(data) {
    return crypto.createHash("sha256").update(data).digest("hex");
  }

  async function log(body) {
    const proposed = JSON.parse(body);
    if (proposed.kind === "dsse") {
      const content = proposed.spec.proposedContent;
      const envelope = JSON.parse(content.envelope);
      proposed.spec = {
        envelopeHash: { algorithm: "sha256", value: sha256(content.envelope) },
        payloadHash: {
          algorithm: "sha256",
          value: sha256(Buffer.from(envelope.payload, "base64")),
        },
        signatures: envelope.signatures.map((s) => ({
          signature: s.sig,
          verifier: content.verifiers[0],
        })),
      };
    }
    return rekor.fn(JSON.stringify(proposed));
  }

  const routes = { [fulcio.path]: certify, [rekor.path]: log };
  // The issuer's OpenID discovery (sigstore's `oidcUrls`: model-signing reads it even when it
  // is given a token) and its keys.
  const json = (doc) => async () => ({
    statusCode: 200,
    response: JSON.stringify(doc),
    contentType: "application/json",
  });
  const discovery = {
    "/.well-known/openid-configuration": json({
      issuer: url,
      authorization_endpoint: `${url}/authorize`,
      token_endpoint: `${url}/token`,
      jwks_uri: `${url}/jwks`,
      response_types_supported: ["id_token"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["RS256"],
    }),
    "/jwks": json({ keys: [{ ...(await jose.exportJWK(issuerKey)), alg: "RS256", use: "sig" }] }),
  };
  server.on("request", (req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const route = (req.method === "POST" ? routes : discovery)[req.url];
      let out = { statusCode: 404, response: `no route ${req.method} ${req.url}` };
      if (route) {
        try {
          out = await route(Buffer.concat(chunks).toString(), req.headers);
        } catch (e) {
          out = { statusCode: 400, response: String(e && e.message) };
        }
      }
      const why = out.statusCode >= 300 ? ` ${out.response}` : "";
      process.stderr.write(`${req.method} ${req.url} ${out.statusCode}${why}\n`);
      res.writeHead(out.statusCode, { "Content-Type": out.contentType || "text/plain" });
      res.end(out.response);
    });
  });

  const b64 = (x) => Buffer.from(x).toString("base64");
  const rekorDer = rekorKeys.publicKey.export({ format: "der", type: "spki" });
  process.stdout.write(
    JSON.stringify({
      url,
      fulcio_root: b64(ca.rootCertificate.buffer ?? ca.rootCertificate),
      rekor_key: b64(rekorDer),
      rekor_log_id: b64(crypto.createHash("sha256").update(rekorDer).digest()),
      ctlog_key: b64(ctlog.publicKey),
      ctlog_log_id: b64(ctlog.logID),
    }) + "\n",
  );
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
