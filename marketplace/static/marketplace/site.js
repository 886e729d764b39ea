// Every page: a form that says data-confirm asks before it is sent (revoking a key or a
// token cannot be undone). Without JavaScript the form is sent as it is.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset ? event.target.dataset.confirm : undefined;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
