// Podrelay's TypeScript client. `Podrelay` wraps the client generated from the API's OpenAPI
// document with waiting, live events (SSE), retries and pagination; `@podrelay/client/webhooks`
// checks webhook signatures (Node), `@podrelay/client/react` follows a job in a component.

export { Podrelay } from "./client.js";
export type {
  GenerateOptions,
  JobsOptions,
  PodrelayOptions,
  SubmitOptions,
  TokenSource,
  WaitOptions,
} from "./client.js";
export { PodrelayConnectionError, PodrelayError, WaitTimeoutError } from "./errors.js";
export { EventStream } from "./events.js";
export type { components, operations, paths } from "./generated/openapi.js";
export { TERMINAL_STATUSES, isSettled } from "./types.js";
export type {
  Batch,
  BatchRequest,
  Budget,
  EndpointHealth,
  GenerateRequest,
  GenerationOptions,
  Image,
  Job,
  JobEvent,
  JobPage,
  JobStatus,
  Model,
  Problem,
  SessionToken,
  TokenRequest,
  Usage,
} from "./types.js";
