// A React hook that follows one Podrelay job until it ends: live over Server-Sent Events
// (`GET /api/v1/runpod/jobs/{id}/events`), falling back to polling `GET /status/{id}` when the
// stream cannot be opened or keeps breaking (a proxy that buffers, a network that drops it).
//
// The stream is read with `fetch`, not `EventSource`, because EventSource cannot send the
// `Authorization` header. A reconnect sends `Last-Event-ID`, so no event is missed or repeated.

import { useEffect, useState } from "react";

import { type Job, type JobEvent, PodrelayClient, TERMINAL_STATUSES } from "./podrelay";

export type Transport = "sse" | "polling";

export interface JobState {
  job: Job | null;
  /** The last event seen on the stream (`null` while polling). */
  lastEvent: JobEvent | null;
  transport: Transport;
  error: Error | null;
  done: boolean;
}

export interface HookOptions {
  /** Polling period once the stream is given up (default 2 s). */
  pollIntervalMs?: number;
  /** Stream failures in a row before falling back to polling (default 3). */
  maxStreamFailures?: number;
}

export function usePodrelayJob(
  client: PodrelayClient,
  jobId: string | null,
  { pollIntervalMs = 2000, maxStreamFailures = 3 }: HookOptions = {},
): JobState {
  const [state, setState] = useState<JobState>({
    job: null,
    lastEvent: null,
    transport: "sse",
    error: null,
    done: false,
  });

  useEffect(() => {
    if (!jobId) return;
    const abort = new AbortController();
    const update = (change: Partial<JobState>) => setState((now) => ({ ...now, ...change }));

    // The job itself (images, timings, cost) comes from /status; events say when it changed.
    const refresh = async (): Promise<boolean> => {
      const job = await client.status(jobId, abort.signal);
      const done = TERMINAL_STATUSES.has(job.status);
      update({ job, done, error: null });
      return done;
    };

    const follow = async (): Promise<void> => {
      if (await refresh()) return;
      let lastEventId: string | undefined;
      let failures = 0;
      while (failures < maxStreamFailures && !abort.signal.aborted) {
        try {
          const response = await client.events(jobId, lastEventId, abort.signal);
          for await (const event of readEvents(response)) {
            lastEventId = String(event.id);
            failures = 0;
            update({ lastEvent: event, transport: "sse" });
            if (await refresh()) return;
          }
          // The server ends the stream after the job's final event.
          if (await refresh()) return;
        } catch (error) {
          if (abort.signal.aborted) return;
          failures += 1;
          update({ error: error as Error });
          await sleep(1000 * failures, abort.signal);
        }
      }
      update({ transport: "polling", lastEvent: null });
      while (!abort.signal.aborted) {
        try {
          if (await refresh()) return;
        } catch (error) {
          if (abort.signal.aborted) return;
          update({ error: error as Error });
        }
        await sleep(pollIntervalMs, abort.signal);
      }
    };

    void follow();
    return () => abort.abort();
  }, [client, jobId, pollIntervalMs, maxStreamFailures]);

  return state;
}

/** Parse a `text/event-stream` body into the JSON `data` of each event. */
export async function* readEvents(response: Response): AsyncGenerator<JobEvent> {
  if (!response.body) throw new Error("the events response has no body");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      // Comment lines (`: keep-alive`) and `retry:` carry no data.
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield JSON.parse(data) as JobEvent;
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
