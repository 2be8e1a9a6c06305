import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { cliEntry, runCli } from "../support/cli.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"
import type { TestServer } from "../support/httpServer.js"
import { makeTestServer } from "../support/httpServer.js"

const cli = (args: ReadonlyArray<string>) => Effect.promise(() => runCli(args))

const sizeOf = (path: string) => {
  try {
    return NodeFs.statSync(path).size
  } catch {
    return 0
  }
}

/**
 * Starts the CLI in its own process group, waits until the output holds at least `atBytes`
 * (or the process ends), then kills the whole group with SIGKILL. Returns whether it was killed.
 */
const killPartWay = (args: ReadonlyArray<string>, out: string, atBytes: number) =>
  Effect.promise(() =>
    new Promise<boolean>((resolve, reject) => {
      const child = spawn(process.execPath, [cliEntry, ...args], { detached: true, stdio: "ignore" })
      let exited = false
      child.on("error", reject)
      child.on("exit", () => {
        exited = true
      })
      const poll = setInterval(() => {
        if (exited) {
          clearInterval(poll)
          resolve(false)
        } else if (sizeOf(`${out}.partial`) >= atBytes) {
          clearInterval(poll)
          process.kill(-child.pid!, "SIGKILL")
          child.on("close", () => resolve(true))
        }
      }, 2)
    })
  )

/** Waits (real time) until the server has seen `count` requests. */
const awaitRequests = (server: TestServer, count: number) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (server.requests() >= count) {
          clearInterval(poll)
          resolve()
        }
      }, 5)
    })
  )

describe("recovery through faults (end to end)", () => {
  it.scopedLive("copies byte-exact through dropped connections, 503s and a stall", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(3 * MiB, 21)
      const server = yield* makeTestServer({ body: bytes, etag: "\"v1\"", dropAfter: 700 * KiB })
      server.failNext(2, 503, { "Retry-After": "0" })
      const out = NodePath.join(dir, "out.bin")
      const args = ["read", server.url(), "--out", out, "--json", "--state", NodePath.join(dir, "s.db")]
      const result = yield* cli([...args, "--stall-timeout", "1s"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
      const summary = JSON.parse(result.stdout)
      assert.isAtLeast(summary.retries, 6, "2 × 503 and at least 4 drops")

      server.configure({ dropAfter: undefined, stallAfter: 1 * MiB })
      const stalled = NodePath.join(dir, "stalled.bin")
      const run = yield* Effect.fork(
        cli(["read", server.url(), "--out", stalled, "--stall-timeout", "1s", "--state", NodePath.join(dir, "s.db")])
      )
      yield* awaitRequests(server, server.requests() + 1)
      server.configure({ stallAfter: undefined })
      const stalledResult = yield* Fiber.join(run)
      assert.strictEqual(stalledResult.code, 0, stalledResult.stderr)
      assert.isTrue(NodeFs.readFileSync(stalled).equals(Buffer.from(bytes)))
    }))

  it.scopedLive("refuses a source whose ETag changed since the checkpoint: exit 1, copy kept", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(2 * MiB, 22)
      const server = yield* makeTestServer({ body: bytes, etag: "\"v1\"", dropAfter: 512 * KiB })
      const out = NodePath.join(dir, "out.bin")
      const state = NodePath.join(dir, "s.db")
      const first = yield* cli(["read", server.url(), "--out", out, "--retries", "0", "--state", state])
      assert.strictEqual(first.code, 1)
      assert.include(first.stderr, "run the same command again to resume")
      const kept = sizeOf(`${out}.partial`)
      assert.isAbove(kept, 0)
      assert.isFalse(NodeFs.existsSync(out), "an unfinished copy never sits at the final path")
      server.configure({ dropAfter: undefined })
      server.setBody(testBytes(2 * MiB, 23))
      const second = yield* cli(["read", server.url(), "--out", out, "--state", state])
      assert.strictEqual(second.code, 1)
      assert.include(second.stderr, "source changed since the checkpoint")
      assert.include(second.stderr, "--restart")
      assert.strictEqual(second.stderr.trim().split("\n").length, 1)
      assert.strictEqual(sizeOf(`${out}.partial`), kept, "nothing of the new version is spliced in")
      assert.isTrue(NodeFs.readFileSync(`${out}.partial`).equals(Buffer.from(bytes.subarray(0, kept))))
      assert.isFalse(NodeFs.existsSync(out))
      const restarted = yield* cli(["read", server.url(), "--out", out, "--state", state, "--restart"])
      assert.strictEqual(restarted.code, 0, restarted.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(testBytes(2 * MiB, 23))))
      assert.isFalse(NodeFs.existsSync(`${out}.partial`))
      assert.isFalse(NodeFs.existsSync(`${out}.lock`))
    }))
})

describe("crash and resume (SIGKILL, end to end)", () => {
  const killPoints = (size: number, count: number, seed: number) => {
    let x = seed
    return Array.from({ length: count }, (_, i) => {
      x = (x * 1103515245 + 12345) % 2147483648
      const band = size / (count + 1)
      return Math.floor(band * (i + 1) + (x / 2147483648) * band * 0.5)
    })
  }

  it.scopedLive("a local copy killed at 6 points resumes each time and ends byte-exact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(48 * MiB, 31)
      const source = writeFile(dir, "source.bin", bytes)
      const out = NodePath.join(dir, "out.bin")
      const args = [
        "read",
        source,
        "--out",
        out,
        "--state",
        NodePath.join(dir, "s.db"),
        "--checkpoint-every",
        "1",
        "--rate",
        "48MiB/s"
      ]
      let killed = 0
      for (const at of killPoints(bytes.length, 6, 7)) {
        if (yield* killPartWay(args, out, at)) killed++
      }
      assert.isAtLeast(killed, 5)
      const result = yield* cli([...args, "--json"])
      assert.strictEqual(result.code, 0, result.stderr)
      const summary = JSON.parse(result.stdout)
      assert.isAbove(summary.resumedFrom, 0)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
      assert.strictEqual(summary.sha256, yield* Effect.promise(() => sha256File(source)))
    }))

  it.scopedLive("an HTTP copy killed at 5 points resumes each time and ends byte-exact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(32 * MiB, 32)
      const server = yield* makeTestServer({ body: bytes, etag: "\"v1\"" })
      const out = NodePath.join(dir, "out.bin")
      const args = [
        "read",
        server.url(),
        "--out",
        out,
        "--state",
        NodePath.join(dir, "s.db"),
        "--checkpoint-every",
        "1",
        "--rate",
        "32MiB/s"
      ]
      let killed = 0
      for (const at of killPoints(bytes.length, 5, 11)) {
        if (yield* killPartWay(args, out, at)) killed++
      }
      assert.isAtLeast(killed, 4)
      const result = yield* cli(args)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
      const ranged = server.requestLog().filter((r) => r.headers.range !== undefined && r.headers.range !== "bytes=0-")
      assert.isAtLeast(ranged.length, 4, "resumed runs ask for the rest with a Range request")
    }))
})

const sha256File = async (path: string) => {
  const { createHash } = await import("node:crypto")
  const hash = createHash("sha256")
  for await (const chunk of NodeFs.createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest("hex")
}
