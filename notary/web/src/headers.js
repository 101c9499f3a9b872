// What the verifier needs of message.eml's header (certmail/bundle/headers.py, best
// effort): From:, the To:/Cc: addresses, and whether it is OpenPGP/MIME.

function headerBlock(message) {
  const n = Math.min(message.length, 1 << 20);
  const head = new TextDecoder("latin1").decode(message.subarray(0, n));
  const m = /\r?\n\r?\n/.exec(head);
  return m ? head.slice(0, m.index) : null;
}

function fields(block) {
  const out = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length) out[out.length - 1][1] += " " + line.trim();
    else {
      const i = line.indexOf(":");
      if (i > 0) out.push([line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()]);
    }
  }
  return out;
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
  const block = headerBlock(message);
  if (block === null) return { sender: "(message.eml has no readable header)", recipients: [], layout: null };
  const f = fields(block);
  const get = (name) => f.filter(([k]) => k === name).map(([, v]) => v);
  const sender = (get("from")[0] || "").slice(0, 300) || "(no From: header)";
  const recipients = [];
  for (const v of [...get("to"), ...get("cc")]) {
    for (const a of addresses(v)) if (!recipients.includes(a)) recipients.push(a.slice(0, 300));
  }
  const ctype = (get("content-type")[0] || "").toLowerCase();
  let layout = null;
  if (/^multipart\/signed\s*(;|$)/.test(ctype)) layout = "signed";
  else if (/^multipart\/encrypted\s*(;|$)/.test(ctype)) layout = "encrypted";
  return { sender, recipients, layout };
}
