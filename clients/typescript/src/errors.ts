import type { Problem } from "./types.js";

/** The API answered with an error; `code` is its stable code (`job_not_found`, `rate_limited`, ...). */
export class PodrelayError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(status: number, body: unknown) {
    const problem = toProblem(status, body);
    super(`${status} ${problem.code}: ${problem.detail}`);
    this.name = "PodrelayError";
    this.status = status;
    this.problem = problem;
  }

  get code(): string {
    return this.problem.code;
  }

  get detail(): string {
    return this.problem.detail;
  }

  get retryable(): boolean {
    return this.problem.retryable ?? false;
  }

  /** Seconds to wait before retrying, when the API says so. */
  get retryAfter(): number | null {
    return this.problem.retry_after ?? null;
  }
}

/** No answer from the API (refused, reset, timed out), after the retries. */
export class PodrelayConnectionError extends Error {
  constructor(readonly reason: unknown) {
    super(`no answer from the Podrelay API (${String(reason)})`);
    this.name = "PodrelayConnectionError";
  }
}

/** The job did not settle within the time `wait` was given. */
export class WaitTimeoutError extends Error {
  constructor(jobId: string, timeoutMs: number) {
    super(`job ${jobId} did not settle within ${timeoutMs} ms`);
    this.name = "WaitTimeoutError";
  }
}

function toProblem(status: number, body: unknown): Problem {
  const given = (typeof body === "object" && body !== null ? body : {}) as Partial<Problem>;
  if (typeof given.code === "string" && typeof given.detail === "string") {
    return {
      type: given.type ?? "about:blank",
      title: given.title ?? "",
      status,
      code: given.code,
      detail: given.detail,
      retryable: given.retryable ?? false,
      retry_after: given.retry_after ?? null,
      errors: given.errors ?? null,
    };
  }
  // Not a problem document (a proxy's page): still an error, with the code `http_<status>`.
  const text = typeof body === "string" ? body.trim().slice(0, 200) : "";
  return {
    type: "about:blank",
    title: `HTTP ${status}`,
    status,
    code: `http_${status}`,
    detail: text || `HTTP ${status}`,
    retryable: status === 429 || status >= 500,
    retry_after: null,
    errors: null,
  };
}
