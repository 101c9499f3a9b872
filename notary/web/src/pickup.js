// The pickup page (docs/sealed.md "Pickup", docs/formats.md §10): shows what was sent, asks the
// recipient to confirm their address and acknowledge (or refuse), then decrypts in the browser.
// K = K_link ⊕ K_n ⊕ P: K_link is the link's fragment (never sent anywhere), K_n the notary's
// answer to the acknowledgement, P the first half of scrypt(passphrase) (or zeros). The
// content is "CMPICK1\n" ‖ nonce ‖ AES-256-GCM(K, payload, aad = "CMPICK1\n" ‖ Message-ID);
// the payload is uint32 length ‖ manifest JSON ‖ the files (certmail/sealed/pickup.py).
import { scryptAsync } from "@noble/hashes/scrypt.js";

const MAGIC = new TextEncoder().encode("CMPICK1\n");
const $ = (id) => document.getElementById(id);
const token = location.pathname.split("/").pop() || "";
const state = { info: null, kLink: null };

function b64urlBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
const b64Bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const bytesB64 = (bytes) => btoa(String.fromCharCode(...bytes));

function status(text) {
  $("status").textContent = text;
}

function fail(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
  status("");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function size(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function when(rfc3339) {
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? rfc3339 : d.toUTCString();
}

// The notary's JSON answer, or a sentence for the person reading the page.
async function ask(path, body) {
  let resp;
  try {
    resp = await fetch(path, body === undefined ? { cache: "no-store" } : {
      method: "POST",
      cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    throw new Error("The notary cannot be reached: check your connection, then reload this page.");
  }
  if (resp.ok) return resp;
  let message = `The notary answered ${resp.status}.`;
  try {
    const err = await resp.json();
    if (err && typeof err.message === "string") message = sentence(resp.status, err);
  } catch { /* not JSON: keep the status */ }
  const e = new Error(message);
  e.status = resp.status;
  throw e;
}

function sentence(code, err) {
  const m = err.message.charAt(0).toUpperCase() + err.message.slice(1);
  if (code === 410) return `${m}. This message can no longer be opened: ask the sender to send it again.`;
  if (code === 423) return `Locked: ${err.message}.`;
  if (code === 429) return "Too many attempts from your address just now: wait a minute, then try again.";
  return m.endsWith(".") ? m : `${m}.`;
}

function show(info) {
  $("sender").textContent = info.sender;
  $("subject").textContent = info.subject;
  $("date").textContent = info.date;
  $("size").textContent = size(info.size);
  $("expires").textContent = when(info.expires);
  $("letter").hidden = false;
  $("passphrase-row").hidden = !info.passphrase;
  $("passphrase-help").textContent = info.passphrase
    ? `${info.tries_left} tries left before this message locks.` : "";
  if (info.state === "released") {
    const opened = $("opened");
    opened.textContent = `You acknowledged this message on ${when(info.released)}. `
      + "You can open it again until it expires; no new acknowledgement is logged.";
    opened.hidden = false;
    $("ack").textContent = "Open again";
    $("refuse").hidden = true;
  }
}

const FINAL = {
  expired: (i) => `This link expired on ${when(i.expires)}: the message was destroyed. Ask the sender to send it again.`,
  refused: () => "You refused this message: it was destroyed and can no longer be opened.",
  locked: () => "This message is locked after too many wrong passphrases or addresses. Ask the sender to send it again.",
};

async function load() {
  const frag = location.hash.slice(1);
  try {
    state.kLink = b64urlBytes(frag);
  } catch {
    state.kLink = null;
  }
  if (!state.kLink || state.kLink.length !== 32) {
    fail("This link is incomplete: the part after # is missing or damaged. Copy the whole link from the email into the address bar.");
    return;
  }
  try {
    const info = await (await ask(`/v1/pickup/${encodeURIComponent(token)}`)).json();
    state.info = info;
    if (FINAL[info.state]) {
      fail(FINAL[info.state](info));
      return;
    }
    show(info);
    status(info.state === "released" ? "Already opened." : "Confirm your address to open the message.");
  } catch (e) {
    fail(e.message);
  }
}

async function secrets() {
  const pp = state.info.passphrase;
  if (!pp) return { p: new Uint8Array(32), verifier: null };
  const value = $("passphrase").value.normalize("NFC");
  if (!value) throw new Error("Enter the passphrase the sender gave you.");
  status("Checking the passphrase (this takes a few seconds)…");
  const out = await scryptAsync(new TextEncoder().encode(value), b64Bytes(pp.salt), {
    N: pp.n, r: pp.r, p: pp.p, dkLen: 64, maxmem: 2 ** 26,
  });
  return { p: out.slice(0, 32), verifier: bytesB64(out.slice(32)) };
}

function busy(on) {
  $("ack").disabled = on;
  $("refuse").disabled = on;
}

async function acknowledge(event) {
  event.preventDefault();
  clearError();
  const address = $("address").value.trim();
  if (!address.includes("@")) {
    fail("Enter your email address: the one this link was sent to.");
    $("address").focus();
    return;
  }
  busy(true);
  try {
    const { p, verifier } = await secrets();
    status("Logging your acknowledgement with the notary…");
    const path = `/v1/pickup/${encodeURIComponent(token)}`;
    const answer = await (await ask(`${path}/ack`, { address, verifier })).json();
    status("Decrypting in this browser…");
    const blob = new Uint8Array(await (await ask(`${path}/content`)).arrayBuffer());
    const share = b64Bytes(answer.share);
    const key = state.kLink.map((b, i) => b ^ share[i] ^ p[i]);
    await reveal(blob, key, answer);
  } catch (e) {
    fail(e.message);
    if (e.status === 403 && state.info.passphrase) refreshTries();
    if (e.status === 410 || e.status === 423) $("letter").hidden = true;
  } finally {
    busy(false);
  }
}

async function refreshTries() {
  try {
    const info = await (await ask(`/v1/pickup/${encodeURIComponent(token)}`)).json();
    $("passphrase-help").textContent = `${info.tries_left} tries left before this message locks.`;
  } catch { /* the error shown already says what went wrong */ }
}

async function decrypt(blob, key) {
  const aad = new Uint8Array([...MAGIC, ...new TextEncoder().encode(state.info.message_id)]);
  const head = blob.slice(0, MAGIC.length);
  if (blob.length < MAGIC.length + 28 || head.some((b, i) => b !== MAGIC[i])) {
    throw new Error("The notary answered something that is not a certmail pickup.");
  }
  const k = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  try {
    const iv = blob.slice(MAGIC.length, MAGIC.length + 12);
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv, additionalData: aad }, k, blob.slice(MAGIC.length + 12));
    return new Uint8Array(plain);
  } catch {
    throw new Error("The message does not decrypt: the link may be incomplete or altered (copy it again from the email), or the passphrase is not the sender's.");
  }
}

async function reveal(blob, key, answer) {
  const payload = await decrypt(blob, key);
  const n = new DataView(payload.buffer).getUint32(0);
  const manifest = JSON.parse(new TextDecoder().decode(payload.subarray(4, 4 + n)));
  $("text").textContent = manifest.text;
  const list = $("files");
  list.replaceChildren();
  let at = 4 + n;
  for (const f of manifest.files) {
    const data = payload.slice(at, at + f.size);
    at += f.size;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([data], { type: "application/octet-stream" }));
    a.download = f.name.replace(/[\\/\0]/g, "_");
    a.textContent = `Download ${f.name} (${size(f.size)})`;
    const li = document.createElement("li");
    li.append(a);
    list.append(li);
  }
  $("files-h").hidden = manifest.files.length === 0;
  const index = /\nindex (\d+)\n/.exec(answer.receipt.proof || "");
  $("receipt").textContent = `Your acknowledgement was logged by the notary on ${when(answer.released)}`
    + (index ? ` (log entry ${index[1]})` : "") + "; the key was released only after that.";
  $("letter").hidden = true;
  $("content").hidden = false;
  status("Opened. The message was decrypted in this browser.");
  $("content-h").setAttribute("tabindex", "-1");
  $("content-h").focus();
}

async function refuse() {
  clearError();
  const address = $("address").value.trim();
  if (!address.includes("@")) {
    fail("Enter your email address first: the one this link was sent to.");
    $("address").focus();
    return;
  }
  busy(true);
  try {
    const { verifier } = await secrets();
    await ask(`/v1/pickup/${encodeURIComponent(token)}/refuse`, { address, verifier });
    $("letter").hidden = true;
    status("You refused the message. The notary logged your refusal; the message was destroyed.");
  } catch (e) {
    fail(e.message);
  } finally {
    busy(false);
  }
}

$("ack-form").addEventListener("submit", acknowledge);
$("refuse").addEventListener("click", refuse);
load();
