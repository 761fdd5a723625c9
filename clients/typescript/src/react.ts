// A React hook that follows one Podrelay job until it has ended: live over Server-Sent Events
// (`Podrelay.events`), falling back to polling `status` when the stream cannot be opened or
// keeps breaking (a proxy that buffers, a network that drops it).

import { useEffect, useState } from "react";

import type { Podrelay } from "./client.js";
import { sleep } from "./retry.js";
import type { Job, JobEvent } from "./types.js";
import { isSettled } from "./types.js";

export type Transport = "sse" | "polling";

export interface JobState {
  job: Job | null;
  /** The last event seen on the stream (`null` while polling). */
  lastEvent: JobEvent | null;
  transport: Transport;
  error: Error | null;
  /** Ended, with its images stored. */
  done: boolean;
}

export interface HookOptions {
  /** Polling period once the stream is given up (default 2 s). */
  pollIntervalMs?: number;
}

export function usePodrelayJob(
  client: Podrelay,
  jobId: string | null,
  { pollIntervalMs = 2000 }: HookOptions = {},
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
      const done = isSettled(job);
      update({ job, done, error: null });
      return done;
    };

    const follow = async (): Promise<void> => {
      try {
        if (await refresh()) return;
        for await (const event of client.events(jobId, { signal: abort.signal })) {
          update({ lastEvent: event, transport: "sse" });
          if (await refresh()) return;
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        update({ error: error as Error });
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
  }, [client, jobId, pollIntervalMs]);

  return state;
}
