// Shared by restore.js and save.js: one tarball per key in $LEPTON_TEST_CACHE.
const fs = require("fs");
const path = require("path");

function input(name) {
  return (process.env[`INPUT_${name.toUpperCase()}`] || "").trim();
}

function target() {
  const p = input("path");
  if (!p || p.includes("\n")) throw new Error(`stand-in takes one path, got '${p}'`);
  const abs = path.resolve(process.env.GITHUB_WORKSPACE || ".", p);
  if (abs === "/" ) throw new Error("stand-in refuses to cache /");
  return abs;
}

function archive(key) {
  if (!/^[A-Za-z0-9._-]+$/.test(key)) throw new Error(`stand-in refuses key '${key}'`);
  return path.join(process.env.LEPTON_TEST_CACHE, `${key}.tar`);
}

function append(file, line) {
  if (file) fs.appendFileSync(file, `${line}\n`);
}

module.exports = { input, target, archive, append };
