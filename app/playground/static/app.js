// The playground page: submit jobs, follow them live, show the caller's results.
// Every text from the user or the API goes into the page as text nodes or attributes.

import {
  API, ApiError, deleteJson, getJson, postJson, serverEvents, storeKey, storedKey,
} from "./api.js";

const PRESETS = {
  square: { width: 512, height: 512, steps: 25 },
  portrait: { width: 768, height: 1152, steps: 30 },
  draft: { width: 512, height: 512, steps: 8, "num-images": 1 },
};
const UNFINISHED = new Set(["pending", "queued", "running"]);
const POLL_MS = 2000;
// Browsers open about 6 connections per host over HTTP/1.1 and each stream holds one: jobs
// beyond this many are followed through the list refresh below instead.
const MAX_STREAMS = 3;
const LIST_LIMIT = 12;
const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

const $ = (id) => document.getElementById(id);
const jobs = new Map(); // job id -> {job, json, card}
const followed = new Set(); // job ids with a stream (or its fallback poll) running

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Errors.

function showError(error) {
  const known = error instanceof ApiError;
  $("error-code").textContent = known ? error.code : "client_error";
  $("error-detail").textContent = known ? error.detail : String(error);
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-code").textContent = "";
  $("error-detail").textContent = "";
}

// The form.

function numberField(id) {
  const value = $(id).valueAsNumber;
  return Number.isNaN(value) ? undefined : value;
}

function options() {
  const body = {
    model: $("model-field").hidden ? undefined : $("model").value || undefined,
    width: numberField("width"),
    height: numberField("height"),
    num_inference_steps: numberField("steps"),
    seed: numberField("seed"),
    num_images: numberField("num-images"),
  };
  const negative = $("negative-prompt").value.trim();
  if (negative) body.negative_prompt = negative;
  return body; // JSON.stringify leaves out the undefined ones: the API's defaults apply
}

async function submit(event) {
  event.preventDefault();
  clearError();
  $("submit").disabled = true;
  try {
    const text = $("prompt").value;
    if ($("batch").checked) {
      const prompts = text.split("\n").map((line) => line.trim()).filter(Boolean);
      const batch = await postJson(`${API}/generate/batch`, { prompts, ...options() });
      [...batch.jobs].reverse().forEach(track);
    } else {
      track(await postJson(`${API}/generate`, { prompt: text, ...options() }));
    }
  } catch (error) {
    showError(error);
  } finally {
    $("submit").disabled = false;
  }
}

function applyPreset(name) {
  for (const [field, value] of Object.entries(PRESETS[name])) $(field).value = String(value);
  settingsTouched = true;
}

// The models: a picker when there is more than one, each filling in its defaults and limits.

const models = new Map(); // name -> the model as GET /models lists it
// Once the user has set a size or steps, a late or repeated model list keeps their values.
let settingsTouched = false;
const DEFAULT_FIELDS = { width: "width", height: "height", num_inference_steps: "steps",
  num_images: "num-images" };
const BOUND_FIELDS = { max_width: "width", max_height: "height", max_steps: "steps",
  max_images: "num-images" };

async function loadModels() {
  const { models: listed } = await getJson(`${API}/models`);
  models.clear();
  const picker = $("model");
  const chosen = picker.value;
  picker.replaceChildren(...listed.map((model) => {
    models.set(model.name, model);
    const label = `${model.name} (${model.kind}${model.default ? ", default" : ""})`;
    return el("option", { value: model.name }, label);
  }));
  const fallback = listed.find((model) => model.default)?.name ?? "";
  picker.value = models.has(chosen) ? chosen : fallback;
  $("model-field").hidden = listed.length < 2;
  applyModel({ defaults: !settingsTouched });
}

function applyModel({ defaults }) {
  const model = models.get($("model").value);
  if (!model) return;
  if (defaults) {
    for (const [name, id] of Object.entries(DEFAULT_FIELDS)) {
      if (model.defaults[name] !== undefined) $(id).value = String(model.defaults[name]);
    }
  }
  for (const [name, id] of Object.entries(BOUND_FIELDS)) $(id).max = String(model.bounds[name]);
}

// Jobs.

const needsWatching = (job) =>
  UNFINISHED.has(job.status) || job.images.some((image) => image.state === "pending");

function track(job) {
  render(job);
  follow(job);
}

/** Live updates from the job's event stream; polling its status when the stream fails. */
async function follow(job) {
  if (followed.has(job.id) || followed.size >= MAX_STREAMS || !needsWatching(job)) return;
  followed.add(job.id);
  try {
    try {
      for await (const event of serverEvents(job.links.events)) {
        if (event.data.status !== jobs.get(job.id)?.job.status) await refreshJob(job.id);
      }
    } catch (error) {
      console.warn("event stream failed, polling instead", error);
    }
    // After the stream's last event the images may still be downloading.
    for (;;) {
      const current = await refreshJob(job.id);
      if (!needsWatching(current)) break;
      await sleep(POLL_MS);
    }
  } catch (error) {
    showError(error);
  } finally {
    followed.delete(job.id);
  }
}

async function refreshJob(id) {
  const job = await getJson(`${API}/status/${encodeURIComponent(id)}`);
  render(job);
  return job;
}

async function refreshList() {
  const page = await getJson(`${API}/jobs?limit=${LIST_LIMIT}`);
  [...page.items].reverse().forEach(track);
}

function forgetJobs() {
  jobs.clear();
  $("jobs").replaceChildren();
  $("jobs-empty").hidden = false;
}

// Rendering.

function render(job) {
  const json = JSON.stringify(job);
  const known = jobs.get(job.id);
  if (known?.json === json) return;
  const card = known?.card ?? el("li", { class: "job", "data-job-id": job.id });
  if (!known) $("jobs").prepend(card);
  card.dataset.status = job.status;
  card.replaceChildren(jobView(job));
  jobs.set(job.id, { job, json, card });
  $("jobs-empty").hidden = true;
}

function jobView(job) {
  const title = `job-title-${job.id}`;
  const status = job.queue_position === null || job.queue_position === undefined
    ? job.status : `${job.status} (${job.queue_position} ahead)`;
  return el("article", { "aria-labelledby": title },
    el("header", {},
      el("h3", { id: title }, job.prompt),
      el("span", { class: `job-status status-${job.status}` }, status)),
    el("p", { class: "meta" }, el("code", {}, job.id),
      ` · ${job.params.width}×${job.params.height}, ${job.params.num_inference_steps} steps`),
    progressView(job),
    timingsView(job),
    job.error ? el("p", { class: "job-error" },
      el("code", {}, job.error.code), job.error.message ? ` ${job.error.message}` : "") : null,
    el("div", { class: "job-images" }, ...job.images.map((image, i) => imageView(job, image, i))),
    UNFINISHED.has(job.status) ? cancelButton(job) : null);
}

function progressView(job) {
  if (job.status !== "running" || job.progress === null || job.progress === undefined) return null;
  const fraction = typeof job.progress === "number" ? job.progress : job.progress.progress;
  if (typeof fraction !== "number") return el("p", { class: "job-progress" }, "running");
  const percent = `${Math.round(fraction * 100)}%`;
  return el("p", { class: "job-progress" },
    el("progress", { max: 1, value: fraction, "aria-label": `Progress ${percent}` }), ` ${percent}`);
}

function timingsView(job) {
  const { delay_ms: delay, execution_ms: execution } = job.timings;
  const parts = [];
  if (delay !== null) parts.push(`delay ${delay} ms`);
  if (execution !== null) parts.push(`execution ${execution} ms`);
  if (job.cost.estimated_usd !== null) parts.push(`≈ $${job.cost.estimated_usd}`);
  return parts.length ? el("p", { class: "job-timings" }, parts.join(" · ")) : null;
}

function imageView(job, image, index) {
  if (image.state !== "stored") {
    return el("p", { class: `image-${image.state}` }, `image ${index + 1}: ${image.state}`);
  }
  // A signed URL: the browser loads it like any image, no key in it or in a header.
  const img = el("img", { alt: `Result ${index + 1} for: ${job.prompt}`, class: "result",
    src: image.signed_url, loading: "lazy" });
  const name = `${job.id}-${index + 1}.${EXTENSIONS[image.mime_type] ?? "png"}`;
  const link = el("a", { class: "download", download: name, href: image.signed_url,
    "aria-label": `Download ${name}` }, "Download");
  return el("figure", {}, img, el("figcaption", {}, link));
}

function cancelButton(job) {
  const button = el("button", { type: "button", class: "job-cancel",
    "aria-label": `Cancel job ${job.id}` }, "Cancel");
  button.addEventListener("click", async () => {
    button.disabled = true;
    clearError();
    try {
      render(await deleteJson(job.links.cancel));
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  });
  return button;
}

// Start.

/** A session token handed over in the page's fragment (`/#token=prs_...`, as a host app's
 * link may open the page for its user): kept like a typed key, and taken out of the URL. */
function tokenFromFragment() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return;
  storeKey(token);
  history.replaceState(null, "", location.pathname + location.search);
}

function start() {
  tokenFromFragment();
  $("api-key").value = storedKey();
  $("api-key").addEventListener("change", () => {
    storeKey($("api-key").value.trim());
    forgetJobs();
    refreshList().catch(showError);
    loadModels().catch((error) => console.warn("could not list the models", error));
  });
  $("model").addEventListener("change", () => applyModel({ defaults: true }));
  for (const id of Object.values(DEFAULT_FIELDS)) {
    $(id).addEventListener("input", () => { settingsTouched = true; });
  }
  $("generate-form").addEventListener("submit", submit);
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => applyPreset(button.dataset.preset));
  }
  $("refresh").addEventListener("click", () => {
    clearError();
    refreshList().catch(showError);
  });
  // Progress is not an event of its own, and jobs past MAX_STREAMS have no stream: for
  // them, one request for the whole list.
  setInterval(() => {
    const stale = [...jobs.values()].some(({ job }) =>
      job.status === "running" || (needsWatching(job) && !followed.has(job.id)));
    if (stale) refreshList().catch(showError);
  }, POLL_MS);
  refreshList().catch(showError);
  loadModels().catch((error) => console.warn("could not list the models", error));
}

start();
