// Progressive enhancement only: every form still works with its button when scripts are off.
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    const fallback = select.form.querySelector("[data-autosubmit-fallback]");
    if (fallback) fallback.hidden = true;
    select.addEventListener("change", () => select.form.requestSubmit());
  }

  // On a phone the tabs scroll sideways in one row: bring the current one into view.
  const tabs = document.querySelector(".tabs");
  const current = tabs && tabs.querySelector("[aria-current]");
  if (current && tabs.scrollWidth > tabs.clientWidth) {
    tabs.scrollLeft = current.offsetLeft - tabs.clientWidth / 2 + current.offsetWidth / 2;
  }

  // Copy buttons: hidden without scripts (the value can still be selected by hand).
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.querySelector(button.dataset.copy);
    if (!source) continue;
    button.hidden = false;
    const label = button.textContent;
    button.addEventListener("click", async () => {
      const text = "value" in source ? source.value : source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        // No clipboard access (an insecure origin): select it for Ctrl-C instead.
        if ("select" in source) source.select();
        button.textContent = "Press Ctrl-C to copy";
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }
});
