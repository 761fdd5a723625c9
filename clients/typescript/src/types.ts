// The API's resources, as named in its OpenAPI document (`generated/openapi.ts`, made by
// `npm run generate` from clients/openapi.json; never edited by hand).

import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];

export type Job = Schemas["JobOut"];
export type Batch = Schemas["BatchOut"];
export type Image = Schemas["ImageOut"];
export type JobEvent = Schemas["JobEventOut"];
export type JobPage = Schemas["JobPage"];
export type JobStatus = Schemas["JobStatus"];
export type Usage = Schemas["UsageOut"];
export type Budget = Schemas["BudgetOut"];
export type SessionToken = Schemas["TokenOut"];
export type TokenRequest = Schemas["TokenRequest"];
export type Problem = Schemas["Problem"];
export type Model = Schemas["ModelOut"];
export type EndpointHealth = Schemas["EndpointHealthOut"];
export type GenerateRequest = Schemas["GenerateRequest"];
export type BatchRequest = Schemas["BatchRequest"];
/** What `generate` and `batch` take besides the prompt(s). */
export type GenerationOptions = Omit<GenerateRequest, "prompt">;

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  "completed",
  "failed",
  "cancelled",
  "timed_out",
]);

/** Ended, and no image still on its way into Podrelay's store. */
export function isSettled(job: Job): boolean {
  return TERMINAL_STATUSES.has(job.status) && job.images.every((image) => image.state !== "pending");
}
