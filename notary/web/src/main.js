// The verify page: trust roots, a bundle dropped or picked, the checks run here, the
// result in plain language. Nothing leaves the browser (the page's CSP allows no
// connection at all). `globalThis.certmailVerifier` is the same verifier for scripts.

import { hex, sha256, VerificationError } from "./bytes.js";
import { NOT_HERE, trustRoots, verifyBundle } from "./checks.js";
import { MAX_BUNDLE_SIZE } from "./layout.js";
import { Verifier } from "./log.js";
import { verifyConsistency, verifyInclusion } from "./merkle.js";
import { readKeyring } from "./pgp.js";

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

async function readTrust() {
  const vkeyText = $("vkey").value.trim();
  const rootText = $("tsa-root").value.trim();
  const out = { vkey: null, roots: null, problems: [] };
  if (vkeyText) {
    try {
      const v = await Verifier.fromVkey(vkeyText);
      out.vkey = v.vkey();
      $("vkey-fpr").textContent = `key ${v.name}, key id ${hex(v.keyId)}`;
    } catch (e) {
      out.problems.push(`the verifier key is malformed: ${e.message}`);
      $("vkey-fpr").textContent = "malformed";
    }
  } else {
    $("vkey-fpr").textContent = "none given: the bundle's own notary.vkey will be used";
  }
  if (rootText) {
    try {
      out.roots = await trustRoots(rootText);
      $("root-fpr").textContent = out.roots
        .map((r) => `${r.subjectText} — SHA-256 ${r.fingerprint}`)
        .join("; ");
    } catch (e) {
      out.problems.push(e.message);
      $("root-fpr").textContent = "malformed";
    }
  } else {
    $("root-fpr").textContent = "none given: the root at the end of the bundle's tsa-chain.pem will be used";
  }
  const pgpText = $("pgp-keys").value.trim();
  if (pgpText) {
    try {
      out.keyring = await readKeyring(pgpText);
      $("pgp-fpr").textContent = out.keyring.map((k) => `${k.primaryEmail || "(no address)"} ${k.fingerprint}`).join("; ");
    } catch (e) {
      out.problems.push(e.message);
      $("pgp-fpr").textContent = "unreadable";
    }
  } else {
    out.keyring = null;
    $("pgp-fpr").textContent = "none given: OpenPGP signatures are not checked";
  }
  return out;
}

function statusWord(s) {
  return { ok: "passed", warning: "warning", skipped: "not checked", failed: "FAILED" }[s] || s;
}

function render(report, fileName, ms) {
  const out = $("result");
  out.replaceChildren();
  const verdict = report.valid
    ? report.warnings.length
      ? `${report.verdict}, but checked against the bundle's own keys`
      : report.verdict
    : "NOT VALID";
  const cls = !report.valid ? "bad" : report.warnings.length || report.unchecked.length ? "partial" : "good";
  out.append(
    el("h2", { id: "verdict", class: `verdict ${cls}`, "data-valid": String(report.valid), tabindex: "-1" }, `${fileName}: ${verdict}`),
  );
  if (!report.valid) {
    out.append(el("p", { id: "error", class: "error" }, `What failed (${report.failed}): ${report.error}`));
  }
  for (const w of report.warnings) out.append(el("p", { class: "warning loud", role: "alert" }, `Warning: ${w}`));
  if (report.sha256) {
    const dl = el("dl", { class: "facts" });
    const add = (k, v) => v && dl.append(el("dt", {}, k), el("dd", {}, v));
    add("Message SHA-256", report.sha256);
    add("Message-ID", report.message_id);
    add("From", report.sender);
    add("To", (report.recipients || []).join(", "));
    add("Notary key", report.vkey);
    for (const c of report.tsa_chain || []) add("TSA certificate", `${c.subject} — SHA-256 ${c.sha256}`);
    out.append(dl);
  }
  if (report.valid && report.events.length) {
    out.append(el("h3", {}, "What happened, in order"));
    const ol = el("ol", { class: "timeline" });
    for (const e of report.events) {
      const who = e.recipient ? ` (recipient ${e.recipient})` : "";
      ol.append(
        el(
          "li",
          { class: e.event === "ContentAccessTracking" ? "weak" : "" },
          el("time", {}, e.time.replace("T", " ").replace(/\.\d+Z$/, " UTC")),
          el("strong", {}, ` ${e.event}${who}: `),
          e.proves + (e.timestamp ? ` (time-stamp ${e.timestamp.replace(/\.\d+Z$/, "Z")})` : ""),
          ...(e.details.length ? [el("ul", { class: "details" }, ...e.details.map((d) => el("li", {}, d)))] : []),
        ),
      );
    }
    out.append(ol);
  }
  out.append(el("h3", {}, "Checks"));
  const table = el("table", { class: "checks", id: "checks" });
  table.append(el("caption", {}, `Checks run in this browser in ${ms} ms`));
  table.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Check"), el("th", { scope: "col" }, "Result"), el("th", { scope: "col" }, "Detail"))));
  const body = el("tbody");
  const rows = [...report.checks];
  if (!report.valid) rows.push({ item: report.failed, status: "failed", detail: report.error });
  for (const c of rows) {
    body.append(
      el("tr", { class: `st-${c.status}`, "data-item": c.item, "data-status": c.status },
        el("th", { scope: "row" }, c.item), el("td", {}, statusWord(c.status)), el("td", {}, c.detail)),
    );
  }
  table.append(body);
  out.append(el("div", { class: "scroll" }, table));
  if (!report.valid) {
    out.append(el("p", {}, "The checks after the one that failed did not run: a bundle is valid only when every check passes."));
    if (report.not_run && report.not_run.length) {
      out.append(el("p", { id: "not-run" }, `Not run: ${report.not_run.join(", ")}.`));
    }
  }
  out.append(
    el("h3", {}, "Not checked in the browser"),
    el("ul", { class: "not-here" }, el("li", {}, `Documents: ${NOT_HERE.documents}.`), el("li", {}, `OpenPGP signatures (sender, acknowledgements): checked with the keys given above; with none, ${NOT_HERE.openpgp}.`)),
  );
  $("verdict").focus();
}

async function run(file) {
  const out = $("result");
  out.replaceChildren(el("p", { class: "busy" }, `Checking ${file.name} …`));
  if (file.size > MAX_BUNDLE_SIZE) {
    out.replaceChildren(el("h2", { id: "verdict", class: "verdict bad", "data-valid": "false" }, `${file.name}: NOT VALID`),
      el("p", { id: "error", class: "error" }, `the bundle is too large (${file.size} bytes; at most ${MAX_BUNDLE_SIZE})`));
    return;
  }
  const t0 = performance.now();
  const trust = await readTrust();
  if (trust.problems.length) {
    out.replaceChildren(el("p", { class: "error", role: "alert", id: "error" }, trust.problems.join("; ")));
    return;
  }
  let report;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    report = await verifyBundle(bytes, trust);
  } catch (e) {
    report = { valid: false, error: `the page could not check this file (${e.message})`, failed: "bundle", checks: [], warnings: [], events: [], unchecked: [] };
  }
  render(report, file.name, Math.round(performance.now() - t0));
  document.body.dataset.lastMs = String(Math.round(performance.now() - t0));
}

function setup() {
  $("result").replaceChildren();
  const cfg = $("certmail-trust");
  if (cfg) {
    const trust = JSON.parse(cfg.textContent);
    if (trust.vkey) $("vkey").value = trust.vkey;
    if (trust.tsa_root) $("tsa-root").value = trust.tsa_root;
    if (trust.source) $("trust-source").textContent = trust.source;
  }
  readTrust();
  $("vkey").addEventListener("change", readTrust);
  $("tsa-root").addEventListener("change", readTrust);
  $("pgp-keys").addEventListener("change", readTrust);
  const input = $("bundle");
  input.addEventListener("change", () => input.files[0] && run(input.files[0]));
  const zone = $("drop");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
  });
  document.body.dataset.ready = "true";
}

globalThis.certmailVerifier = {
  /** Verify bundle bytes with a vkey text and TSA root PEM text (null: the bundle's own),
   * and optionally armored OpenPGP public keys. */
  async verify(bytes, vkey = null, rootPem = null, armoredKeys = null) {
    return verifyBundle(bytes, { vkey, roots: await trustRoots(rootPem), keyring: await readKeyring(armoredKeys) });
  },
  sha256: async (bytes) => hex(await sha256(bytes)),
  /** The RFC 9162 proof checks (sizes and indexes as BigInt), for the vector tests. */
  merkle: { verifyInclusion, verifyConsistency },
  VerificationError,
};

if (typeof document !== "undefined") setup();
