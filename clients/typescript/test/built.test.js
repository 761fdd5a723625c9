// dist/ (committed, so that installing the package needs no build) is what `npm run build`
// makes of src/ now.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";

const root = path.resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");

function files(folder, prefix = "") {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? files(path.join(folder, entry.name), `${prefix}${entry.name}/`)
      : [`${prefix}${entry.name}`],
  );
}

test("dist is built from src", () => {
  const folder = mkdtempSync(path.join(tmpdir(), "podrelay-dist-"));
  try {
    const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
    execFileSync(process.execPath, [tsc, "--project", "tsconfig.json", "--outDir", folder], {
      cwd: root,
      stdio: "pipe",
    });
    const committed = path.join(root, "dist");
    assert.deepEqual(files(committed).sort(), files(folder).sort(), "run `npm run build`");
    for (const name of files(folder)) {
      assert.equal(
        readFileSync(path.join(committed, name), "utf8"),
        readFileSync(path.join(folder, name), "utf8"),
        `dist/${name} is stale: run \`npm run build\` in clients/typescript`,
      );
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});
