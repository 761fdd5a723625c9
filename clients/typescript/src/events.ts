// Reading a job's `text/event-stream` (WHATWG rules, for the fields Podrelay sends). The stream
// is read with `fetch` rather than `EventSource`, which cannot send the Authorization header.

import type { JobEvent } from "./types.js";
import { TERMINAL_STATUSES } from "./types.js";

/** Parses the stream's lines into events, and keeps what a reconnection needs. */
export class EventStream {
  lastEventId: string | undefined;
  private data: string[] = [];
  private seenInStream = 0;
  private lastTerminal = false;

  constructor(lastEventId?: string) {
    this.lastEventId = lastEventId;
  }

  /** One line (without its end); returns the event it completes, if any. */
  feed(line: string): JobEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment: keep-alive
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
    return null;
  }

  /** After a stream ended cleanly: open another? Only when it was cut short, that is when it
   * brought events and the last one did not end the job. */
  reconnect(): boolean {
    const again = this.seenInStream > 0 && !this.lastTerminal;
    this.seenInStream = 0;
    this.data = [];
    return again;
  }

  /** The connection broke mid-stream: drop the partial event. */
  interrupted(): void {
    this.data = [];
  }

  private dispatch(): JobEvent | null {
    if (this.data.length === 0) return null;
    const event = JSON.parse(this.data.join("\n")) as JobEvent;
    this.data = [];
    this.seenInStream += 1;
    this.lastTerminal = event.status !== null && TERMINAL_STATUSES.has(event.status);
    return event;
  }
}

/** The lines of a response body, split on \n, \r\n or \r. */
export async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>;
  const reader = body.pipeThrough(decoder).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: RegExpExecArray | null;
      while ((end = /\r\n|\r|\n/.exec(buffer)) !== null) {
        if (end[0] === "\r" && end.index === buffer.length - 1) break; // maybe half of \r\n
        yield buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
      }
    }
    if (buffer) yield buffer;
  } finally {
    reader.releaseLock();
  }
}
