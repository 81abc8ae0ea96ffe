// The demo page: loads a bundle (?bundle=URL, default bundles/demo/), shows the top of the re-ranked
// candidates and re-ranks them on the device after each click. ?session=URL swaps in another session's
// candidates for the loaded models (refused when they come from another model version); ?clicks=ID,ID
// replays clicks on load; ?k=N sets the list length. window.turborecEdge exposes the state to tests.
import { BundleError, EdgeReranker, loadBundle, UnknownItemError } from "./edge.js";

const params = new URLSearchParams(location.search);
const bundleUrl = new URL(params.get("bundle") || "bundles/demo/", location.href).href;
const sessionUrl = params.get("session") ? new URL(params.get("session"), location.href).href : null;
const listLength = Number(params.get("k") || 20);

const $ = (id) => document.getElementById(id);
const state = { status: "loading", error: null, clicked: [], order: [], timings: [], coldStartMs: null, loadMs: null, firstAnswerMs: null, bundleBytes: null };
let reranker = null;

function showError(prefix, err) {
  const known = err instanceof BundleError || err instanceof UnknownItemError;
  state.error = `${prefix}: ${known ? err.message : String(err && err.message ? err.message : err)}`;
  $("error").textContent = state.error;
  $("error").hidden = false;
}

function label(row) {
  const s = reranker.bundle.session;
  return { title: (s.titles && s.titles[row]) || `item ${s.item_ids[row]}`, genres: s.genres ? s.genres[row].replaceAll("|", ", ") : "" };
}

function render(result) {
  const before = new Map(state.order.map((id, i) => [String(id), i]));
  const list = $("list");
  list.replaceChildren();
  result.rows.forEach((row, i) => {
    const id = reranker.bundle.session.item_ids[row];
    const li = document.createElement("li");
    li.dataset.itemId = String(id);
    const prev = before.get(String(id));
    if (state.order.length && (prev === undefined || prev > i)) li.classList.add("moved-up");
    const { title, genres } = label(row);
    li.innerHTML = `<span class="score"></span><div class="title"></div><div class="meta"></div>`;
    li.querySelector(".score").textContent = result.scores[i].toFixed(3);
    li.querySelector(".title").textContent = title;
    li.querySelector(".meta").textContent = genres;
    li.addEventListener("click", () => click(id));
    list.appendChild(li);
  });
  state.order = result.ids.map(String);
  const clicked = $("clicked");
  clicked.replaceChildren();
  for (const id of state.clicked) {
    const li = document.createElement("li");
    li.textContent = label(reranker.rows([id])[0]).title;
    clicked.appendChild(li);
  }
}

async function rerank() {
  const t = performance.now();
  const result = await reranker.rerank(state.clicked, listLength);
  const ms = performance.now() - t;
  state.timings.push(ms);
  $("timing").textContent = `(re-ranked ${reranker.n} candidates in ${ms.toFixed(1)} ms)`;
  render(result);
}

async function click(id) {
  try {
    reranker.rows([id]); // refuse an unknown id before changing the session
    state.clicked.push(String(id));
    await rerank();
  } catch (err) {
    showError("Cannot re-rank", err);
  }
}

// deterministic clicks for the latency benchmark (xorshift32)
function* randomRows(n, seed) {
  let x = seed >>> 0 || 1;
  for (;;) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; yield (x >>> 0) % n; }
}

window.turborecEdge = {
  state,
  order: () => state.order.slice(),
  click,
  scores: async (ids) => Array.from(await reranker.scores(ids)),
  /** n re-ranks of all candidates with `clicks` random clicked candidates each; per-run milliseconds. */
  benchmark: async (n = 200, clicks = 3) => {
    const gen = randomRows(reranker.n, 12345);
    const times = [];
    for (let i = 0; i < n; i++) {
      const ids = Array.from({ length: clicks }, () => reranker.bundle.session.item_ids[gen.next().value]);
      const t = performance.now();
      await reranker.rerank(ids);
      times.push(performance.now() - t);
    }
    return times;
  },
};

async function main() {
  const t0 = performance.now();
  try {
    ort.env.wasm.numThreads = 1; // one core, as on a phone; threads would also need cross-origin isolation
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
    let bundle = await loadBundle(bundleUrl);
    reranker = await EdgeReranker.create(bundle);
    if (sessionUrl) {
      bundle = await loadBundle(sessionUrl, { expectModelVersion: reranker.modelVersion });
      reranker.useBundle(bundle);
    }
    state.loadMs = performance.now() - t0;
    state.bundleBytes = bundle.bytes;
    const t1 = performance.now();
    await rerank();
    state.firstAnswerMs = performance.now() - t1;
    state.coldStartMs = performance.now() - t0;
    const s = bundle.session;
    $("summary").textContent =
      `model ${bundle.modelVersion} (${bundle.config.reranker} re-ranker), ${s.item_ids.length} candidates` +
      (s.user_id !== null && s.user_id !== undefined ? ` for user ${s.user_id}` : "") +
      `, bundle ${(bundle.bytes / 1024).toFixed(0)} KiB, cold start ${state.coldStartMs.toFixed(0)} ms`;
    $("reset").addEventListener("click", async () => { state.clicked = []; state.order = []; await rerank(); });
  } catch (err) {
    $("summary").textContent = "No bundle loaded.";
    showError("Cannot load bundle", err);
    state.status = "error";
    return;
  }
  for (const id of (params.get("clicks") || "").split(",").filter(Boolean)) await click(id);
  state.status = "ready";
}

main();
