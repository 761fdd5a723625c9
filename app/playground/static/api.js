// The playground's calls to the Podrelay API: JSON requests with the stored API key or session
// token, problem+json errors, and Server-Sent Events read from a fetch stream. Images need no
// call: their signed URLs go straight into <img src>.

export const API = "/api/v1/runpod";
const KEY_STORAGE = "podrelay.apiKey";

export function storedKey() {
  return localStorage.getItem(KEY_STORAGE) ?? "";
}

export function storeKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** A failed call: the API problem's stable `code` and its `detail`. */
export class ApiError extends Error {
  constructor(code, detail, status) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
    this.status = status;
  }
}

async function send(path, init = {}) {
  const headers = { ...init.headers };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (error) {
    throw new ApiError("network_error", `the API did not answer (${error.message})`, 0);
  }
  if (!response.ok) throw await problemOf(response);
  return response;
}

async function problemOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): the HTTP status is all there is.
  }
  if (body && typeof body.code === "string") {
    return new ApiError(body.code, String(body.detail ?? ""), response.status);
  }
  return new ApiError(`http_${response.status}`, response.statusText || "unexpected answer",
    response.status);
}

export async function getJson(path) {
  return (await send(path)).json();
}

export async function postJson(path, body) {
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  return (await send(path, init)).json();
}

export async function deleteJson(path) {
  return (await send(path, { method: "DELETE" })).json();
}

/**
 * Each event of a Server-Sent Events stream, as {id, event, data} with `data` parsed as JSON.
 * EventSource cannot send the API key header, so the stream is read with fetch instead
 * (which also keeps the key out of URLs and access logs). The API ends lines with LF.
 */
export async function* serverEvents(path, signal) {
  const response = await send(path, { headers: { Accept: "text/event-stream" }, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) yield event;
    }
  }
}

function parseEvent(block) {
  const event = { id: null, event: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") event.data.push(value);
    else if (field === "event") event.event = value;
    else if (field === "id") event.id = value;
  }
  if (!event.data.length) return null;
  return { ...event, data: JSON.parse(event.data.join("\n")) };
}
