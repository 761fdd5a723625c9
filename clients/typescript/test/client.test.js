// The client against a real Podrelay stack, which tests/clients/test_typescript_sdk.py starts
// and names in PODRELAY_API_URL and PODRELAY_API_KEY.

import { test } from "node:test";
import assert from "node:assert/strict";

import { Podrelay, PodrelayError, WaitTimeoutError, isSettled } from "../dist/index.js";

const url = process.env.PODRELAY_API_URL;
const key = process.env.PODRELAY_API_KEY;
const skip = url && key && process.env.PODRELAY_SIMULATOR_URL ? false : "no stack named in PODRELAY_API_URL, PODRELAY_API_KEY and PODRELAY_SIMULATOR_URL";
const SMALL = { width: 256, height: 256 };
const PNG = [0x89, 0x50, 0x4e, 0x47];

const client = () => new Podrelay({ baseUrl: url, apiKey: key });

test("generate waits for the images, and they download", { skip }, async () => {
  const podrelay = client();
  const job = await podrelay.generate("a lighthouse", { ...SMALL, seed: 7 }, { wait: true, timeoutMs: 60_000 });
  assert.equal(job.status, "completed");
  assert.ok(isSettled(job));
  assert.equal(job.params.seed, 7);
  const bytes = await podrelay.download(job.images[0]);
  assert.deepEqual([...bytes.slice(0, 4)], PNG);
  assert.deepEqual(await podrelay.status(job.id), job);
});

test("events follow a job and resume after the last one seen", { skip }, async () => {
  const podrelay = client();
  const job = await podrelay.generate("a harbour", SMALL);
  const events = [];
  for await (const event of podrelay.events(job.id)) events.push(event);
  assert.equal(events[0].kind, "created");
  assert.equal(events.at(-1).status, "completed");
  const resumed = [];
  for await (const event of podrelay.events(job.id, { lastEventId: String(events[1].id) })) {
    resumed.push(event);
  }
  assert.deepEqual(resumed, events.slice(2));
});

test("a batch, and the jobs a page at a time", { skip }, async () => {
  const podrelay = client();
  const batch = await podrelay.batch(["one", "two", "three"], SMALL);
  assert.deepEqual(batch.jobs.map((job) => job.prompt), ["one", "two", "three"]);
  const listed = [];
  for await (const job of podrelay.jobs({ batchId: batch.id, pageSize: 2 })) listed.push(job.id);
  assert.deepEqual(listed.sort(), batch.jobs.map((job) => job.id).sort());
  await Promise.all(batch.jobs.map((job) => podrelay.wait(job.id, { timeoutMs: 60_000 })));
  assert.equal((await podrelay.batchStatus(batch.id)).done, true);
});

test("models lists the route and its endpoint's health", { skip }, async () => {
  const models = await client().models();
  assert.deepEqual(models.map((model) => [model.name, model.default, model.kind]), [["default", true, "sdxl"]]);
  const [endpoint] = models[0].endpoints;
  assert.equal(endpoint.id, "podrelay-worker-test");
  assert.ok(["closed", "open", "half_open"].includes(endpoint.circuit));
  assert.equal(typeof endpoint.workers, "object");
  assert.equal(models[0].defaults.width, 1024);
});

test("errors carry the API's status and stable code", { skip }, async () => {
  const podrelay = client();
  await assert.rejects(podrelay.status("job_nope"), (error) => {
    assert.ok(error instanceof PodrelayError);
    assert.equal(error.status, 404);
    assert.equal(error.code, "job_not_found");
    return true;
  });
  await assert.rejects(podrelay.generate("too narrow", { width: 100 }), (error) => {
    assert.equal(error.code, "validation_error");
    assert.ok(error.problem.errors.length > 0);
    return true;
  });
  const first = await podrelay.generate("once", SMALL, { idempotencyKey: "ts-order-1" });
  const again = await podrelay.generate("once", SMALL, { idempotencyKey: "ts-order-1" });
  assert.equal(again.id, first.id);
  assert.equal(again.replayed, true);
  await assert.rejects(podrelay.generate("another", SMALL, { idempotencyKey: "ts-order-1" }), {
    code: "idempotency_key_reused",
  });
  await assert.rejects(new Podrelay({ baseUrl: url, apiKey: "prk_not-a-key" }).usage(), {
    status: 401,
    code: "invalid_api_key",
  });
});

test("a session token minted with the server key acts for one user only", { skip }, async () => {
  const server = client();
  const minted = await server.sessionToken("ts-user-1", { ttl_s: 300 });
  assert.equal(minted.expires_in, 300);
  assert.ok(minted.token.startsWith("prs_"));
  assert.deepEqual(minted.scopes, ["images:read", "jobs:create", "jobs:read"]);
  let asked = 0;
  const user = new Podrelay({ baseUrl: url, token: async () => (asked += 1, minted.token) });
  const job = await user.generate("a user's lighthouse", SMALL, { wait: true, timeoutMs: 60_000 });
  assert.equal(job.status, "completed");
  assert.deepEqual([...(await user.download(job.images[0])).slice(0, 4)], PNG);
  assert.equal(asked, 1);
  const other = new Podrelay({ baseUrl: url, token: (await server.sessionToken("ts-user-2")).token });
  for (const stranger of [other, server]) {
    await assert.rejects(stranger.status(job.id), { status: 404, code: "job_not_found" });
  }
  await assert.rejects(user.sessionToken("ts-user-3"), { status: 403, code: "server_key_required" });
});

test("a wait that runs out, then a cancel", { skip }, async () => {
  const podrelay = client();
  const simulator = process.env.PODRELAY_SIMULATOR_URL; // RunPod's stand-in: pause its workers
  const workers = async (count) => {
    const answer = await fetch(`${simulator}/_sim/config`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ workers: count }),
    });
    assert.equal(answer.status, 200);
    return (await answer.json()).workers;
  };
  const before = await workers(0);
  try {
    const job = await podrelay.generate("never runs", SMALL);
    await assert.rejects(podrelay.wait(job.id, { timeoutMs: 500 }), WaitTimeoutError);
    assert.equal((await podrelay.cancel(job.id)).status, "cancelled");
    assert.equal((await podrelay.cancel(job.id)).status, "cancelled"); // again: the same answer
  } finally {
    await workers(before);
  }
});

test("an expired session token is asked for again, once", async () => {
  const sent = [];
  const answers = [
    [401, { status: 401, code: "token_expired", title: "Unauthorized", detail: "the token has expired" }],
    [200, { days: [], gpu_price_per_second: 0, job_estimate_usd: 0, budgets: [] }],
    [401, { status: 401, code: "invalid_token", title: "Unauthorized", detail: "forged" }],
  ];
  const fetch = async (request) => {
    sent.push(request.headers.get("authorization"));
    const [status, body] = answers.shift();
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  };
  let issued = 0;
  const podrelay = new Podrelay({ baseUrl: "http://podrelay.test", fetch, token: () => `prs_t${(issued += 1)}` });
  assert.deepEqual((await podrelay.usage()).budgets, []);
  assert.deepEqual(sent, ["Bearer prs_t1", "Bearer prs_t2"]);
  await assert.rejects(podrelay.usage(), { status: 401, code: "invalid_token" });
  assert.deepEqual(sent, ["Bearer prs_t1", "Bearer prs_t2", "Bearer prs_t2"]);
});
