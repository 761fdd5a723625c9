// A typed client for Podrelay's REST API (`/api/v1/runpod`). No dependencies: it uses the
// platform's `fetch`, so it runs in browsers, Node 18+, Deno and Bun.
//
// Every interface marked `@schema X` mirrors the OpenAPI schema X of the API it was written
// against; tests/docs/test_integration_docs.py checks them against the live schema.

export type JobStatus =
  | "pending"
  | "queued"
  | "running"
  | "completed"
  | "failed"
  | "cancelled"
  | "timed_out";

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  "completed",
  "failed",
  "cancelled",
  "timed_out",
]);

export type Scheduler =
  | "DDIM"
  | "PNDM"
  | "KLMS"
  | "K_EULER"
  | "K_EULER_ANCESTRAL"
  | "DPMSolverMultistep"
  | "DPMSolverSinglestep";

/** What a generate and a batch request share: each option applies to every job made. */
export interface GenerationOptions {
  negative_prompt?: string | null;
  width?: number;
  height?: number;
  num_inference_steps?: number;
  guidance_scale?: number;
  scheduler?: Scheduler;
  seed?: number | null;
  num_images?: number;
  return_type?: "url" | "base64";
  add_default_prompts?: boolean;
  /** Seconds before the job is cancelled (default RUNPOD_JOB_TIMEOUT, 300). */
  timeout?: number | null;
  /** Podrelay POSTs a signed `job.*` event here when the job ends. */
  webhook_url?: string | null;
  /** Leaves the queue before lower priorities; up to the key's maximum. */
  priority?: Priority;
}

export type Priority = "high" | "normal" | "low";

/** @schema QueueOut */
export interface QueuePlace {
  podrelay_position: number | null;
  runpod_position: number | null;
  eta_s: number | null;
}

/** @schema GenerateRequest */
export interface GenerateRequest extends GenerationOptions {
  prompt: string;
}

/** @schema BatchRequest */
export interface BatchRequest extends GenerationOptions {
  /** 1 to 10 prompts; the other options apply to each of them. */
  prompts: string[];
}

/** @schema ImageOut */
export interface Image {
  id: string;
  /** A path on the API (`/api/v1/runpod/images/{id}`); fetch it with the same API key. */
  url: string;
  /**
   * A path on the API that needs no key until `signed_url_expires_at`: put it in `<img src>`.
   * Append `&w=256&format=webp` (or `jpeg`) for a resized copy.
   */
  signed_url: string;
  signed_url_expires_at: string;
  state: "pending" | "stored" | "failed" | "deleted";
  width: number | null;
  height: number | null;
  mime_type: string | null;
  size_bytes: number | null;
  sha256: string | null;
  seed: number | null;
}

/** @schema ErrorOut */
export interface JobError {
  code: string;
  message: string | null;
}

/** @schema TimingsOut */
export interface Timings {
  created_at: string;
  submitted_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  deadline_at: string;
  delay_ms: number | null;
  execution_ms: number | null;
}

/** @schema CostOut */
export interface Cost {
  gpu_seconds: number | null;
  estimated_usd: number | null;
}

/** @schema LinksOut */
export interface Links {
  status: string;
  events: string;
  cancel: string;
}

/** @schema WebhookAttemptOut */
export interface WebhookAttempt {
  at: string;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

/** @schema WebhookDeliveryOut */
export interface WebhookDelivery {
  id: string;
  event: string;
  state: "pending" | "delivered" | "failed";
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  created_at: string;
  delivered_at: string | null;
  attempt_log: WebhookAttempt[];
}

/** @schema JobOut */
export interface Job {
  id: string;
  object: "job";
  status: JobStatus;
  batch_id: string | null;
  prompt: string;
  negative_prompt: string | null;
  params: Record<string, unknown>;
  progress: unknown;
  queue_position: number | null;
  queue?: QueuePlace | null;
  route?: string;
  endpoint?: string | null;
  priority?: Priority;
  attempts: number;
  error: JobError | null;
  timings: Timings;
  cost: Cost;
  images: Image[];
  webhook_url: string | null;
  webhook_deliveries: WebhookDelivery[];
  links: Links;
  replayed: boolean;
}

/** @schema BatchOut */
export interface Batch {
  id: string;
  object: "batch";
  created_at: string;
  size: number;
  counts: Record<string, number>;
  done: boolean;
  jobs: Job[];
  webhook_deliveries: WebhookDelivery[];
  replayed: boolean;
}

/** @schema JobPage */
export interface JobPage {
  items: Job[];
  next_cursor: string | null;
}

/** @schema UsageDay */
export interface UsageDay {
  day: string;
  jobs: number;
  completed: number;
  images: number;
  gpu_seconds: number;
  estimated_usd: number;
}

/** @schema UsageOut */
export interface Usage {
  days: UsageDay[];
  gpu_price_per_second: number;
}

/** @schema ConnectionTestOut */
export interface ConnectionTest {
  ok: boolean;
  key_accepted: boolean | null;
  latency_ms: number;
  workers: Record<string, number> | null;
  jobs: Record<string, number> | null;
  error: string | null;
}

/** @schema QueueStatsOut */
export interface QueueStats {
  jobs_by_status: Record<string, number>;
  queues: Record<string, number | null>;
  runpod_health: Record<string, Record<string, number>> | null;
  runpod_error: string | null;
  stall_reason: string | null;
}

/** @schema Problem */
export interface Problem {
  type: string;
  title: string;
  status: number;
  /** Stable and machine-readable, e.g. `job_not_found`, `rate_limited`. */
  code: string;
  detail: string;
  retryable: boolean;
  /** Seconds to wait before retrying, when the API says so. */
  retry_after: number | null;
  errors: Record<string, unknown>[] | null;
}

/** One Server-Sent Event of `GET /jobs/{id}/events` (its `data`, parsed). */
export interface JobEvent {
  id: number;
  kind: string;
  status: JobStatus | null;
  message: string | null;
  at: string;
}

/** An answer other than 2xx, with the API's `application/problem+json` body. */
export class PodrelayError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Partial<Problem>,
  ) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.name = "PodrelayError";
  }

  get retryable(): boolean {
    return this.problem.retryable ?? (this.status === 429 || this.status >= 500);
  }
}

export interface ClientOptions {
  /** e.g. `http://localhost:8000`; "" for same-origin requests from a browser. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; leave out where anonymous calls are allowed. */
  apiKey?: string;
  fetch?: typeof fetch;
}

export interface GenerateOptions {
  /** The same key replays the first answer instead of creating a second job. */
  idempotencyKey?: string;
  /** Wait up to N seconds (at most 60) for the job to end; a finished job comes back as 200. */
  waitSeconds?: number;
  signal?: AbortSignal;
}

export interface ListJobsOptions {
  status?: JobStatus;
  batchId?: string;
  limit?: number;
  cursor?: string;
}

type Method = "GET" | "POST" | "DELETE";

export class PodrelayClient {
  private readonly baseUrl: string;
  private readonly apiKey?: string;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Start one generation: 202 with the job (or 200 when `waitSeconds` saw it end). */
  generate(body: GenerateRequest, options: GenerateOptions = {}): Promise<Job> {
    const headers: Record<string, string> = {};
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    if (options.waitSeconds) headers["Prefer"] = `wait=${Math.round(options.waitSeconds)}`;
    return this.request<Job>("POST", `/api/v1/runpod/generate`, {
      body,
      headers,
      signal: options.signal,
    });
  }

  /** Start up to 10 generations as one batch. */
  generateBatch(body: BatchRequest, options: GenerateOptions = {}): Promise<Batch> {
    const headers: Record<string, string> = {};
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    return this.request<Batch>("POST", `/api/v1/runpod/generate/batch`, {
      body,
      headers,
      signal: options.signal,
    });
  }

  /** A job by its id (or the Celery task id a seed-style task returned). */
  status(jobId: string, signal?: AbortSignal): Promise<Job> {
    return this.request<Job>("GET", `/api/v1/runpod/status/${encodeURIComponent(jobId)}`, {
      signal,
    });
  }

  /** Cancel a job, at RunPod too; a `PodrelayError` with status 409 when it already ended. */
  cancel(jobId: string): Promise<Job> {
    return this.request<Job>("DELETE", `/api/v1/runpod/cancel/${encodeURIComponent(jobId)}`);
  }

  /** Delete a finished job's images (their URLs answer 410), and its prompt with `purgePrompt`. */
  deleteJob(jobId: string, purgePrompt = false): Promise<Job> {
    const purge = purgePrompt ? "?purge=prompt" : "";
    return this.request<Job>("DELETE", `/api/v1/runpod/jobs/${encodeURIComponent(jobId)}${purge}`);
  }

  /** The caller's jobs, newest first; pass `next_cursor` back as `cursor` for the next page. */
  listJobs(options: ListJobsOptions = {}): Promise<JobPage> {
    const query = new URLSearchParams();
    if (options.status) query.set("status", options.status);
    if (options.batchId) query.set("batch_id", options.batchId);
    if (options.limit) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    const suffix = query.size ? `?${query}` : "";
    return this.request<JobPage>("GET", `/api/v1/runpod/jobs${suffix}`);
  }

  batch(batchId: string): Promise<Batch> {
    return this.request<Batch>("GET", `/api/v1/runpod/batches/${encodeURIComponent(batchId)}`);
  }

  usage(): Promise<Usage> {
    return this.request<Usage>("GET", `/api/v1/runpod/usage`);
  }

  /** Admin keys only: is the RunPod key accepted, the endpoint's workers, the latency. */
  testConnection(): Promise<ConnectionTest> {
    return this.request<ConnectionTest>("POST", `/api/v1/runpod/test`);
  }

  /** Admin keys only: jobs by status, RunPod's /health and why jobs wait. */
  queueStats(): Promise<QueueStats> {
    return this.request<QueueStats>("GET", `/api/v1/runpod/queue/stats`);
  }

  /** A stored image's bytes, with the API key (a page can use `image.signed_url` instead). */
  async image(image: Image, signal?: AbortSignal): Promise<Blob> {
    const response = await this.send("GET", image.url, { signal });
    return response.blob();
  }

  /** The open `GET /jobs/{id}/events` response; `lastEventId` resumes after that event. */
  events(jobId: string, lastEventId?: string, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    return this.send("GET", `/api/v1/runpod/jobs/${encodeURIComponent(jobId)}/events`, {
      headers,
      signal,
    });
  }

  private async request<T>(
    method: Method,
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<T> {
    const response = await this.send(method, path, init);
    return (await response.json()) as T;
  }

  private async send(
    method: Method,
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.apiKey) headers["Authorization"] = `Bearer ${this.apiKey}`;
    if (init.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await this.fetchImpl(this.baseUrl + path, {
      method,
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: init.signal,
    });
    if (!response.ok) {
      const problem = (await response.json().catch(() => ({}))) as Partial<Problem>;
      throw new PodrelayError(response.status, problem);
    }
    return response;
  }
}
