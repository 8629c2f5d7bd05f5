/* deepmarket marketplace: home-page filters (state kept in the URL) and module try-it forms.
 * Without JavaScript the home page is a plain grid of links and try-it shows a notice. */
(function () {
  "use strict";

  /* ---------------------------------------------------------------- filters */

  function initMarket(root) {
    const form = root.querySelector(".dm-controls");
    const grid = root.querySelector(".dm-grid");
    const cards = Array.from(grid.children);
    const original = cards.slice();
    const count = root.querySelector(".dm-count__n");
    const of = root.querySelector(".dm-count__of");
    const empty = root.querySelector(".dm-empty");
    const text = form.querySelector("input[name=text]");
    const sort = form.querySelector("select[name=sort]");
    const facetKeys = Array.from(form.querySelectorAll(".dm-facet")).map((d) => d.dataset.facet);
    const chips = Array.from(form.querySelectorAll("input[type=checkbox]")).map((input) => ({
      input,
      n: input.parentNode.querySelector(".dm-chip__n"),
    }));
    // What the filters compare, read once from the cards themselves (nothing is duplicated
    // in the HTML): facet values, lower-cased text with the tags, title and date for sorting.
    const info = new Map(
      cards.map((card) => {
        const values = {};
        for (const key of facetKeys) values[key] = (card.dataset[key] || "").split("|");
        const title = card.querySelector(".dm-card__title").textContent.toLowerCase();
        const words = [card.dataset.id, card.textContent, values.tag ? values.tag.join(" ") : ""];
        return [
          card,
          { values, title, text: words.join(" ").toLowerCase(), updated: card.dataset.updated || "" },
        ];
      }),
    );

    function state() {
      const s = { q: text.value.trim(), sort: sort.value, facets: {} };
      for (const key of facetKeys) {
        s.facets[key] = Array.from(form.querySelectorAll(`input[name="${key}"]:checked`)).map(
          (i) => i.value,
        );
      }
      return s;
    }

    function readUrl() {
      const params = new URLSearchParams(window.location.search);
      text.value = params.get("text") || "";
      const wanted = params.get("sort") || "";
      sort.value = Array.from(sort.options).some((o) => o.value === wanted) ? wanted : "";
      for (const key of facetKeys) {
        const values = new Set(params.getAll(key));
        form.querySelectorAll(`input[name="${key}"]`).forEach((i) => {
          i.checked = values.has(i.value);
        });
      }
    }

    function writeUrl(s) {
      const params = new URLSearchParams();
      // "text", not "q": the theme opens its search overlay for ?q= (search.share).
      if (s.q) params.set("text", s.q);
      for (const key of facetKeys) s.facets[key].forEach((v) => params.append(key, v));
      if (s.sort) params.set("sort", s.sort);
      const query = params.toString();
      const url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
      window.history.replaceState(null, "", url);
    }

    // AND across facets, OR within one facet (as AI4OS does); text matches every word.
    function facetMatch(card, key, want) {
      if (!want.length) return true;
      const have = info.get(card).values[key];
      return want.some((v) => have.includes(v));
    }

    function textMatch(card, words) {
      const hay = info.get(card).text;
      return words.every((w) => hay.includes(w));
    }

    function order(s) {
      if (s.sort === "name") {
        return cards.slice().sort((a, b) => info.get(a).title.localeCompare(info.get(b).title));
      }
      if (s.sort === "updated") {
        return cards.slice().sort((a, b) => info.get(b).updated.localeCompare(info.get(a).updated));
      }
      return original;
    }

    let shownOrder = original;

    function apply() {
      const s = state();
      const words = s.q.toLowerCase().split(/\s+/).filter(Boolean);
      // Each chip counts the modules it would show: every other active filter applies, its
      // own facet does not (so counts inside one facet stay comparable).
      const counts = new Map(facetKeys.map((k) => [k, new Map()]));
      let shown = 0;
      for (const card of cards) {
        if (!textMatch(card, words)) {
          card.hidden = true;
          continue;
        }
        const misses = facetKeys.filter((k) => !facetMatch(card, k, s.facets[k]));
        card.hidden = misses.length > 0;
        if (!card.hidden) shown += 1;
        for (const key of facetKeys) {
          if (misses.length === 0 || (misses.length === 1 && misses[0] === key)) {
            const tally = counts.get(key);
            for (const v of info.get(card).values[key]) tally.set(v, (tally.get(v) || 0) + 1);
          }
        }
      }
      for (const chip of chips) {
        const n = counts.get(chip.input.name).get(chip.input.value) || 0;
        chip.n.textContent = String(n);
        chip.input.parentNode.classList.toggle("dm-chip--none", n === 0 && !chip.input.checked);
      }
      const sorted = order(s);
      if (sorted !== shownOrder || s.sort) {
        const fragment = document.createDocumentFragment();
        for (const card of sorted) fragment.appendChild(card);
        grid.appendChild(fragment);
        shownOrder = sorted;
      }
      count.textContent = String(shown);
      of.hidden = shown === cards.length;
      empty.hidden = shown !== 0;
      writeUrl(s);
      document.documentElement.classList.remove("dm-pending");
    }

    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.querySelector(".dm-clear").addEventListener("click", () => {
      text.value = "";
      sort.value = "";
      form.querySelectorAll("input[type=checkbox]").forEach((i) => (i.checked = false));
      apply();
    });
    readUrl();
    apply();
  }

  /* ----------------------------------------------------------------- try it */

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  // Predict parameters from Swagger 2.0 (DEEPaaS ≥ 1: aiohttp-apispec) or OpenAPI 3.
  function predictParams(spec, model) {
    const paths = spec.paths || {};
    const key = Object.keys(paths).find((p) =>
      new RegExp(`/v2/models/${model.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/predict/?$`).test(p),
    );
    const op = key && paths[key].post;
    if (!op) return null;
    if (op.parameters && op.parameters.length) {
      return op.parameters.map((p) => ({
        name: p.name,
        in: p.in === "formData" ? "form" : p.in,
        type: p.type || (p.schema && p.schema.type) || "string",
        required: !!p.required,
        enum: p.enum || (p.schema && p.schema.enum),
        default: p.default !== undefined ? p.default : p.schema && p.schema.default,
        description: p.description || "",
      }));
    }
    const body = op.requestBody && op.requestBody.content;
    const media = body && (body["multipart/form-data"] || Object.values(body)[0]);
    const props = (media && media.schema && media.schema.properties) || {};
    const required = (media && media.schema && media.schema.required) || [];
    return Object.entries(props).map(([name, s]) => ({
      name,
      in: "form",
      type: s.format === "binary" ? "file" : s.type || "string",
      required: required.includes(name),
      enum: s.enum,
      default: s.default,
      description: s.description || "",
    }));
  }

  function field(p) {
    const id = `dm-try-${p.name}`;
    let input;
    if (p.type === "file") {
      input = el("input", { type: "file", id, name: p.name, required: p.required });
    } else if (p.enum) {
      input = el(
        "select",
        { id, name: p.name },
        (p.required ? [] : [el("option", { value: "", text: "—" })]).concat(
          p.enum.map((v) => el("option", { value: v, text: v, selected: v === p.default })),
        ),
      );
    } else if (p.type === "boolean") {
      input = el("select", { id, name: p.name }, [
        el("option", { value: "", text: "—" }),
        el("option", { value: "true", text: "true", selected: p.default === true }),
        el("option", { value: "false", text: "false", selected: p.default === false }),
      ]);
    } else {
      const numeric = p.type === "integer" || p.type === "number";
      input = el("input", {
        id,
        name: p.name,
        type: numeric ? "number" : "text",
        step: p.type === "number" ? "any" : undefined,
        value: p.default,
        required: p.required,
      });
    }
    const label = el("label", { for: id }, [
      el("span", { class: "dm-try__name", text: p.name + (p.required ? " *" : "") }),
      el("span", { class: "dm-try__help", text: p.description }),
    ]);
    return el("div", { class: "dm-try__field" }, [label, input]);
  }

  async function showResult(out, response) {
    out.replaceChildren();
    const type = response.headers.get("content-type") || "";
    out.appendChild(
      el("p", {
        class: "dm-try__status " + (response.ok ? "dm-ok" : "dm-fail"),
        text: `HTTP ${response.status} ${response.statusText} · ${type || "no content type"}`,
      }),
    );
    if (type.startsWith("image/")) {
      const blob = await response.blob();
      out.appendChild(el("img", { class: "dm-try__image", src: URL.createObjectURL(blob), alt: "Prediction" }));
      return;
    }
    let body = await response.text();
    if (type.includes("json")) {
      try {
        body = JSON.stringify(JSON.parse(body), null, 2);
      } catch (e) {
        /* not valid JSON after all: show it as it came */
      }
    }
    out.appendChild(el("pre", { class: "dm-try__json" }, [el("code", { text: body })]));
  }

  async function initTryIt(box) {
    const endpoint = box.dataset.endpoint;
    const model = box.dataset.model;
    const status = box.querySelector(".dm-tryit__status");
    let spec;
    try {
      const response = await fetch(endpoint + "swagger.json", { mode: "cors" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      spec = await response.json();
    } catch (err) {
      status.textContent =
        `The deployed module does not answer at ${endpoint}swagger.json (${err.message}). ` +
        "It may be starting, or its server does not allow calls from this site (CORS).";
      status.classList.add("dm-fail");
      return;
    }
    const params = predictParams(spec, model);
    if (!params) {
      status.textContent = `The live API at ${endpoint} has no predict endpoint for model "${model}".`;
      status.classList.add("dm-fail");
      return;
    }
    const predictUrl = `${endpoint}v2/models/${encodeURIComponent(model)}/predict/`;
    const form = el("form", { class: "dm-try" }, params.map(field));
    const submit = el("button", { type: "submit", class: "md-button md-button--primary", text: "Predict" });
    form.appendChild(el("div", { class: "dm-try__actions" }, [submit]));
    const out = el("div", { class: "dm-try__result", "aria-live": "polite" });
    status.textContent = `Calls ${predictUrl} on the live deployment.`;
    box.append(form, out);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData();
      const query = new URLSearchParams();
      const headers = {};
      for (const p of params) {
        const input = form.elements[p.name];
        if (p.type === "file") {
          if (input.files.length) data.append(p.name, input.files[0]);
          continue;
        }
        const value = input.value;
        if (value === "") continue;
        if (p.in === "query") query.append(p.name, value);
        else if (p.in === "header") headers[p.name] = value;
        else data.append(p.name, value);
      }
      submit.disabled = true;
      out.replaceChildren(el("p", { class: "dm-try__status", text: "Predicting…" }));
      try {
        const qs = query.toString();
        const response = await fetch(predictUrl + (qs ? "?" + qs : ""), {
          method: "POST",
          body: data,
          headers,
          mode: "cors",
        });
        await showResult(out, response);
      } catch (err) {
        out.replaceChildren(
          el("p", { class: "dm-try__status dm-fail", text: `The call failed: ${err.message}` }),
        );
      } finally {
        submit.disabled = false;
      }
    });
  }

  function init() {
    // mkdocs-material's search overlay has role="dialog" but no name; screen readers announce
    // an unnamed dialog (axe: aria-dialog-name). Name it until the theme does.
    const search = document.querySelector('.md-search[role="dialog"]:not([aria-label])');
    if (search) search.setAttribute("aria-label", "Search");
    document.querySelectorAll(".dm-market").forEach(initMarket);
    document.querySelectorAll(".dm-tryit").forEach(initTryIt);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
