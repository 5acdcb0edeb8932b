// Canopy web app: the live alert feed and the editor's preview. Everything works without
// this file; it only adds what a page cannot do by itself. Alert text is inserted as text
// (never as HTML); the preview is HTML the server has sanitised (nh3).
"use strict";

function liveFeed(list) {
  const source = new EventSource("/ui/alerts/feed");
  source.onmessage = (event) => {
    const alert = JSON.parse(event.data);
    const none = list.querySelector(".none");
    if (none) none.remove();
    const item = document.createElement("li");
    item.className = "urgency-" + (alert.urgency === "high" ? "high" : "normal");
    item.dataset.id = alert.id;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = alert.when + " · " + alert.from; // formatted by the server (Babel)
    // A notice the node raised (a missed check-in, a help request): its kind named in the
    // page's language (the words are the page's own, from the template), then its text.
    const kind = typeof alert.kind === "string" ? alert.kind : "";
    const label = list.dataset[kind] || (kind.startsWith("help") ? list.dataset.help : "");
    if (label) {
      const strong = document.createElement("strong");
      strong.className = "notice";
      strong.textContent = label;
      item.append(meta, " ", strong, " ", alert.text);
    } else {
      item.append(meta, " ", alert.text);
    }
    list.prepend(item);
    if (window.Notification && Notification.permission === "granted") {
      new Notification("Canopy", { body: alert.text });
    }
  };
  const button = document.getElementById("notify");
  if (button && window.Notification && Notification.permission === "default") {
    button.hidden = false;
    button.addEventListener("click", () => {
      Notification.requestPermission().then(() => { button.hidden = true; });
    });
  }
}

function preview(area) {
  const target = document.getElementById(area.dataset.preview);
  const csrf = area.form.querySelector("input[name=csrf]").value;
  let timer = null;
  const update = () => {
    const body = new URLSearchParams({ text: area.value });
    fetch("/ui/guides/preview", {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      body: body,
      credentials: "same-origin",
    }).then((r) => (r.ok ? r.text() : "")).then((html) => { target.innerHTML = html; });
  };
  area.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(update, 300);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const feed = document.getElementById("feed");
  if (feed) liveFeed(feed);
  document.querySelectorAll("textarea[data-preview]").forEach(preview);
});
