// `Podrelay`: the generated client (openapi-fetch over `generated/openapi.ts`) with what the
// API's document cannot say: waiting for a job, following its events, retries, pagination.

import createClient, { type Client } from "openapi-fetch";

import { PodrelayError, WaitTimeoutError } from "./errors.js";
import { EventStream, lines } from "./events.js";
import type { paths } from "./generated/openapi.js";
import { backoffMs, retryingFetch, sleep } from "./retry.js";
import type {
  Batch,
  GenerationOptions,
  Image,
  Job,
  JobEvent,
  JobStatus,
  Model,
  SessionToken,
  TokenRequest,
  Usage,
} from "./types.js";
import { TERMINAL_STATUSES, isSettled } from "./types.js";

const MAX_PREFER_WAIT_S = 60; // the API holds a `Prefer: wait` request at most this long
const SETTLE_POLL_MS = 500;

/** Where a browser gets its session token: usually your backend, which mints one with
 * `sessionToken` (`POST /api/v1/tokens`) for the signed-in user. */
export type TokenSource = () => string | Promise<string>;

export interface PodrelayOptions {
  /** e.g. `http://localhost:8000`; "" for same-origin requests from a browser. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; leave out where anonymous calls are allowed.
   * A server key stays on your server: browsers use a publishable key or a `token`. */
  apiKey?: string;
  /** A session token, or what gets a fresh one: asked before the first request and again
   * when the API answers 401 `token_expired` (the request is then sent once more). */
  token?: string | TokenSource;
  /** Network errors, 429, 502, 503 and 504 are retried this many times (default 2). */
  maxRetries?: number;
  fetch?: (request: Request) => Promise<Response>;
}

export interface SubmitOptions {
  /** The same key replays the first answer instead of creating a second job (default: a
   * fresh key per call, so a retried call never starts a second job). */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface WaitOptions {
  /** Give up (`WaitTimeoutError`) after this long; default: as long as the job takes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface GenerateOptions extends SubmitOptions, WaitOptions {
  /** Resolve once the job has ended and its images are stored. */
  wait?: boolean;
}

export interface JobsOptions {
  status?: JobStatus;
  batchId?: string;
  pageSize?: number;
}

type Answer<T> = { data?: T; error?: unknown; response: Response };

export class Podrelay {
  /** The generated client, for every operation of the API document. */
  readonly api: Client<paths>;

  constructor(options: PodrelayOptions) {
    const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
    const credential = options.token ?? options.apiKey;
    this.api = createClient<paths>({
      baseUrl: options.baseUrl.replace(/\/+$/, ""),
      fetch: retryingFetch(credential ? authorizingFetch(send, credential) : send, options.maxRetries ?? 2),
    });
  }

  /** Start a generation: the job, or with `wait` the job once it has ended. */
  async generate(
    prompt: string,
    options: GenerationOptions = {},
    { wait = false, timeoutMs, idempotencyKey, signal }: GenerateOptions = {},
  ): Promise<Job> {
    const held = Math.min(MAX_PREFER_WAIT_S, Math.ceil((timeoutMs ?? Infinity) / 1000));
    const job = unwrap(
      await this.api.POST("/api/v1/runpod/generate", {
        body: { ...options, prompt },
        params: {
          header: {
            "Idempotency-Key": idempotencyKey ?? newKey(),
            ...(wait ? { prefer: `wait=${Math.max(1, held)}` } : {}),
          },
        },
        signal,
      }),
    );
    return wait && !isSettled(job) ? this.wait(job.id, { timeoutMs, signal }) : job;
  }

  /** Start up to 10 generations as one batch. */
  async batch(
    prompts: string[],
    options: GenerationOptions = {},
    { idempotencyKey, signal }: SubmitOptions = {},
  ): Promise<Batch> {
    return unwrap(
      await this.api.POST("/api/v1/runpod/generate/batch", {
        body: { ...options, prompts },
        params: { header: { "Idempotency-Key": idempotencyKey ?? newKey() } },
        signal,
      }),
    );
  }

  /** A job by its id (or the Celery task id a seed-style task returned). */
  async status(jobId: string, signal?: AbortSignal): Promise<Job> {
    const path = { task_id: jobId };
    return unwrap(await this.api.GET("/api/v1/runpod/status/{task_id}", { params: { path }, signal }));
  }

  /** Cancel a job, at RunPod too; a `PodrelayError` (409 `job_finished`) once it has ended. */
  async cancel(jobId: string): Promise<Job> {
    const path = { task_id: jobId };
    return unwrap(await this.api.DELETE("/api/v1/runpod/cancel/{task_id}", { params: { path } }));
  }

  async batchStatus(batchId: string): Promise<Batch> {
    const path = { batch_id: batchId };
    return unwrap(await this.api.GET("/api/v1/runpod/batches/{batch_id}", { params: { path } }));
  }

  /** The caller's usage per day, and what its budgets leave. */
  async usage(): Promise<Usage> {
    return unwrap(await this.api.GET("/api/v1/runpod/usage"));
  }

  /** The models (routes) a job may name as `model`, the default first, with their RunPod
   * endpoints' health. Any credential may read it, a browser's too. */
  async models(): Promise<Model[]> {
    return unwrap(await this.api.GET("/api/v1/runpod/models")).models;
  }

  /** On your server, with a server key: a session token for one signed-in user of your app,
   * for their browser (default 15 minutes). It sees only that user's jobs. */
  async sessionToken(user: string, options: Omit<TokenRequest, "user"> = {}): Promise<SessionToken> {
    return unwrap(await this.api.POST("/api/v1/tokens", { body: { ...options, user } }));
  }

  /** The caller's jobs, newest first, fetched a page at a time. */
  async *jobs({ status, batchId, pageSize = 20 }: JobsOptions = {}): AsyncGenerator<Job> {
    let cursor: string | undefined;
    do {
      const query = { status, batch_id: batchId, limit: pageSize, cursor };
      const page = unwrap(await this.api.GET("/api/v1/runpod/jobs", { params: { query } }));
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** The job's events as they happen, until it ends; reconnects with `Last-Event-ID` when the
   * connection breaks, so none is missed or repeated. */
  async *events(
    jobId: string,
    { lastEventId, signal }: { lastEventId?: string; signal?: AbortSignal } = {},
  ): AsyncGenerator<JobEvent> {
    const stream = new EventStream(lastEventId);
    for (let failures = 0; ; ) {
      try {
        const header = stream.lastEventId ? { "Last-Event-ID": stream.lastEventId } : {};
        const answer = await this.api.GET("/api/v1/runpod/jobs/{job_id}/events", {
          params: { path: { job_id: jobId }, header },
          parseAs: "stream",
          signal,
        });
        const body = unwrap(answer as Answer<ReadableStream<Uint8Array> | null>);
        if (!body) throw new Error("the event stream has no body");
        for await (const line of lines(body)) {
          const event = stream.feed(line);
          if (event) {
            failures = 0;
            yield event;
          }
        }
        if (!stream.reconnect()) return;
      } catch (error) {
        if (error instanceof PodrelayError || signal?.aborted) throw error;
        stream.interrupted();
        failures += 1;
        if (failures > 3) throw error;
        await sleep(backoffMs(failures), signal);
      }
    }
  }

  /** The job once it has ended and its images are stored. */
  async wait(jobId: string, { timeoutMs, signal }: WaitOptions = {}): Promise<Job> {
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const timer = new AbortController();
    const stop = () => timer.abort();
    signal?.addEventListener("abort", stop);
    const clock = deadline === undefined ? undefined : setTimeout(stop, deadline - Date.now());
    try {
      let job = await this.status(jobId, timer.signal);
      if (!TERMINAL_STATUSES.has(job.status)) {
        for await (const event of this.events(jobId, { signal: timer.signal })) void event;
        job = await this.status(jobId, timer.signal);
      }
      while (!isSettled(job)) {
        await sleep(SETTLE_POLL_MS, timer.signal);
        job = await this.status(jobId, timer.signal);
      }
      return job;
    } catch (error) {
      if (timer.signal.aborted && !signal?.aborted && deadline !== undefined) {
        throw new WaitTimeoutError(jobId, timeoutMs ?? 0);
      }
      throw error;
    } finally {
      clearTimeout(clock);
      signal?.removeEventListener("abort", stop);
    }
  }

  /** A stored image's bytes (its URL needs the API key, so no plain `<img src>`). */
  async download(image: Image | string, signal?: AbortSignal): Promise<Uint8Array> {
    const path = { image_id: typeof image === "string" ? image : image.id };
    const answer = await this.api.GET("/api/v1/runpod/images/{image_id}", {
      params: { path },
      parseAs: "arrayBuffer",
      signal,
    });
    return new Uint8Array(unwrap(answer as Answer<ArrayBuffer>));
  }
}

/** `fetch` that sends the credential, and asks a `TokenSource` again once on `token_expired`. */
function authorizingFetch(
  send: (request: Request) => Promise<Response>,
  credential: string | TokenSource,
): (request: Request) => Promise<Response> {
  let current: Promise<string> | null = null;
  const fresh = () => (current = Promise.resolve(typeof credential === "function" ? credential() : credential));
  const sendWith = (request: Request, value: string) => {
    request.headers.set("Authorization", `Bearer ${value}`);
    return send(request);
  };
  return async (request) => {
    const response = await sendWith(request.clone(), await (current ?? fresh()));
    if (typeof credential !== "function" || response.status !== 401) return response;
    if (!(await response.clone().text()).includes('"token_expired"')) return response;
    return sendWith(request, await fresh());
  };
}

function unwrap<T>({ data, error, response }: Answer<T>): T {
  if (!response.ok || error !== undefined) throw new PodrelayError(response.status, error);
  return data as T;
}

function newKey(): string {
  const uuid = globalThis.crypto?.randomUUID?.();
  return `podrelay-ts-${uuid ?? `${Date.now()}-${Math.random().toString(36).slice(2)}`}`;
}
