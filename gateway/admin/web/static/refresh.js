// The dashboard reloads itself every N seconds (<meta name="aimgw-refresh">), unless the
// admin is filling a form on it (a field focused or changed) or the tab is hidden: a reload
// then would throw the typing away. Each skipped reload is counted on <html data-refresh-
// skipped> (the browser tests wait on it).
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="aimgw-refresh"]');
  var seconds = meta ? parseInt(meta.getAttribute("content"), 10) : 0;
  if (!(seconds > 0)) {
    return;
  }
  function changed(field) {
    if (field.type === "checkbox" || field.type === "radio") {
      return field.checked !== field.defaultChecked;
    }
    if (field.tagName === "SELECT") {
      return Array.prototype.some.call(field.options, function (o) {
        return o.selected !== o.defaultSelected;
      });
    }
    return field.type !== "hidden" && field.value !== field.defaultValue;
  }
  function busy() {
    var active = document.activeElement;
    if (active && active.form) {
      return true;
    }
    return Array.prototype.some.call(document.querySelectorAll("input, textarea, select"),
                                     changed);
  }
  window.setInterval(function () {
    if (busy() || document.hidden) {
      var root = document.documentElement;
      root.dataset.refreshSkipped = String(parseInt(root.dataset.refreshSkipped || "0", 10) + 1);
      return;
    }
    window.location.reload();
  }, seconds * 1000);
}());
