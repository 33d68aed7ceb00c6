/*
 * Offline set-up for the ipywidgets embedder (written for this book, not from npm).
 *
 * Loaded on pages with saved widget state, after require.js and before
 * @jupyter-widgets/html-manager/dist/embed-amd.js (see `nb_ipywidgets_js` in
 * _config.yml). This file is served as _static/jupyter-widgets/offline.js.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  // .../_static/jupyter-widgets/offline.js -> .../_static/
  var staticRoot = new URL("../", script.src).href;

  // 1. AMD modules named "@jupyter-widgets/..." live under _static/jupyter-widgets/.
  //    embed-amd.js defines them all itself; the mapping gives each module the
  //    right URL, from which the embedder resolves its bundled font files.
  if (window.requirejs) {
    window.requirejs.config({
      paths: { "@jupyter-widgets": staticRoot + "jupyter-widgets" },
    });
  } else {
    console.error("offline.js: require.js must be loaded before this file");
  }

  // 2. The embedder reads the last `data-jupyter-widgets-cdn` attribute on the
  //    page and loads widget libraries it does not bundle from there. Point it
  //    at a local folder (jsDelivr layout) so no page ever fetches from jsDelivr.
  script.setAttribute("data-jupyter-widgets-cdn", staticRoot + "widget-modules/");

  // 3. ipywidgets 8 typesets labels with MathJax 2's
  //    MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book uses MathJax 3.
  var pending = [];

  function typeset(elements) {
    var mj = window.MathJax;
    if (mj && mj.version && mj.startup && mj.startup.promise && mj.typesetPromise) {
      mj.startup.promise
        .then(function () {
          return mj.typesetPromise(elements.length ? elements : undefined);
        })
        .catch(function (err) {
          console.warn("MathJax could not typeset a widget label:", err);
        });
    } else {
      Array.prototype.push.apply(pending, elements);
    }
  }

  function installHub(mj) {
    if (!mj || mj.Hub) {
      return;
    }
    mj.Hub = {
      Queue: function () {
        var elements = [];
        Array.prototype.forEach.call(arguments, function (cmd) {
          if (Array.isArray(cmd) && cmd[0] === "Typeset" && cmd[2]) {
            elements.push(cmd[2]);
          }
        });
        typeset(elements);
      },
    };
  }

  var mj = window.MathJax;
  if (mj && mj.version) {
    // MathJax 3 is already running
    installHub(mj);
  } else if (mj) {
    // `window.MathJax` is still the configuration object that Sphinx writes;
    // MathJax 3 replaces it when it starts, so add the shim again once it is ready.
    installHub(mj);
    mj.startup = mj.startup || {};
    var ready = mj.startup.ready;
    mj.startup.ready = function () {
      if (ready) {
        ready();
      } else {
        window.MathJax.startup.defaultReady();
      }
      installHub(window.MathJax);
      if (pending.length) {
        typeset(pending.splice(0));
      }
    };
  }
  // No MathJax on the page: ipywidgets skips typesetting.
})();
