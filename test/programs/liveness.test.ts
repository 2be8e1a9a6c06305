import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as NodeFs from "node:fs"
import * as Http from "node:http"
import * as NodePath from "node:path"
import { KiB } from "../../src/services/ReadOptions.js"
import { runCli } from "../support/cli.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"
import { listenOnLoopback } from "../support/httpServer.js"

/**
 * An HTTP server on 127.0.0.1 that sends `body` (honouring `Range: bytes=n-`) in pieces of
 * `piece` bytes, one every `everyMs`: a slow but steady source. Closed with the scope.
 */
const trickleServer = (body: Uint8Array, piece: number, everyMs: number) =>
  Effect.gen(function*() {
    const server = Http.createServer((req, res) => {
      const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? "")
      const start = match === null ? 0 : Math.min(Number(match[1]), body.length)
      const headers = {
        "content-length": String(body.length - start),
        "etag": "\"slow-1\"",
        "accept-ranges": "bytes",
        ...(match === null ? {} : { "content-range": `bytes ${start}-${body.length - 1}/${body.length}` })
      }
      res.writeHead(match === null ? 200 : 206, headers)
      if (req.method === "HEAD") return void res.end()
      let at = start
      const timer = setInterval(() => {
        const next = Math.min(body.length, at + piece)
        res.write(body.subarray(at, next))
        at = next
        if (at >= body.length) {
          clearInterval(timer)
          res.end()
        }
      }, everyMs)
      res.on("close", () => clearInterval(timer))
    })
    const port = yield* listenOnLoopback(server)
    return { url: `http://127.0.0.1:${port}/slow.bin` }
  })

/** The size of the copy being written: its partial file while it is unfinished, else the output itself. */
const writtenSoFar = (out: string) => {
  for (const path of [`${out}.partial`, out]) {
    try {
      return NodeFs.statSync(path).size
    } catch {
      // not there (yet, or any more)
    }
  }
  return 0
}

const sleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

describe("liveness (end to end)", () => {
  it.scopedLive("a slow but steady HTTP source completes with a 2 s stall timeout, without a single retry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // 512 B every 100 ms (5 KiB/s): a 64 KiB chunk would take 13 s to fill, far over the stall timeout.
      const body = testBytes(24 * KiB, 41)
      const { url } = yield* trickleServer(body, 512, 100)
      const out = NodePath.join(dir, "slow.bin")
      const result = yield* Effect.promise(() =>
        runCli([
          "read",
          url,
          "--out",
          out,
          "--stall-timeout",
          "2s",
          "--json",
          "--state",
          NodePath.join(dir, "state.db")
        ])
      )
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(body)), "byte-identical")
      const summary = JSON.parse(result.stdout.trim())
      assert.strictEqual(summary.bytes, body.length)
      assert.strictEqual(summary.retries, 0, "every pull returned what had arrived: no stall, no retry")
      assert.isAbove(summary.chunks, 1, "bytes were handed on as they came, not held for a whole chunk")
    }))

  it.scopedLive("--rate 16KiB/s on a 64 KiB file makes steady progress from the start, then completes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(64 * KiB, 43)
      const source = writeFile(dir, "source.bin", bytes)
      const out = NodePath.join(dir, "copy.bin")
      const run = yield* Effect.fork(
        Effect.promise(() =>
          runCli([
            "read",
            source,
            "--out",
            out,
            "--rate",
            "16KiB/s",
            "--json",
            "--state",
            NodePath.join(dir, "state.db")
          ])
        )
      )
      // Start-up takes a while and varies; sample from the first bytes on.
      let first = 0
      for (let waited = 0; first === 0 && waited < 20_000; waited += 25) {
        yield* sleep(25)
        first = writtenSoFar(out)
      }
      assert.isAbove(first, 0, "the copy started")
      assert.isBelow(first, bytes.length / 2, "no initial burst of the whole file")
      yield* sleep(1_000)
      const later = writtenSoFar(out)
      assert.isAbove(later, first, "it grows")
      assert.isBelow(later, bytes.length, "one second after the first bytes it is still far from complete")
      const result = yield* Fiber.join(run)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)), "byte-identical")
      assert.isFalse(NodeFs.existsSync(`${out}.partial`), "the partial file is gone")
      const summary = JSON.parse(result.stdout.trim())
      assert.isAtLeast(summary.durationMs, 3_000, "64 KiB at 16 KiB/s, less a 4 KiB burst, takes 3.75 s")
    }))
})
