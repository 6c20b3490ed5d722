/* The sidebar's table of contents folds on narrow screens, where the sidebar sits above the
   page (below the width at which the theme stacks it), and is always open on wide ones. */
(() => {
  "use strict";
  const narrow = window.matchMedia("(max-width: 1000px)");
  const apply = () => {
    document.querySelectorAll("details.site-navigation").forEach((el) => {
      el.open = !narrow.matches;
    });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", apply);
  else apply();
  narrow.addEventListener("change", apply);
})();
