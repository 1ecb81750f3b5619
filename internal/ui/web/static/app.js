// Live updates: an element with data-live is refreshed from that URL (an
// HTML fragment the server renders) every few seconds, while the page is
// visible. Nothing else needs script.
(function () {
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) el.innerHTML = html; })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      setInterval(function () { refresh(el); }, 3000);
    });
  });
})();
