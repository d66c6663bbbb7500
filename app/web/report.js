// The shift report link on the review page: puts the chosen shift
// ("current", "previous" or "YYYY-MM-DD NAME") into the form's one field,
// so the report opens as /report?shift=... in a new tab.
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

  which.addEventListener("change", () => { fields.hidden = which.value !== "date"; });
  form.addEventListener("submit", (ev) => {
    error.hidden = true;
    if (which.value !== "date") {
      shift.value = which.value;
      return;
    }
    const day = date.value, shiftName = name.value.trim();
    if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || !shiftName) {
      ev.preventDefault();
      error.textContent = "give the date and the shift's name (as in [database] shifts)";
      error.hidden = false;
      return;
    }
    shift.value = day + " " + shiftName;
  });
})();
