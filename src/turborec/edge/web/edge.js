// turborec edge runtime for the browser: loads and verifies an edge bundle and re-ranks its candidates
// with onnxruntime-web (WASM), step for step as turborec/edge/runtime.py does in Python.
// Needs the global `ort` (onnxruntime-web's ort.wasm.min.js) and a secure context (http://127.0.0.1 is one)
// for crypto.subtle.

export const ARTIFACT_FORMAT_VERSION = 1;
export const EDGE_FORMAT_VERSION = 1;
export const BUNDLE_KIND = "edge-bundle";
const FILES = ["user_model.onnx", "reranker.onnx", "session.json", "session.safetensors"];
const USER_INPUTS = ["history", "input_q", "input_scale", "input_bias", "user_part"];
const RERANKER_INPUTS = ["user_vec", "server_vec", "recent", "item_q", "item_scale", "item_bias", "prior"];

/** A bundle that is missing, truncated, corrupted, of an unknown format or of another model version. */
export class BundleError extends Error {
  constructor(message) { super(message); this.name = "BundleError"; }
}

/** A click on an item id that is not among the bundle's candidates. */
export class UnknownItemError extends Error {
  constructor(message) { super(message); this.name = "UnknownItemError"; }
}

async function fetchBytes(url, label) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (err) {
    throw new BundleError(`${label}: cannot fetch (${err.message})`);
  }
  if (!response.ok) throw new BundleError(`${label} is missing (HTTP ${response.status})`);
  return new Uint8Array(await response.arrayBuffer());
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const DTYPES = { U8: [Uint8Array, 1], I32: [Int32Array, 4], I64: [BigInt64Array, 8], F32: [Float32Array, 4] };

/** Parse safetensors bytes into {tensors: {name: {data, shape}}, metadata}. */
export function parseSafetensors(bytes, label = "session.safetensors") {
  if (bytes.length < 8) throw new BundleError(`${label}: too short to be a safetensors file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = Number(view.getBigUint64(0, true));
  if (size > bytes.length - 8) throw new BundleError(`${label}: header runs past the end of the file (truncated)`);
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + size)));
  } catch (err) {
    throw new BundleError(`${label}: corrupted header (${err.message})`);
  }
  const metadata = header.__metadata__ || {};
  delete header.__metadata__;
  const base = 8 + size;
  const tensors = {};
  for (const [name, spec] of Object.entries(header)) {
    const kind = DTYPES[spec.dtype];
    if (!kind) throw new BundleError(`${label}: tensor '${name}' has unsupported dtype ${spec.dtype}`);
    const [Ctor, width] = kind;
    const [start, end] = spec.data_offsets;
    const count = spec.shape.reduce((a, b) => a * b, 1);
    if (end - start !== count * width || base + end > bytes.length) {
      throw new BundleError(`${label}: tensor '${name}' does not fit the file (truncated or corrupted)`);
    }
    // copy: typed arrays need aligned offsets, and the copy lets the file's buffer go
    const copy = bytes.slice(base + start, base + end);
    tensors[name] = { data: new Ctor(copy.buffer), shape: spec.shape };
  }
  return { tensors, metadata };
}

/**
 * Fetch and verify a bundle: format versions, every file's size (truncation) and sha256, the session's
 * model version against the models', tensor shapes. Throws BundleError with a message naming the problem.
 */
export async function loadBundle(baseUrl, { expectModelVersion } = {}) {
  const base = baseUrl.endsWith("/") ? baseUrl : baseUrl + "/";
  const manifestBytes = await fetchBytes(base + "manifest.json", `${base}manifest.json`);
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch (err) {
    throw new BundleError(`${base}manifest.json: corrupted manifest (${err.message})`);
  }
  if (manifest.format_version !== ARTIFACT_FORMAT_VERSION) {
    throw new BundleError(`${base}: unknown artifact format version ${manifest.format_version}`);
  }
  if (manifest.kind !== BUNDLE_KIND) throw new BundleError(`${base}: artifact kind is '${manifest.kind}', not an edge bundle`);
  const config = manifest.config || {};
  if (config.edge_format_version !== EDGE_FORMAT_VERSION) {
    throw new BundleError(`${base}: edge bundle format version ${config.edge_format_version} is not supported (this page reads ${EDGE_FORMAT_VERSION})`);
  }
  const version = config.model_version;
  if (expectModelVersion !== undefined && version !== expectModelVersion) {
    throw new BundleError(`${base}: bundle is for model version '${version}', but the loaded models are version '${expectModelVersion}'`);
  }
  const sizes = (manifest.info || {}).sizes || {};
  const files = {};
  await Promise.all(FILES.map(async (name) => {
    const digest = (manifest.files || {})[name];
    if (!digest) throw new BundleError(`${base}: manifest lists no '${name}'`);
    const bytes = await fetchBytes(base + name, `bundle file '${name}'`);
    if (sizes[name] !== undefined && bytes.length !== sizes[name]) {
      const state = bytes.length < sizes[name] ? "truncated" : "longer than recorded";
      throw new BundleError(`bundle file '${name}' is ${state} (${bytes.length} of ${sizes[name]} bytes)`);
    }
    if ((await sha256Hex(bytes)) !== digest) throw new BundleError(`checksum mismatch for bundle file '${name}' (corrupted or modified)`);
    files[name] = bytes;
  }));
  const session = JSON.parse(new TextDecoder().decode(files["session.json"]));
  const { tensors, metadata } = parseSafetensors(files["session.safetensors"]);
  for (const [label, got] of [["session.json", session.model_version], ["session.safetensors", metadata.model_version]]) {
    if (got !== version) {
      throw new BundleError(`${label} was built for model version '${got}' but the bundle's models are version '${version}' (files from two different exports)`);
    }
  }
  const C = session.item_ids.length, H = (session.history_ids || []).length, d = config.dim, v = config.vec_dim;
  const want = {
    item_q: [C, v], item_scale: [C], item_bias: [C], prior: [C], input_q: [C + H, d],
    input_scale: [C + H], input_bias: [C + H], server_vec: [v], user_part: [d],
  };
  for (const [name, shape] of Object.entries(want)) {
    const t = tensors[name];
    if (!t || t.shape.join(",") !== shape.join(",")) throw new BundleError(`session tensor '${name}' is missing or not of shape [${shape}]`);
  }
  const bytes = Object.values(files).reduce((n, b) => n + b.length, manifestBytes.length);
  return { base, manifest, config, modelVersion: version, session, tensors, userModel: files["user_model.onnx"], reranker: files["reranker.onnx"], bytes };
}

function tensor(t, dims) {
  const type = t.data instanceof Uint8Array ? "uint8" : t.data instanceof Int32Array ? "int32" : "float32";
  return new ort.Tensor(type, t.data, dims || t.shape);
}

/** Re-ranks one session's candidates after every click (see turborec.edge.EdgeReranker). */
export class EdgeReranker {
  static async create(bundle) {
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    const r = new EdgeReranker();
    r.userSession = await ort.InferenceSession.create(bundle.userModel, options);
    r.rerankerSession = await ort.InferenceSession.create(bundle.reranker, options);
    for (const [s, known, label] of [[r.userSession, USER_INPUTS, "user_model.onnx"], [r.rerankerSession, RERANKER_INPUTS, "reranker.onnx"]]) {
      const unknown = s.inputNames.filter((n) => !known.includes(n));
      if (unknown.length) throw new BundleError(`${label} has inputs [${unknown}] this page does not provide`);
    }
    r.modelVersion = bundle.modelVersion;
    r.useBundle(bundle);
    return r;
  }

  /** Serve another session's candidates with the loaded models (same model version only). */
  useBundle(bundle) {
    if (bundle.modelVersion !== this.modelVersion) {
      throw new BundleError(`bundle is for model version '${bundle.modelVersion}', but the loaded models are version '${this.modelVersion}'`);
    }
    const t = bundle.tensors;
    this.bundle = bundle;
    this.n = bundle.session.item_ids.length;
    this.index = new Map(bundle.session.item_ids.map((id, row) => [String(id), row]));
    this.static = {};
    for (const name of ["input_q", "input_scale", "input_bias", "item_q", "item_scale", "item_bias", "prior"]) this.static[name] = tensor(t[name]);
    this.static.user_part = tensor(t.user_part, [1, t.user_part.shape[0]]);
    this.static.server_vec = tensor(t.server_vec, [1, t.server_vec.shape[0]]);
    const H = (bundle.session.history_ids || []).length;
    this.history = Array.from({ length: H }, (_, i) => this.n + i);
  }

  /** Candidate rows of item ids; throws UnknownItemError for an id that is not a candidate. */
  rows(ids) {
    return ids.map((id) => {
      const row = this.index.get(String(id));
      if (row === undefined) throw new UnknownItemError(`item ${id} is not in this edge bundle (${this.n} candidates); clicks can only be on the session's candidates`);
      return row;
    });
  }

  feeds(clickedRows) {
    const L = this.bundle.config.history_len, K = this.bundle.config.recent_len;
    const seq = this.history.concat(clickedRows).slice(-L);
    const history = new Int32Array(L).fill(-1);
    history.set(seq);
    const recent = new Int32Array(K).fill(-1);
    recent.set(clickedRows.slice().reverse().slice(0, K));
    return { history: new ort.Tensor("int32", history, [1, L]), recent: new ort.Tensor("int32", recent, [1, K]) };
  }

  /** Scores (Float32Array, one per candidate in bundle order) after clicks given as item ids. */
  async scores(clickedIds) {
    return this.scoreRows(this.rows(clickedIds));
  }

  async scoreRows(clickedRows) {
    const { history, recent } = this.feeds(clickedRows);
    const all = { ...this.static, history, recent };
    const pick = (names) => Object.fromEntries(names.map((n) => [n, all[n]]));
    const user = await this.userSession.run(pick(this.userSession.inputNames));
    all.user_vec = user[this.userSession.outputNames[0]];
    const out = await this.rerankerSession.run(pick(this.rerankerSession.inputNames));
    return out[this.rerankerSession.outputNames[0]].data;
  }

  /** {ids, scores, rows} best first, clicked items left out; k limits the list. */
  async rerank(clickedIds, k = undefined) {
    const clicked = this.rows(clickedIds);
    const scores = await this.scoreRows(clicked);
    const skip = new Set(clicked);
    const rows = [];
    for (let i = 0; i < this.n; i++) if (!skip.has(i)) rows.push(i);
    rows.sort((a, b) => scores[b] - scores[a] || a - b);
    const top = k === undefined ? rows : rows.slice(0, k);
    return { rows: top, ids: top.map((r) => this.bundle.session.item_ids[r]), scores: top.map((r) => scores[r]) };
  }
}
