// The console's only script: live refresh of marked parts, the viewer's time zone, confirmations.
// Pages work without it (the figures are rendered by the server); it only keeps them current.
(function () {
  "use strict";

  // The viewer's zone, remembered for the server's rendering of dates (Africa/Casablanca until known), and
  // updated when the browser's changes. An IANA name is written as it is ("Europe/Paris": every character of
  // one may stand in a cookie), as the server reads it: an escaped "%2F" would name no zone.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var known = (document.cookie.match(/(?:^|; )hub_tz=([^;]*)/) || [])[1];
    if (zone && /^[A-Za-z0-9_+\-\/]{1,63}$/.test(zone) && known !== zone) {
      document.cookie = "hub_tz=" + zone + "; path=/; max-age=31536000; samesite=strict";
    }
  } catch (e) { /* an old browser: the default zone stays */ }

  // <div data-refresh="/monitor/.../live" data-every="5">: replaced by the fragment the URL returns.
  function refresh(element) {
    var every = Math.max(2, parseInt(element.getAttribute("data-every") || "5", 10)) * 1000;
    var busy = false;
    function tick() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(element.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.status === 401 || response.redirected) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            element.innerHTML = html;
            element.setAttribute("data-refreshed", new Date().toISOString());
          }
        })
        .catch(function () { /* the hub is restarting: the next tick tries again */ })
        .then(function () { busy = false; });
    }
    setInterval(tick, every);
  }

  // <form data-confirm="Resend 12 messages?">: asks before submitting (delegated: refreshed parts too).
  document.addEventListener("submit", function (event) {
    var form = event.target.closest ? event.target.closest("form[data-confirm]") : null;
    if (form && !window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(refresh);
  });
})();
