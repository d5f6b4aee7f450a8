// The mapping editor (hub/monitor/templates/mapping_editor.html): XML syntax highlighting of the stylesheet
// and a live preview that follows the typing. Our own small script (no library, no inline code: the console's
// Content Security Policy allows only its own files). Without it the textarea and the Preview button work.
(function () {
  "use strict";

  // XML as tokens: comments, CDATA, processing instructions, tags (name, attributes, values) and text.
  var TOKEN = /(<!--[\s\S]*?(?:-->|$))|(<!\[CDATA\[[\s\S]*?(?:\]\]>|$))|(<\?[\s\S]*?(?:\?>|$))|(<\/?[^\s>\/]*)([^>]*?)(\/?>|$)|([^<]+)/g;
  var ATTRIBUTE = /([^\s=]+)(\s*=\s*)?("[^"]*"?|'[^']*'?)?|(\s+)/g;

  function span(kind, text) {
    var element = document.createElement("span");
    element.className = "hl-" + kind;
    element.textContent = text;
    return element;
  }

  // The highlighted copy of `text`, as nodes (textContent only: nothing typed is ever read as HTML).
  function highlight(text) {
    var fragment = document.createDocumentFragment();
    var match;
    TOKEN.lastIndex = 0;
    while ((match = TOKEN.exec(text)) !== null) {
      if (match[0] === "") { TOKEN.lastIndex++; continue; }
      if (match[1]) { fragment.appendChild(span("comment", match[1])); }
      else if (match[2]) { fragment.appendChild(span("cdata", match[2])); }
      else if (match[3]) { fragment.appendChild(span("pi", match[3])); }
      else if (match[4] !== undefined) {
        var xsl = /^<\/?xsl:/.test(match[4]);
        fragment.appendChild(span(xsl ? "xsl" : "tag", match[4]));
        var rest = match[5], part;
        ATTRIBUTE.lastIndex = 0;
        while ((part = ATTRIBUTE.exec(rest)) !== null) {
          if (part[0] === "") { ATTRIBUTE.lastIndex++; continue; }
          if (part[4]) { fragment.appendChild(document.createTextNode(part[4])); continue; }
          fragment.appendChild(span("attr", part[1]));
          if (part[2]) { fragment.appendChild(document.createTextNode(part[2])); }
          if (part[3]) { fragment.appendChild(span("value", part[3])); }
        }
        fragment.appendChild(span(xsl ? "xsl" : "tag", match[6]));
      } else { fragment.appendChild(document.createTextNode(match[7])); }
    }
    return fragment;
  }

  function paint(target, text) {
    while (target.firstChild) { target.removeChild(target.firstChild); }
    target.appendChild(highlight(text));
    target.appendChild(document.createTextNode("\n"));  // a last empty line keeps its height
  }

  // <pre data-highlight="xml">: highlighted in place.
  function highlightBlock(pre) { paint(pre, pre.textContent); pre.classList.add("highlighted"); }

  // <textarea data-highlight="xml">: a highlighted layer under a transparent textarea, kept in step.
  function highlightEditor(textarea) {
    var box = document.createElement("div");
    box.className = "code-editor";
    var layer = document.createElement("pre");
    layer.className = "code-layer";
    layer.setAttribute("aria-hidden", "true");
    layer.setAttribute("dir", "ltr");
    textarea.parentNode.insertBefore(box, textarea);
    box.appendChild(layer);
    box.appendChild(textarea);
    textarea.classList.add("code-input");
    function sync() { paint(layer, textarea.value); layer.scrollTop = textarea.scrollTop; layer.scrollLeft = textarea.scrollLeft; }
    textarea.addEventListener("input", sync);
    textarea.addEventListener("scroll", function () { layer.scrollTop = textarea.scrollTop; layer.scrollLeft = textarea.scrollLeft; });
    sync();
  }

  // <form data-live-preview="#preview">: posted (as its Preview button does) a moment after the typing stops,
  // or when the message changes; the answer, a fragment, replaces the preview.
  function livePreview(form) {
    var target = document.querySelector(form.getAttribute("data-live-preview"));
    var status = form.querySelector("[data-live-status]");
    var timer = null, sent = 0;
    if (!target) { return; }
    function run() {
      var message = form.querySelector("[name=message_id]");
      if (!message || !message.value) { return; }
      var data = new FormData(form);
      var number = ++sent;
      if (status) { status.textContent = "…"; }
      fetch(form.getAttribute("action"), { method: "POST", body: data, credentials: "same-origin",
                                           headers: { "X-Console-Fragment": "preview" } })
        .then(function (response) { return response.text().then(function (html) { return [response, html]; }); })
        .then(function (answer) {
          if (number !== sent) { return; }  // a newer preview is under way
          if (answer[0].ok) { target.innerHTML = answer[1]; }
          else {
            var page = new DOMParser().parseFromString(answer[1], "text/html");
            var detail = page.querySelector(".error-page p, main p");
            target.textContent = detail ? detail.textContent : String(answer[0].status);
          }
          target.setAttribute("data-previewed", new Date().toISOString());
          target.querySelectorAll("pre[data-highlight=xml]").forEach(highlightBlock);
          if (status) { status.textContent = ""; }
        })
        .catch(function () { if (status) { status.textContent = ""; } });
    }
    function later() { clearTimeout(timer); timer = setTimeout(run, 700); }
    form.querySelectorAll("textarea").forEach(function (t) { t.addEventListener("input", later); });
    form.querySelectorAll("select[name=message_id]").forEach(function (s) { s.addEventListener("change", run); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-highlight=xml]").forEach(highlightEditor);
    document.querySelectorAll("pre[data-highlight=xml]").forEach(highlightBlock);
    document.querySelectorAll("form[data-live-preview]").forEach(livePreview);
  });
})();
