// Live updates for the dashboard's pages, over the marketplace's WebSockets (signed-in session).
// Without JavaScript the pages still work; they just need a reload to show changes.
(function () {
  "use strict";
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const FINAL = ["completed", "failed", "cancelled", "expired"];

  function connect(path, onEvent, onState) {
    let delay = 500;
    function open() {
      const socket = new WebSocket(scheme + location.host + path);
      socket.onopen = function () { delay = 500; if (onState) onState("live"); };
      socket.onmessage = function (message) { onEvent(JSON.parse(message.data)); };
      socket.onclose = function (closed) {
        if (closed.code >= 4000) { if (onState) onState("closed"); return; }  // refused: do not hammer
        if (onState) onState("reconnecting");
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  function setStatus(cell, status) {
    cell.textContent = status;
    cell.dataset.status = status;
  }

  // the jobs table: upsert a row per job event
  const table = document.getElementById("jobs");
  if (table) {
    const body = table.tBodies[0];
    const state = document.getElementById("live-state");
    connect(table.dataset.liveUrl, function (event) {
      if (event.type !== "job") return;
      let row = document.getElementById("job-" + event.job_id);
      if (!row && table.dataset.insert !== "true") return;  // a filtered or older page: not its place
      if (!row) {
        const empty = body.querySelector(".empty-row");
        if (empty) empty.remove();
        row = body.insertRow(0);
        row.id = "job-" + event.job_id;
        const link = document.createElement("a");
        link.href = "/dashboard/jobs/" + encodeURIComponent(event.job_id) + "/";
        link.textContent = event.job_id;
        row.insertCell().appendChild(link);
        if (event.private) {
          const tag = document.createElement("span");
          tag.className = "tag";
          tag.textContent = "private";
          row.cells[0].append(" ", tag);
        }
        row.insertCell().textContent = event.model;
        row.insertCell().className = "status";
        row.insertCell().className = "cost";
        const ran = row.insertCell();
        ran.className = "hide-narrow";
        ran.textContent = "–";
        const time = document.createElement("time");
        time.dateTime = event.created_at || "";
        time.textContent = (event.created_at || "").replace("T", " ").slice(0, 19);
        const created = row.insertCell();
        created.className = "hide-narrow";
        created.appendChild(time);
      }
      setStatus(row.querySelector(".status"), event.status);
      if (FINAL.includes(event.status)) refreshFigures("#job-" + event.job_id);
    }, function (s) { if (state) state.textContent = s === "live" ? "Statuses update live." : ""; });
  }

  // a job that ends moves money: fetch this page again and swap in its balance, spend chart and
  // the rows of the jobs that ended (their cost and duration)
  let refreshing = null;
  const endedRows = new Set();
  function refreshFigures(row) {
    endedRows.add(row);
    clearTimeout(refreshing);
    refreshing = setTimeout(function () {
      const rows = Array.from(endedRows);
      endedRows.clear();
      fetch(location.pathname + location.search, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          const fresh = new DOMParser().parseFromString(html, "text/html");
          for (const selector of ["#balance-figures", "#spend-chart", "#jobs-count", ...rows]) {
            const now = document.querySelector(selector), next = fresh.querySelector(selector);
            if (now && next) now.replaceWith(next);
          }
        })
        .catch(function () { /* the figures stay as they were until the next change */ });
    }, 300);
  }

  // only the newest fetch is applied: a slow one made for "running" never undoes the final state
  let latest = 0;
  function refreshParts(selectors) {
    const mine = ++latest;
    fetch(location.pathname, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html || mine !== latest) return;
        const fresh = new DOMParser().parseFromString(html, "text/html");
        for (const selector of selectors) {
          const now = document.querySelector(selector), next = fresh.querySelector(selector);
          if (now && next) now.replaceWith(next);
        }
      })
      .catch(function () { /* the parts stay as they were; a reload shows them */ });
  }

  // a job's page: status, progress and output chunks as they come; when it ends, the parts that
  // changed with it (figures, times, buttons, result, receipt, events) are fetched and swapped in.
  // The streamed text stays as it came.
  const job = document.getElementById("job");
  if (job) {
    const output = document.getElementById("output");
    let ended = false;
    connect("/ws/jobs/" + encodeURIComponent(job.dataset.jobId) + "/", function (event) {
      if (event.type === "output" && output) {
        output.textContent += event.data;
      } else if (event.type === "progress") {
        const bar = document.getElementById("job-progress");
        if (bar) { bar.value = event.progress; bar.textContent = event.progress + "%"; }
      } else if (event.type === "status") {
        const status = document.getElementById("job-status");
        if (status) setStatus(status, event.status);
        if (FINAL.includes(event.status) && !ended) { ended = true; refreshParts(["#job-summary", "#job-result", "#job-record"]); }
        else if (!FINAL.includes(event.status)) refreshParts(["#job-summary"]);
      }
    });
  }

  // the playground (the new-job form): a model brings its description and an example input, and
  // the quote for the model and priority shows before anything is submitted
  const playground = document.getElementById("playground");
  if (playground) {
    const select = playground.querySelector("select[name=model]");
    const input = playground.querySelector("textarea[name=input]");
    const priority = playground.querySelector("select[name=priority]");
    const description = document.getElementById("model-description");
    const quote = document.getElementById("quote");
    let example = select.selectedOptions[0] ? select.selectedOptions[0].dataset.example : "";
    const showQuote = function () {
      const model = select.value;
      fetch(playground.dataset.quoteUrl + encodeURIComponent(model) + "/quote/?priority=" +
            encodeURIComponent(priority.value), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (q) {
          if (!q || q.model !== select.value || q.priority !== priority.value) return;  // a later choice won
          quote.textContent = "Quote: about " + q.price + " for a typical run (" + q.expected_seconds +
            " s). Reserved until it ends: " + q.worst_case + ", the most it can cost.";
          quote.title = q.price_wei + " wei";
        })
        .catch(function () { quote.textContent = ""; });
    };
    select.addEventListener("change", function () {
      const option = select.selectedOptions[0];
      // the example replaces the input only if it was left empty or as the last example
      if (input.value.trim() === "" || input.value === example) input.value = option.dataset.example;
      example = option.dataset.example;
      description.textContent = option.dataset.description;
      showQuote();
    });
    priority.addEventListener("change", showQuote);
    showQuote();
  }

})();
