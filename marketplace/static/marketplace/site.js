// Every page: a form that says data-confirm asks before it is sent (revoking a key or a
// token cannot be undone), and copy buttons. Without JavaScript forms are sent as they are,
// and text is copied by hand.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset ? event.target.dataset.confirm : undefined;
    if (question && !window.confirm(question)) event.preventDefault();
  });
  // a button that says data-copy="<id>" copies that element's text (an input's value) and says so
  document.addEventListener("click", function (event) {
    const button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    const said = document.querySelector('[data-copied-for="' + button.dataset.copy + '"]');
    if (!source) return;
    const text = "value" in source && source.tagName === "INPUT" ? source.value : source.textContent;
    const done = function (message) { if (said) said.textContent = message; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done("Copied."); },
                                               function () { done("Select it and copy by hand."); });
    } else {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done(document.execCommand && document.execCommand("copy") ? "Copied." : "Selected: copy it by hand.");
    }
  });
})();
