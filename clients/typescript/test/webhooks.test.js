// verifyWebhook against signatures made by Podrelay's own signing code: the cases come from
// tests/clients/test_typescript_sdk.py in PODRELAY_WEBHOOK_CASES (a JSON file of
// [name, headers, body in base64, secret, valid]).

import { readFileSync } from "node:fs";
import { test } from "node:test";
import assert from "node:assert/strict";

import { WebhookVerificationError, verifyWebhook } from "../dist/webhooks.js";

const file = process.env.PODRELAY_WEBHOOK_CASES;
const skip = file ? false : "no cases named in PODRELAY_WEBHOOK_CASES";

test("Podrelay's signatures verify, and nothing else does", { skip }, () => {
  const cases = JSON.parse(readFileSync(file, "utf8"));
  assert.ok(cases.length >= 8);
  for (const [name, headers, body, secret, valid] of cases) {
    const raw = Buffer.from(body, "base64");
    if (valid) {
      assert.deepEqual(verifyWebhook(headers, raw, secret), JSON.parse(raw.toString()), name);
      assert.ok(verifyWebhook(new Headers(headers), raw.toString(), secret), name);
    } else {
      assert.throws(() => verifyWebhook(headers, raw, secret), WebhookVerificationError, name);
    }
  }
});
