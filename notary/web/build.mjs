// Build the pages' scripts with esbuild: src/main.js (the verify page; src/pickup.js, the pickup
// page, with @noble/hashes' scrypt likewise into static/pickup.js) and what it imports (PKI.js,
// asn1js) into one ES module, static/verify.js. Run by `npm run build` (make, bootstrap).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
for (const [entry, out] of [["main.js", "verify.js"], ["pickup.js", "pickup.js"]]) await build({
  entryPoints: [path.join(here, "src", entry)],
  outfile: path.join(here, "static", out),
  bundle: true,
  format: "esm",
  target: ["chrome120"],
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
});
// The sender's view's script (GET /app): src/app.js into static/app.js.
await build({
  entryPoints: [path.join(here, "src", "app.js")],
  outfile: path.join(here, "static", "app.js"),
  bundle: true,
  format: "esm",
  target: ["chrome120"],
  minify: true,
  logLevel: "warning",
});
