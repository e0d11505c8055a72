// breakglass web reviewer: the session page's player and command index.
//
// Served as /review/assets/review.js after /review/assets/asciinema-player.min.js (which defines
// the global AsciinemaPlayer). No inline script, no eval: it runs under the page's CSP.
//
// Page contract (server-rendered):
//   <main id="session" data-cast-url="…/cast" [data-live-url="…/live"]> with
//   <div id="player"></div> and <ol id="commands"> of <a class="cmd" href="#t=S" data-t="S">.
//
// Times: data-t and #t= are seconds since the start of the recording, as written in the .cast
// file. The player is created with idleTimeLimit, which shortens pauses longer than the limit, so
// its own clock runs on a shorter timeline. toPlayerTime/toRecordingTime convert between the two
// with the player's own rule (every gap between consecutive events is capped at the limit).
//
// For tests and for the curious: window.breakglassPlayer is the current player (the object that
// AsciinemaPlayer.create returns) and window.breakglassReview has the mode and the converters.
(function () {
  "use strict";

  var IDLE_TIME_LIMIT = 2; // seconds
  var RECORDED_OPTS = { idleTimeLimit: IDLE_TIME_LIMIT, fit: "width", autoPlay: true, preload: true };
  var LIVE_OPTS = { fit: "width", autoPlay: true };

  var main = document.getElementById("session");
  var container = document.getElementById("player");
  if (!main || !container) return; // the list page: nothing to do

  var castUrl = main.getAttribute("data-cast-url");
  var liveUrl = main.getAttribute("data-live-url");
  var commands = document.getElementById("commands");

  var player = null;
  var timeline = null; // idle-time map of the loaded recording
  var mode = null; // "recorded" | "live" | "error"
  var status = null; // the line under the player, made on demand

  var api = {
    get mode() { return mode; },
    get player() { return player; },
    toPlayerTime: function (t) { return timeline ? timeline.toPlayer(t) : t; },
    toRecordingTime: function (t) { return timeline ? timeline.toRecording(t) : t; },
    currentTime: function () { return player ? api.toRecordingTime(player.getCurrentTime() || 0) : 0; },
    seek: seekTo,
  };
  window.breakglassReview = api;

  // ---- times ----

  // "12.345", "#t=12.345", "#t=1:02.5" or "#t=1:02:03" -> seconds, or null.
  function parseTime(text) {
    if (text == null) return null;
    var s = String(text).replace(/^#?(?:t=)?/, "");
    if (!/^\d+(?::\d+){0,2}(?:\.\d+)?$/.test(s)) return null;
    var t = 0;
    s.split(":").forEach(function (part) { t = t * 60 + Number(part); });
    return isFinite(t) ? t : null;
  }

  function fragmentTime() {
    return /^#t=/.test(location.hash) ? parseTime(location.hash) : null;
  }

  // The player's idle-time rule, from its source (prepareRecording/timeLimiter): going through
  // all events in file order, each gap longer than the limit is shortened to the limit.
  // Events are the lines that start with "["; their first element is the time.
  function buildTimeline(castText, limit) {
    var real = [0];
    var shown = [0];
    var prev = 0;
    var shift = 0;
    var re = /^\[\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/;
    var lines = castText.split("\n");
    for (var i = 1; i < lines.length; i++) {
      var m = re.exec(lines[i]);
      if (!m) continue;
      var t = Number(m[1]);
      var delta = t - prev - limit;
      prev = t;
      if (delta > 0) shift += delta;
      if (t >= real[real.length - 1]) {
        real.push(t);
        shown.push(t - shift);
      }
    }
    // last index i with arr[i] <= x (arr is sorted, arr[0] = 0)
    function floorIndex(arr, x) {
      var lo = 0, hi = arr.length - 1;
      while (lo < hi) {
        var mid = (lo + hi + 1) >> 1;
        if (arr[mid] <= x) lo = mid; else hi = mid - 1;
      }
      return lo;
    }
    var end = shown[shown.length - 1];
    return {
      duration: end,
      toPlayer: function (t) {
        if (!(t > 0)) return 0;
        var i = floorIndex(real, t);
        var into = t - real[i];
        if (i + 1 < real.length) into = Math.min(into, shown[i + 1] - shown[i]);
        else into = 0;
        return Math.min(shown[i] + into, end);
      },
      toRecording: function (p) {
        if (!(p > 0)) return 0;
        var i = floorIndex(shown, p);
        // shown may repeat a value (events at the same time); take the first real time of it
        while (i > 0 && shown[i - 1] === shown[i]) i--;
        return real[i] + (p - shown[i]);
      },
    };
  }

  // ---- status line under the player ----

  function setStatus(text, buttonLabel, onClick) {
    if (!status) {
      status = document.createElement("p");
      status.id = "player-status";
      status.setAttribute("role", "status");
      container.insertAdjacentElement("afterend", status);
    }
    status.textContent = text;
    status.classList.remove("error");
    if (buttonLabel) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = buttonLabel;
      b.addEventListener("click", onClick);
      status.appendChild(document.createTextNode(" "));
      status.appendChild(b);
    }
    status.hidden = !text;
  }

  function fail(message, err) {
    mode = "error";
    setStatus(message);
    status.classList.add("error");
    if (err && window.console) console.warn("breakglass review:", err);
  }

  // ---- players ----

  function dispose() {
    if (player) {
      try { player.dispose(); } catch (e) { /* already gone */ }
    }
    player = null;
    window.breakglassPlayer = null;
    container.textContent = "";
  }

  function havePlayer() {
    if (window.AsciinemaPlayer && typeof window.AsciinemaPlayer.create === "function") return true;
    fail("The player script did not load.");
    return false;
  }

  // Loads the recording (as it is now, for a live session) and plays it; seeks first if startAt
  // (recording seconds) is given.
  function startRecorded(startAt, note) {
    if (!havePlayer()) return Promise.resolve();
    if (!castUrl) { fail("This page has no recording URL."); return Promise.resolve(); }
    return fetch(castUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (text) {
        dispose();
        timeline = buildTimeline(text, IDLE_TIME_LIMIT);
        var opts = Object.assign({}, RECORDED_OPTS);
        if (startAt != null) opts.autoPlay = false; // seek first, then play: no flash of t=0
        player = window.AsciinemaPlayer.create({ data: text }, container, opts);
        window.breakglassPlayer = player;
        mode = "recorded";
        setStatus(note || "");
        if (startAt != null) return seekTo(startAt);
      })
      .catch(function (err) { fail("The recording could not be loaded (" + err.message + ").", err); });
  }

  function startLive() {
    if (!havePlayer()) return;
    dispose();
    timeline = null;
    player = window.AsciinemaPlayer.create({ driver: "eventsource", url: liveUrl }, container, LIVE_OPTS);
    window.breakglassPlayer = player;
    mode = "live";
    setStatus("Live: following the session as it is recorded.", "Watch from the start", function () {
      startRecorded(0, liveNote()).then(addBackToLive);
    });
    player.addEventListener("ended", function () {
      if (mode !== "live") return;
      setStatus("The session has ended.", "Reload for the full recording", function () { location.reload(); });
    });
  }

  function liveNote() {
    return "Showing the recording up to when you clicked; the session is still live.";
  }

  // Seeks to t (recording seconds) and plays. In live mode, switches to the recording so far.
  function seekTo(t) {
    if (t == null || !isFinite(t)) return Promise.resolve();
    markCurrent(t);
    if (mode === "live") return startRecorded(t, liveNote()).then(addBackToLive);
    if (!player || mode !== "recorded") return Promise.resolve();
    var p = player;
    return p.seek(api.toPlayerTime(t)).then(function () { return p.play(); });
  }

  function addBackToLive() {
    if (!liveUrl || mode !== "recorded") return;
    setStatus(liveNote(), "Back to live", startLive);
  }

  // ---- command index ----

  var cmdLinks = commands ? Array.prototype.slice.call(commands.querySelectorAll("a.cmd")) : [];
  var cmdTimes = cmdLinks.map(function (a) { return parseTime(a.getAttribute("data-t")); });
  var currentLink = null;

  function markCurrent(t) {
    var best = null;
    for (var i = 0; i < cmdLinks.length; i++) {
      if (cmdTimes[i] != null && cmdTimes[i] <= t + 0.05) best = cmdLinks[i];
    }
    if (best === currentLink) return;
    if (currentLink) { currentLink.classList.remove("current"); currentLink.removeAttribute("aria-current"); }
    currentLink = best;
    if (best) {
      best.classList.add("current");
      best.setAttribute("aria-current", "true");
      scrollIntoList(best);
    }
  }

  // Keeps the item visible inside the scrolling list without scrolling the page.
  function scrollIntoList(a) {
    var li = a.closest("li") || a;
    var top = li.offsetTop - commands.offsetTop;
    if (top < commands.scrollTop) commands.scrollTop = top;
    else if (top + li.offsetHeight > commands.scrollTop + commands.clientHeight) {
      commands.scrollTop = top + li.offsetHeight - commands.clientHeight;
    }
  }

  if (commands) {
    commands.addEventListener("click", function (ev) {
      var a = ev.target.closest && ev.target.closest("a.cmd");
      if (!a || !commands.contains(a)) return;
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return; // new tab etc.
      var t = parseTime(a.getAttribute("data-t"));
      if (t == null) t = parseTime(a.getAttribute("href"));
      if (t == null) return;
      ev.preventDefault();
      // Keep the address shareable without navigating (replaceState fires no hashchange).
      try { history.replaceState(null, "", "#t=" + t); } catch (e) { /* ignore */ }
      seekTo(t);
    });
  }

  window.addEventListener("hashchange", function () {
    var t = fragmentTime();
    if (t != null) seekTo(t);
  });

  setInterval(function () {
    if (player && mode === "recorded" && cmdLinks.length) markCurrent(api.currentTime());
  }, 500);

  // A blocked player otherwise stays a silent black box: say why. (The player compiles its
  // terminal emulator to WebAssembly, which needs 'wasm-unsafe-eval' in script-src.)
  document.addEventListener("securitypolicyviolation", function (e) {
    var ours = e.blockedURI === "wasm-eval" || e.blockedURI === "eval" || /\/review\/assets\//.test(e.sourceFile || "");
    if (!ours) return;
    var what = e.blockedURI === "wasm-eval" ? "WebAssembly" : e.blockedURI || "inline code";
    fail("The player was blocked by the page's Content-Security-Policy (" +
      (e.effectiveDirective || e.violatedDirective) + " refused " + what + ").");
  });

  // ---- start ----

  if (liveUrl) {
    var t0 = fragmentTime();
    if (t0 != null) startRecorded(t0, liveNote()).then(addBackToLive);
    else startLive();
  } else {
    startRecorded(fragmentTime());
  }
})();
