// sift view: a run in progress follows its checkpoints. Polls the run's newest
// checkpoint id; when it changes, fetches the page again and swaps its content in.
(function () {
  "use strict";
  var INTERVAL_MS = 1000;
  function follow() {
    var live = document.getElementById("live");
    if (!live || !live.dataset.poll) return;
    var url = live.dataset.poll, seen = live.dataset.checkpoint;
    function tick() {
      fetch(url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (state) {
        if (state.checkpoint === seen) { setTimeout(tick, INTERVAL_MS); return; }
        return fetch(location.href, { cache: "no-store" }).then(function (r) { return r.text(); }).then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          if (fresh) { live.replaceWith(fresh); }
          follow();
        });
      }).catch(function () { setTimeout(tick, 5 * INTERVAL_MS); });
    }
    setTimeout(tick, INTERVAL_MS);
  }
  follow();
})();
