import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import { EnhancedStack, PlatformLive } from "../../src/layers/Stacks.js"
import { demo } from "../../src/layers/Demo.js"
import { blockSize, makeDemoServer, noFaults } from "../../src/layers/DemoServer.js"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { runCli } from "../support/cli.js"
import { tempDir } from "../support/files.js"

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** GETs `url` with `headers`; the body is what arrived before the end or a failure. */
const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers })
    const chunks: Array<Uint8Array> = []
    let failed = false
    const reader = response.body?.getReader()
    try {
      for (let next = await reader?.read(); next !== undefined && !next.done; next = await reader?.read()) {
        chunks.push(next.value)
      }
    } catch {
      failed = true
    }
    return { response, body: Buffer.concat(chunks), failed }
  })

const ReaderLive = EnhancedStack().pipe(Layer.provide(PlatformLive))

describe("demo server", () => {
  it.scopedLive("serves the same bytes for a whole GET and for any range, and its sha256 is the whole object's", () =>
    Effect.gen(function*() {
      const size = 3 * blockSize + 1234
      const server = yield* makeDemoServer({ size, faults: noFaults })
      const whole = yield* get(server.url)
      assert.strictEqual(whole.response.status, 200)
      assert.strictEqual(whole.response.headers.get("content-length"), String(size))
      assert.strictEqual(whole.response.headers.get("etag"), server.etag)
      assert.strictEqual(whole.body.length, size)
      assert.strictEqual(sha256(whole.body), yield* server.sha256)
      const ranges: ReadonlyArray<readonly [number, number]> = [
        [0, 0],
        [1, 100],
        [blockSize - 3, blockSize + 5],
        [2 * blockSize, size - 1],
        [size - 1, size - 1]
      ]
      for (const [start, end] of ranges) {
        const part = yield* get(server.url, { range: `bytes=${start}-${end}`, "if-range": server.etag })
        assert.strictEqual(part.response.status, 206)
        assert.strictEqual(part.response.headers.get("content-range"), `bytes ${start}-${end}/${size}`)
        assert.isTrue(part.body.equals(whole.body.subarray(start, end + 1)), `bytes ${start}-${end}`)
      }
      const other = yield* makeDemoServer({ size, seed: 2, faults: noFaults })
      assert.notStrictEqual(yield* other.sha256, yield* server.sha256)
    }))

  it.scopedLive("drops at the planned offset, answers 503 with Retry-After once, and closes stalled sockets with its scope", () =>
    Effect.gen(function*() {
      const size = 1 * MiB
      const scope = yield* Scope.make()
      const server = yield* makeDemoServer({
        size,
        faults: { dropAt: [300 * KiB], unavailableFrom: [500 * KiB], stallAt: [700 * KiB] }
      }).pipe(Scope.extend(scope))
      const dropped = yield* get(server.url)
      assert.strictEqual(dropped.body.length, 300 * KiB)
      const unavailable = yield* get(server.url, { range: `bytes=${600 * KiB}-` })
      assert.strictEqual(unavailable.response.status, 503)
      assert.strictEqual(unavailable.response.headers.get("retry-after"), "1")
      const full = yield* get(server.url, { range: `bytes=${800 * KiB}-` })
      assert.strictEqual(full.response.status, 206)
      assert.strictEqual(full.body.length, size - 800 * KiB)
      const stalled = yield* Effect.fork(get(server.url, { range: `bytes=${600 * KiB}-` }))
      yield* Effect.sleep("200 millis")
      assert.deepStrictEqual(server.faults().map((event) => [event.kind, event.offset]), [
        ["drop", 300 * KiB],
        ["unavailable", 600 * KiB],
        ["stall", 700 * KiB]
      ])
      assert.isAtLeast(server.openConnections(), 1)
      yield* Scope.close(scope, Exit.void)
      const afterClose = yield* stalled.await.pipe(Effect.flatten)
      assert.isTrue(afterClose.failed)
      assert.strictEqual(afterClose.body.length, 100 * KiB)
      assert.strictEqual(server.openConnections(), 0)
    }))
})

describe("demo", () => {
  it.scopedLive("copies through every fault, resumes after the interruption, and the sha256 matches", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const size = 24 * MiB
      const report = yield* demo({ size, progress: false, directory: dir }).pipe(Effect.provide(ReaderLive))
      assert.strictEqual(report.exitCode, 0)
      assert.strictEqual(report.bytes, size)
      assert.isAbove(report.resumedFrom, 0)
      assert.isBelow(report.resumedFrom, size)
      assert.isAbove(report.retries, 0)
      assert.isAbove(report.recoveries, 0)
      assert.deepStrictEqual(
        [...new Set(report.faults.map((event) => event.kind))].sort(),
        ["drop", "stall", "unavailable"]
      )
      assert.strictEqual(report.sha256, report.expectedSha256)
      assert.strictEqual(sha256(NodeFs.readFileSync(report.output)), report.expectedSha256)
      assert.isAbove(report.maxChunkBytes, 0)
      assert.isAbove(report.peakRss, 0)
    }))

  it.live("`streaming-reader demo --size 32MiB` prints the report and exits 0", () =>
    Effect.gen(function*() {
      const result = yield* Effect.promise(() => runCli(["demo", "--size", "32MiB"]))
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stderr, "")
      for (const line of ["bytes          33554432 (32MiB)", "throughput", "chunk sizes", "chunk latency", "retries"]) {
        assert.include(result.stdout, line)
      }
      assert.match(result.stdout, /resumed from +[1-9][\d.]*(KiB|MiB) after the interruption/)
      assert.match(result.stdout, /sha256 +[0-9a-f]{64} OK/)
      assert.notMatch(result.stdout, /MISMATCH/)
    }))
})
