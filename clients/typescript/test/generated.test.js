// The generated types are what `npm run generate` makes of clients/openapi.json now: this fails
// when the document changed and the types were not generated again (or were edited by hand).

import { execSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";

const root = path.resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");
const committed = path.join(root, "src", "generated", "openapi.ts");

test("the generated types are the OpenAPI document's", () => {
  const folder = mkdtempSync(path.join(tmpdir(), "podrelay-openapi-"));
  try {
    const output = path.join(folder, "openapi.ts");
    const { scripts } = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
    const command = scripts.generate.replace("src/generated/openapi.ts", output);
    assert.notEqual(command, scripts.generate, "the generate script names its output");
    execSync(command, {
      cwd: root,
      stdio: "pipe",
      env: { ...process.env, PATH: `${path.join(root, "node_modules", ".bin")}${path.delimiter}${process.env.PATH}` },
    });
    assert.equal(
      readFileSync(committed, "utf8"),
      readFileSync(output, "utf8"),
      "src/generated/openapi.ts is stale: run `npm run generate` in clients/typescript",
    );
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});
