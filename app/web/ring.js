// The recent ring ([database] recent_images_mb): an image kept only for the
// recent window is marked as such, so that nobody counts on it being there
// next week. review.js calls ringMark for each image it shows.
"use strict";

function ringMark(fig, media) {
  if (!media || !media.recent) return;
  fig.classList.add("recent");
  const note = document.createElement("p");
  note.className = "note ring-note";
  note.textContent = "kept for the recent window only";
  note.title = "Every part's image is kept in the recent ring until newer parts " +
    "take its room; rejects and sampled parts are kept long-term.";
  fig.append(note);
}
window.ringMark = ringMark;
