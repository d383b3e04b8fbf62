// Progressive enhancement only: every form still works with its button when scripts are off.
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    const fallback = select.form.querySelector("[data-autosubmit-fallback]");
    if (fallback) fallback.hidden = true;
    select.addEventListener("change", () => select.form.requestSubmit());
  }
});
