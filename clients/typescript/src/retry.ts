// Which failures are tried again, and after how long. Network errors, 429, 502, 503, 504 and
// `idempotency_key_in_use` are retried: submissions carry an Idempotency-Key, so every call is
// safe to send again. The wait is the answer's `Retry-After` (up to a minute; a longer one is
// the caller's to decide), else an exponential backoff with jitter.

import { PodrelayConnectionError } from "./errors.js";

export const MAX_RETRY_AFTER_S = 60;
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;

export function backoffMs(attempt: number): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Milliseconds to wait before retry `attempt` (1, 2, ...) after `response`; null: do not. */
export async function retryDelayMs(
  attempt: number,
  maxRetries: number,
  response: Response,
): Promise<number | null> {
  if (attempt > maxRetries || !(await retryable(response))) return null;
  const named = retryAfterSeconds(response.headers.get("Retry-After"));
  if (named === null) return backoffMs(attempt);
  return named <= MAX_RETRY_AFTER_S ? named * 1000 : null;
}

async function retryable(response: Response): Promise<boolean> {
  if ([429, 502, 503, 504].includes(response.status)) return true;
  if (response.status !== 409) return false;
  return (await response.clone().text()).includes("idempotency_key_in_use");
}

/** `Retry-After` in seconds: delta-seconds or an HTTP date. */
export function retryAfterSeconds(value: string | null): number | null {
  if (!value) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

/** `fetch` that retries as above; `send` is the platform's (or the caller's) fetch. */
export function retryingFetch(
  send: (request: Request) => Promise<Response>,
  maxRetries: number,
): (request: Request) => Promise<Response> {
  return async (request) => {
    for (let attempt = 1; ; attempt += 1) {
      let response: Response;
      try {
        response = await send(request.clone());
      } catch (error) {
        if (request.signal.aborted) throw error;
        if (attempt > maxRetries) throw new PodrelayConnectionError(error);
        await sleep(backoffMs(attempt), request.signal);
        continue;
      }
      const delay = await retryDelayMs(attempt, maxRetries, response);
      if (delay === null) return response;
      await sleep(delay, request.signal);
    }
  };
}

export function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
