/* air_std live reload client, injected by the proxy into every HTML page.
 *
 * The same file runs in two places:
 * - in a page: it joins a SharedWorker (this file again) so that every tab
 *   shares one EventSource: browsers allow only 6 HTTP/1.1 connections per
 *   host, and a 7th tab would otherwise hang. Without SharedWorker (or if the
 *   worker fails) the page opens its own EventSource.
 * - in the SharedWorker: one EventSource to /__air_internal/sse, its events
 *   forwarded to every connected tab.
 * "hello" (first on every stream) carries the server's app start number: a page
 * served before a restart whose reload it missed (the reload went out before
 * this page's stream connected) reloads then. Its own number comes from the
 * data-air-gen attribute the proxy puts on this script's tag.
 * "reload" reloads the page, except one that says css: true (a rule with
 * reload = true whose changed files are all .css): then the page's own
 * stylesheets are fetched again under a new URL and swapped in, so scroll
 * position and form state stay. "build-failed" shows an overlay with the command,
 * output and error, built from text nodes only (build output is untrusted text:
 * it must never be parsed as HTML). "app-exited" (the app ended on its own: a
 * crash at import, a port already taken) shows the same overlay with its exit
 * status and the last lines of its output; the next start's reload removes it.
 *
 * For tests and curious apps: window.__airStd holds {mode, state, events};
 * <html data-air-std="..."> mirrors the connection state; every message is also
 * dispatched on window as a CustomEvent "air-std" with detail {type, data}.
 * Set window.airStdNoSharedWorker = true before this script to skip the worker.
 */
(function () {
  "use strict";
  var SSE_URL = "/__air_internal/sse";
  var SCRIPT_URL = "/__air_internal/livereload.js";
  var OVERLAY_ID = "air-std-overlay";

  // One EventSource that comes back after errors, waiting longer each time
  // (1 s, 2 s, 4 s ... 10 s) instead of the browser's fixed retry.
  function connect(onMessage, onState) {
    var delay = 1000;
    function open() {
      var source = new EventSource(SSE_URL);
      onState("connecting");
      source.onopen = function () {
        delay = 1000;
        onState("open");
      };
      source.onerror = function () {
        source.close();
        onState("retrying");
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
      ["hello", "reload", "build-failed", "app-exited"].forEach(function (type) {
        source.addEventListener(type, function (e) { onMessage(type, e.data); });
      });
    }
    open();
  }

  // --- worker mode ---
  if (typeof window === "undefined") {
    var ports = [];
    var lastFailure = null; // shown to tabs that open after a failed build
    var lastHello = null; // the server's app start number, for tabs that join later
    var state = "connecting";
    var broadcast = function (msg) {
      ports.forEach(function (port) { port.postMessage(msg); });
    };
    self.onconnect = function (e) {
      var port = e.ports[0];
      ports.push(port);
      port.onmessage = function (m) {
        if (m.data === "bye") {
          ports = ports.filter(function (p) { return p !== port; });
        }
      };
      port.start();
      port.postMessage({type: "state", data: state});
      if (lastHello) {
        port.postMessage(lastHello);
      }
      if (lastFailure) {
        port.postMessage(lastFailure);
      }
    };
    connect(function (type, data) {
      var msg = {type: type, data: data};
      if (type === "hello") {
        lastHello = msg;
      } else if (type === "build-failed" || type === "app-exited") {
        lastFailure = msg;
      } else if (data.indexOf('"reason": "rule"') < 0) {
        lastFailure = null; // an app start: the failure is over (a rule's reload starts nothing)
      }
      broadcast(msg);
    }, function (now) {
      state = now;
      broadcast({type: "state", data: now});
    });
    return;
  }

  // --- page mode ---
  if (window.__airStd) {
    return; // injected twice (the page included the script itself too)
  }
  var status = window.__airStd = {mode: "", state: "connecting", events: [], gen: null};
  var tag = document.currentScript;
  var ownGen = tag ? parseInt(tag.getAttribute("data-air-gen"), 10) : NaN;
  status.gen = isNaN(ownGen) ? null : ownGen; // null: included by hand, no number
  // set when this page answered a POST (or another method): reload() must not send it again
  var ownMethod = tag ? tag.getAttribute("data-air-method") : null;
  var reloading = false;

  function genOf(data) {
    try {
      var gen = JSON.parse(data).gen;
      return typeof gen === "number" ? gen : null;
    } catch (err) {
      return null;
    }
  }

  function reload() {
    if (!reloading) {
      reloading = true;
      removeOverlay();
      if (ownMethod) {
        // location.reload() would submit the form again (or ask whether to):
        // load the same address with GET instead, in place of this entry. A
        // #fragment goes: with it, the address would be this page's own, and
        // the browser would only scroll.
        location.replace(location.href.split("#")[0]);
      } else {
        location.reload();
      }
    }
  }

  function parsed(data) {
    try {
      return JSON.parse(data) || {};
    } catch (err) {
      return {};
    }
  }

  // Each same-origin <link rel=stylesheet> is replaced by a copy whose URL
  // carries a fresh air_std_css parameter (the browser cache would otherwise
  // serve the old file); the old link goes once the new one has loaded, so
  // the page is never shown unstyled in between.
  function swapStylesheets() {
    var links = document.querySelectorAll('link[rel~="stylesheet"][href]');
    Array.prototype.forEach.call(links, function (link) {
      var url;
      try {
        url = new URL(link.href, location.href);
      } catch (err) {
        return;
      }
      if (url.origin !== location.origin || link.getAttribute("data-air-old")) {
        return;
      }
      url.searchParams.set("air_std_css", String(Date.now()));
      var fresh = link.cloneNode(false);
      fresh.href = url.href;
      link.setAttribute("data-air-old", "1");
      var done = function () {
        if (link.parentNode) {
          link.parentNode.removeChild(link);
        }
      };
      fresh.addEventListener("load", done);
      fresh.addEventListener("error", done);
      link.parentNode.insertBefore(fresh, link.nextSibling);
    });
    status.events.push("css-swapped");
  }

  function setState(state) {
    status.state = state;
    document.documentElement.setAttribute("data-air-std", state);
  }

  function element(tag, text, css) {
    var node = document.createElement(tag);
    if (text !== undefined) {
      node.textContent = String(text); // text, never markup
    }
    if (css) {
      node.style.cssText = css;
    }
    return node;
  }

  function removeOverlay() {
    var old = document.getElementById(OVERLAY_ID);
    if (old) {
      old.parentNode.removeChild(old);
    }
  }

  function showOverlay(info, title) {
    removeOverlay();
    var box = element("div", undefined,
      "position:fixed;inset:0;top:0;left:0;right:0;bottom:0;z-index:2147483647;overflow:auto;" +
      "background:rgba(20,20,20,.92);color:#eee;font:14px/1.4 ui-monospace,monospace;padding:24px");
    box.id = OVERLAY_ID;
    box.setAttribute("role", "alertdialog");
    box.appendChild(element("h2", title, "margin:0 0 12px;color:#ff6b6b;font:bold 20px sans-serif"));
    [["Command", info.command], ["Error", info.error], ["Output", info.output]].forEach(function (part) {
      if (part[1] === undefined || part[1] === null || part[1] === "") {
        return;
      }
      box.appendChild(element("h3", part[0], "margin:16px 0 4px;font:bold 14px sans-serif"));
      var pre = element("pre", part[1], "margin:0;white-space:pre-wrap;word-break:break-word");
      pre.className = "air-std-" + part[0].toLowerCase();
      box.appendChild(pre);
    });
    var close = element("button", "Close", "margin-top:16px");
    close.onclick = removeOverlay;
    box.appendChild(close);
    (document.body || document.documentElement).appendChild(box);
  }

  function handle(type, data) {
    if (type === "state") {
      setState(data);
      return;
    }
    if (type === "hello") {
      var serverGen = genOf(data);
      if (status.gen !== null && serverGen !== null && serverGen > status.gen) {
        status.events.push("missed-reload");
        reload();
      }
      return;
    }
    status.events.push(type);
    try {
      window.dispatchEvent(new CustomEvent("air-std", {detail: {type: type, data: data}}));
    } catch (err) { /* very old browsers: no CustomEvent constructor */ }
    if (type === "reload") {
      if (parsed(data).css === true) {
        // a build failure's overlay stays: the stylesheet changed, the app did not
        swapStylesheets();
        return;
      }
      var gen = genOf(data);
      // a page served by the new app already shows it: reloading again is only noise
      if (status.gen === null || gen === null || gen > status.gen) {
        reload();
      }
    } else if (type === "build-failed" || type === "app-exited") {
      var info;
      try {
        info = JSON.parse(data);
      } catch (err) {
        info = {output: data};
      }
      showOverlay(info, type === "build-failed" ? "Build failed" : "App exited");
    }
  }

  function direct() {
    status.mode = "event-source";
    connect(handle, setState);
  }

  if (window.SharedWorker && !window.airStdNoSharedWorker) {
    try {
      var worker = new SharedWorker(SCRIPT_URL, "air_std-livereload");
      status.mode = "shared-worker";
      worker.port.onmessage = function (m) { handle(m.data.type, m.data.data); };
      worker.onerror = function () {
        if (status.mode === "shared-worker") {
          direct(); // the worker could not start: every tab on its own
        }
      };
      worker.port.start();
      window.addEventListener("pagehide", function () { worker.port.postMessage("bye"); });
      setState("connecting");
      return;
    } catch (err) { /* blocked (file:, some privacy modes): fall through */ }
  }
  direct();
})();
