// Live updates: an element with data-live is refreshed from that URL (an
// HTML fragment the server renders) every few seconds, while the page is
// visible and no form in it is being filled in, until a fragment holds an
// element marked data-live-done (nothing left that changes by itself).
// Nothing else needs script.
(function () {
  // editing: the user is in a form of el, or has typed into one.
  function editing(el) {
    if (el.contains(document.activeElement)) return true;
    return Array.prototype.some.call(el.querySelectorAll("input, textarea"), function (f) { return f.value !== f.defaultValue; });
  }
  function refresh(el, done) {
    if (document.hidden || editing(el)) return;
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || editing(el)) return;
        el.innerHTML = html;
        if (el.querySelector("[data-live-done]")) done();
      })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var timer = setInterval(function () { refresh(el, function () { clearInterval(timer); }); }, 3000);
    });
  });
})();
