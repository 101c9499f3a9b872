// The sender's view (GET /app): follow deliveries in flight. An element with
// data-poll="URL" is refreshed from that small JSON endpoint ({html, live}) every
// two seconds until the answer says nothing is in flight any more. The HTML is
// rendered and escaped by the notary (notary/web/app_render.py), the same code
// that rendered the page, so the page and its updates never disagree.
const INTERVAL_MS = 2000;

async function follow(el) {
  const url = el.dataset.poll;
  for (;;) {
    await new Promise((ok) => setTimeout(ok, INTERVAL_MS));
    let body;
    try {
      const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (resp.status === 401) {
        location.assign("/app");
        return;
      }
      if (!resp.ok) continue;
      body = await resp.json();
    } catch {
      continue; // the notary restarting: try again
    }
    if (typeof body.html === "string" && body.html !== el.innerHTML) el.innerHTML = body.html;
    el.dataset.updated = String(Number(el.dataset.updated || 0) + 1);
    if (!body.live) {
      const live = document.getElementById("live");
      if (live) live.textContent = "Every delivery has an outcome.";
      delete el.dataset.poll;
      return;
    }
  }
}

for (const el of document.querySelectorAll("[data-poll]")) follow(el);
