// Tails a running task's log on the run page: asks the server for the bytes after the ones
// shown, appends them as text (never as HTML), and updates the run's status and row counts,
// until the run has ended and the log is read to its end.
"use strict";
(function () {
  var log = document.getElementById("log");
  if (!log || log.dataset.status !== "running") { return; }
  var offset = Number(log.dataset.offset) || 0;
  var url = log.dataset.url;
  var FIELDS = ["rows_read", "rows_inferred", "rows_written", "exit_code", "error"];

  function number(value) { return value === null || value === undefined ? "" : Number(value).toLocaleString("en-US"); }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds < 60) { return seconds.toFixed(1) + " s"; }
    var minutes = Math.floor(Math.round(seconds) / 60);
    return minutes < 60 ? minutes + " min " + (Math.round(seconds) % 60) + " s" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function update(run) {
    FIELDS.forEach(function (name) {
      var cell = document.getElementById("run-" + name);
      if (!cell) { return; }
      var value = run[name];
      cell.textContent = name.indexOf("rows_") === 0 ? number(value) : (value === null ? "" : String(value));
    });
    var ended = document.getElementById("run-ended_at");
    if (ended && run.ended_at) { ended.textContent = run.ended_at.slice(0, 19).replace("T", " ") + " UTC"; }
    var took = document.getElementById("run-duration");
    if (took) { took.textContent = duration(run.duration); }
    if (run.status !== "running") {
      Array.prototype.forEach.call(document.querySelectorAll("form[action$='/kill']"), function (form) {
        form.hidden = true;  // nothing left to kill
      });
    }
    var status = document.getElementById("run-status");
    var badge = status && status.querySelector(".badge");
    if (badge && badge.textContent !== run.status.replace("_", " ")) {
      badge.textContent = run.status.replace("_", " ");
      badge.className = "badge status-" + run.status.replace("_", "-");
    }
  }

  function poll() {
    fetch(url + "?offset=" + offset, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (answer) {
        if (!answer.ok || (answer.headers.get("content-type") || "").indexOf("application/json") !== 0) {
          throw new Error("the server answered " + answer.status);
        }
        return answer.json();
      })
      .then(function (data) {
        if (data.text) {
          var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          log.appendChild(document.createTextNode(data.text));
          if (atBottom) { log.scrollTop = log.scrollHeight; }
        }
        offset = data.offset;
        update(data.run);
        if (data.done) {
          log.dataset.status = data.run.status;
          var note = document.getElementById("log-note");
          if (note) { note.textContent = "The run has ended (" + data.run.status.replace("_", " ") + ")."; }
          return;
        }
        window.setTimeout(poll, data.text ? 300 : 1000);
      })
      .catch(function (err) {
        var note = document.getElementById("log-note");
        if (note) { note.textContent = "Live log stopped: " + err.message + ". Reload the page to go on."; }
      });
  }
  window.setTimeout(poll, 500);
}());
