// Checking the signature of Podrelay's webhooks (Standard Webhooks), in Node.

import { createHmac, timingSafeEqual } from "node:crypto";

const PREFIX = "whsec_";
const TOLERANCE_S = 300;

export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

/** The HMAC key of a secret: the base64 after `whsec_`; for a secret made before Podrelay used
 * that form (not valid base64 there), the UTF-8 bytes of the whole string. */
export function signingKey(secret: string): Buffer {
  if (!secret) throw new Error("the webhook secret is empty");
  const encoded = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : null;
  if (encoded && encoded.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) {
    return Buffer.from(encoded, "base64");
  }
  return Buffer.from(secret, "utf8");
}

type Headers = Record<string, string | string[] | undefined> | globalThis.Headers;

/** The webhook's JSON payload, once `headers` sign the raw `body` with `secret`; throws
 * `WebhookVerificationError` otherwise. Pass the body exactly as received (e.g. Express's
 * `express.raw({ type: "application/json" })`), before any JSON parsing. */
export function verifyWebhook(
  headers: Headers,
  body: Uint8Array | string,
  secret: string,
  { toleranceS = TOLERANCE_S, now = Date.now() / 1000 }: { toleranceS?: number; now?: number } = {},
): unknown {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !signatures || !/^\d+$/.test(timestamp ?? "")) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or signature");
  }
  if (Math.abs(now - Number(timestamp)) > toleranceS) {
    throw new WebhookVerificationError("the webhook-timestamp is outside the tolerance");
  }
  const raw = typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body);
  const expected = createHmac("sha256", signingKey(secret))
    .update(`${id}.${timestamp}.`)
    .update(raw)
    .digest();
  let matched = false;
  for (const entry of signatures.split(" ")) {
    if (!entry.startsWith("v1,")) continue;
    const candidate = Buffer.from(entry.slice(3), "base64");
    // Every entry is compared, so the time taken says nothing about which one matched.
    matched = (candidate.length === expected.length && timingSafeEqual(candidate, expected)) || matched;
  }
  if (!matched) throw new WebhookVerificationError("no signature matches");
  return JSON.parse(raw.toString("utf8"));
}

function header(headers: Headers, name: string): string | undefined {
  if (typeof (headers as globalThis.Headers).get === "function") {
    return (headers as globalThis.Headers).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((candidate) => candidate.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value.join(" ") : value;
}
