import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { partialSuffix } from "../../src/layers/FileDestination.js"
import { KiB } from "../../src/services/ReadOptions.js"
import { runCli, startCli } from "../support/cli.js"
import { tempDir, testBytes } from "../support/files.js"
import { makeTestServer } from "../support/httpServer.js"

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const sizeOf = (path: string) => {
  try {
    return NodeFs.statSync(path).size
  } catch {
    return 0
  }
}

/** The bytes written so far for `out`, wherever the copy keeps them while it runs. */
const writtenFor = (out: string) => Math.max(sizeOf(out), sizeOf(out + partialSuffix))

/** Starts the command line in the background; it is killed with the scope if still running. */
const started = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(Effect.sync(() => startCli(args)), (child) => Effect.sync(() => child.signal("SIGKILL")))

/** Waits (real time, at most 10 s) until `ready` holds; fails the test otherwise. */
const waitUntil = (what: string, ready: () => boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 10_000
    while (!ready()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })

describe("stop signals (end to end)", () => {
  const cases: ReadonlyArray<readonly [NodeJS.Signals, number]> = [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]
  for (const [signal, code] of cases) {
    it.scopedLive(`${signal} saves the checkpoint and exits ${code}; the same command then completes byte-identical`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const body = testBytes(1024 * KiB, 7)
        // The source sends 320 KiB, then nothing until the client goes: the copy is part-way for sure.
        const server = yield* makeTestServer({ body, etag: "\"v1\"", stallAfter: 320 * KiB })
        const out = NodePath.join(dir, "out.bin")
        // No periodic checkpoint: only the one saved when the signal stops the read can resume it.
        const args = [
          "read",
          server.url("/file"),
          "--out",
          out,
          "--state",
          NodePath.join(dir, "state.db"),
          "--chunk-size",
          "32KiB",
          "--min-chunk",
          "32KiB",
          "--max-chunk",
          "32KiB",
          "--checkpoint-every",
          "1000000",
          "--json",
          "--quiet"
        ]
        const child = yield* started(args)
        yield* waitUntil("the first bytes in the output", () => writtenFor(out) >= 256 * KiB)
        child.signal(signal)
        const stopped = yield* Effect.promise(() => child.exited)
        assert.strictEqual(stopped.code, code, stopped.stderr)
        assert.strictEqual(stopped.stdout, "")
        const lines = stopped.stderr.trim().split("\n")
        assert.strictEqual(lines.length, 1, stopped.stderr)
        assert.match(lines[0]!, new RegExp(`^streaming-reader: stopped by ${signal}; run the same command again`))
        assert.notMatch(stopped.stderr, /^\s+at /m)

        server.configure({ stallAfter: undefined })
        const again = yield* Effect.promise(() => runCli(args))
        assert.strictEqual(again.code, 0, again.stderr)
        const summary = JSON.parse(again.stdout.trim())
        assert.isAtLeast(summary.resumedFrom, 32 * KiB, "resumed from the checkpoint saved at the signal")
        assert.strictEqual(summary.sha256, sha256(body))
        assert.strictEqual(sha256(NodeFs.readFileSync(out)), sha256(body))
      }))
  }
})
