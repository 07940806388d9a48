// Live countdown to the next retry. The due time comes from Temporal (describe), so
// every browser shows the same number however late its fragment arrived.
(function () {
  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-next-retry]").forEach(function (el) {
      const due = Date.parse(el.dataset.nextRetry);
      const left = (due - now) / 1000;
      el.textContent = left > 0 ? "in " + left.toFixed(1) + " s" : "now";
    });
  }
  setInterval(tick, 100);
  document.addEventListener("htmx:afterSwap", tick);
})();
