// Live updates for the console's pages: the server sends an event for every document event
// (/ui/events); the page fetches itself again and swaps in its [data-region] parts. No inline
// script anywhere: the Content-Security-Policy allows only this file.
(function () {
  'use strict';
  var live = document.body.getAttribute('data-live');
  var dot = document.getElementById('live');
  if (!live || !window.EventSource || !window.fetch) { return; }
  var docID = live.indexOf('document:') === 0 ? live.slice('document:'.length) : '';
  var pending = null;

  function state(s) { if (dot) { dot.setAttribute('data-state', s); } }

  function refresh() {
    pending = null;
    fetch(window.location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (res) {
        if (res.redirected || !res.ok) { window.location.reload(); return null; }
        return res.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var next = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('[data-region]').forEach(function (el) {
          var fresh = next.querySelector('[data-region="' + el.getAttribute('data-region') + '"]');
          if (fresh) { el.replaceWith(document.importNode(fresh, true)); }
        });
        document.body.setAttribute('data-refreshed', String(Date.now()));
      })
      .catch(function () { /* the next event tries again */ });
  }

  // Once soon after an event, and once more a little later: the document's state may be written
  // a moment after its event is on the stream.
  var again = null;
  function soon() {
    if (!pending) { pending = window.setTimeout(refresh, 200); }
    if (again) { window.clearTimeout(again); }
    again = window.setTimeout(function () { again = null; if (!pending) { refresh(); } }, 1500);
  }

  var es = new EventSource('/ui/events');
  // "ready": the server follows the stream now; refresh once for what happened meanwhile.
  es.addEventListener('ready', function () { state('open'); soon(); });
  es.addEventListener('document', function (e) {
    if (docID) {
      var ev = JSON.parse(e.data);
      if (ev.id !== docID) { return; }
    }
    soon();
  });
  es.addEventListener('overflow', soon);
  es.addEventListener('signedout', function () { es.close(); window.location.reload(); });
  es.onerror = function () { state(es.readyState === EventSource.CLOSED ? 'error' : 'connecting'); };
})();
