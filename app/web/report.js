// The shift report link on the review page: puts the chosen shift
// ("current", "previous" or "YYYY-MM-DD NAME") into the form's one field,
// so the report opens as /report?shift=... in a new tab.
//
// Where reads need a token ([review] read_requires_token), a new tab could
// not send it: the report is fetched with the signed-in token instead
// (users.js adds it to the page's requests) with its images embedded, and
// saved as a file, the same one `vigilctl report` writes.
"use strict";
(function () {
  const form = document.getElementById("shift-report");
  if (!form) return;
  const which = document.getElementById("sr-which");
  const fields = document.getElementById("sr-date-fields");
  const date = document.getElementById("sr-date");
  const name = document.getElementById("sr-name");
  const shift = document.getElementById("sr-shift");
  const error = document.getElementById("sr-error");
  let needsToken = false;

  fetch("/api/whoami", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : {}))
    .then((w) => { needsToken = !!w.read_requires_token; })
    .catch(() => {});

  function say(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  async function download(label) {
    const r = await window.fetch("/report?images=embed&shift=" + encodeURIComponent(label),
                                 { cache: "no-store" });
    if (!r.ok) {
      say(r.status === 401 || r.status === 403 ? "sign in with a token to read the report"
                                                : (await r.text()).trim());
      return;
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    // The server names the file after the shift reported, which "current"
    // and "previous" do not say.
    const named = /filename="?([0-9A-Za-z_.-]+)"?/.exec(r.headers.get("Content-Disposition") || "");
    a.download = named ? named[1]
      : "shift-report-" + label.replace(/[^0-9A-Za-z_-]+/g, "-") + ".html";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  which.addEventListener("change", () => { fields.hidden = which.value !== "date"; });
  form.addEventListener("submit", (ev) => {
    say("");
    let label = which.value;
    if (label === "date") {
      const day = date.value, shiftName = name.value.trim();
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || !shiftName) {
        ev.preventDefault();
        say("give the date and the shift's name (as in [database] shifts)");
        return;
      }
      label = day + " " + shiftName;
    }
    shift.value = label;
    if (needsToken) {
      ev.preventDefault();
      download(label).catch((e) => say(String(e)));
    }
  });
})();
