/* Search result snippets for a site opened from disk.
 *
 * Sphinx's search page (searchtools.js) fetches every result's page to cut a snippet from
 * its text. A browser refuses fetch() for file:// URLs, so a site opened as a file shows
 * its results without snippets. The build writes the text of every page into
 * searchtext.js; this script answers the search page's requests for pages of this site from
 * that file: always under file://, and elsewhere whenever the real request fails.
 */
(() => {
  "use strict";
  const nativeFetch = window.fetch.bind(window);
  const root = () =>
    new URL(document.documentElement.dataset.content_root || "./", window.location.href);
  let pageText = null;

  const loadPageText = () => {
    if (pageText === null)
      pageText = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = new URL("searchtext.js", root()).href;
        script.onload = () => resolve(window.PROBCON_PAGE_TEXT || {});
        script.onerror = () => reject(new Error("searchtext.js did not load"));
        document.head.appendChild(script);
      });
    return pageText;
  };

  // The docname of a request for one of this site's pages, else null.
  const docnameOf = (resource) => {
    const href = typeof resource === "string" ? resource : resource && resource.url;
    if (!href) return null;
    const url = new URL(href, window.location.href);
    const base = root().href;
    if (!url.href.startsWith(base)) return null;
    const path = decodeURIComponent(url.href.slice(base.length).split(/[?#]/)[0]);
    return path.endsWith(".html") ? path.slice(0, -".html".length) : null;
  };

  const fromPageText = async (docname) => {
    const texts = await loadPageText().catch(() => ({}));
    const text = texts[docname];
    if (text === undefined) return null;
    return new Response(text, {
      status: 200,
      headers: { "Content-Type": "text/html; charset=utf-8" },
    });
  };

  window.fetch = async (resource, init) => {
    const docname = docnameOf(resource);
    if (docname !== null && window.location.protocol === "file:") {
      const response = await fromPageText(docname);
      if (response) return response;
    }
    try {
      return await nativeFetch(resource, init);
    } catch (error) {
      const response = docname === null ? null : await fromPageText(docname);
      if (response) return response;
      throw error;
    }
  };
})();
