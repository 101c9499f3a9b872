// What the verifier needs of message.eml's header (certmail/bundle/headers.py, best
// effort): From:, the To:/Cc: addresses, and whether it is OpenPGP/MIME in the layout
// whose signature the CLI can check (certmail/mime.py parse_entity, split_multipart).

const MAX_HEADER_BLOCK = 256 * 1024;

/** A latin1 view of bytes: one character per byte (code point = byte value), so
 * offsets are byte offsets and the bytes come back with `bytesOf`. */
function latin1(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return s;
}

export function bytesOf(latin1Text) {
  const out = new Uint8Array(latin1Text.length);
  for (let i = 0; i < latin1Text.length; i++) out[i] = latin1Text.charCodeAt(i);
  return out;
}

/** {block, body, fields} of a CRLF entity, or null when it has no readable header. */
function parseEntity(raw) {
  if (raw.startsWith("\r\n")) return { block: "", body: raw.slice(2), fields: [] };
  let end = raw.indexOf("\r\n\r\n");
  if (end < 0) {
    if (raw.endsWith("\r\n") && raw.includes(":")) end = raw.length - 2;
    else return null;
  }
  if (end > MAX_HEADER_BLOCK) return null;
  const block = raw.slice(0, end + 2);
  const first = block.split("\r\n", 1)[0];
  if (!first.includes(":") || first[0] === " " || first[0] === "\t") return null;
  const fields = [];
  for (const line of block.split("\r\n")) {
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1][1] += " " + line.trim();
    else {
      const i = line.indexOf(":");
      if (i > 0) fields.push([line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()]);
    }
  }
  return { block, body: raw.slice(end + 4), fields };
}

function get(entity, name) {
  return entity.fields.filter(([k]) => k === name).map(([, v]) => v);
}

function contentType(entity) {
  const v = get(entity, "content-type")[0];
  const t = v ? v.split(";")[0].trim().toLowerCase() : "";
  return /^[^/\s]+\/[^/\s]+$/.test(t) ? t : "text/plain";
}

function param(entity, name) {
  const v = get(entity, "content-type")[0] || "";
  const re = new RegExp(`;\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, "i");
  const m = re.exec(v);
  return m ? (m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]) : null;
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The raw body parts of a multipart entity (RFC 2046 §5.1.1); null if unreadable. */
function splitMultipart(entity) {
  const boundary = param(entity, "boundary");
  if (!boundary || boundary.length > 200) return null;
  const pattern = new RegExp(`(?:^|\\r\\n)${escapeRe("--" + boundary)}(--)?[ \\t]*(?:\\r\\n|$)`, "g");
  const parts = [];
  let start = null;
  let closed = false;
  for (const m of entity.body.matchAll(pattern)) {
    if (start !== null) parts.push(entity.body.slice(start, m.index));
    if (m[1]) {
      closed = true;
      break;
    }
    start = m.index + m[0].length;
  }
  return closed && parts.length ? parts : null;
}

function openpgpLayout(entity) {
  const ctype = contentType(entity);
  if (ctype !== "multipart/signed" && ctype !== "multipart/encrypted") return null;
  const parts = splitMultipart(entity);
  if (parts === null || parts.length !== 2) return null;
  const second = parseEntity(parts[1]);
  if (second === null) return null;
  const cte = (get(second, "content-transfer-encoding")[0] || "7bit").trim().toLowerCase();
  if (cte !== "7bit" && cte !== "8bit") return null;
  if (ctype !== "multipart/signed") return { kind: "encrypted" };
  // the signed part's exact bytes and the signature part's body (RFC 3156 §5)
  return { kind: "signed", signed: bytesOf(parts[0]), signature: second.body };
}

/** The addr-specs of an address list (as email.utils.getaddresses finds them). */
export function addresses(value) {
  const out = [];
  let depth = 0;
  let quoted = false;
  let cur = "";
  const flush = () => {
    const angle = /<([^<>]*)>/.exec(cur);
    const addr = (angle ? angle[1] : cur.replace(/\([^)]*\)/g, "")).trim();
    if (addr && !/\s/.test(addr)) out.push(addr);
    cur = "";
  };
  for (const ch of value) {
    if (ch === '"' && depth === 0) quoted = !quoted;
    else if (!quoted && ch === "(") depth++;
    else if (!quoted && ch === ")") depth = Math.max(0, depth - 1);
    if (ch === "," && !quoted && depth === 0) flush();
    else cur += ch;
  }
  flush();
  return out;
}

export function headerFacts(message) {
  // only the header block and, for the layout, the top-level parts are read
  const entity = parseEntity(latin1(message));
  if (entity === null) {
    return { sender: "(message.eml has no readable header)", senderAddress: "", recipients: [], layout: null };
  }
  const from = get(entity, "from")[0] || "";
  const sender = from.slice(0, 300) || "(no From: header)";
  const recipients = [];
  for (const v of [...get(entity, "to"), ...get(entity, "cc")]) {
    for (const a of addresses(v)) if (!recipients.includes(a)) recipients.push(a.slice(0, 300));
  }
  const senderAddress = (addresses(from)[0] || "").toLowerCase();
  return { sender, senderAddress, recipients, layout: openpgpLayout(entity) };
}
