import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Duration, Effect, Layer, Schedule, Stream } from "effect"
import { makeSegmentPlan } from "../../../src/layers/reader/SegmentPlan.js"
import { TestStack } from "../../../src/layers/Stacks.js"
import { AdaptiveMemoryManager } from "../../../src/services/AdaptiveMemoryManager.js"
import { ReaderMetrics } from "../../../src/services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../../../src/services/ReadOptions.js"
import type { SourceChunk } from "../../../src/services/StreamingReader.js"
import { StreamingReader } from "../../../src/services/StreamingReader.js"
import { concat, testBytes } from "../../support/files.js"
import { makeTestServer } from "../../support/httpServer.js"
import type { ChangingSchedule, SegmentServeOptions } from "../../support/segmentServer.js"
import { makeChangingServer, makeSegmentServer } from "../../support/segmentServer.js"
import { arbitrarySegmentedRead, fastRetries, liveSources, liveTestStack as stack } from "../../support/segments.js"

const KiB = 1024
const MiB = 1024 * KiB
const body = testBytes(2 * MiB, 7)

/** The smallest budget a reader may have: the reorder window must fit in it. */
const smallStack = TestStack(liveSources, { memoryLimit: 1 * MiB })

const sameBytes = (actual: Uint8Array, expected: Uint8Array) => Buffer.from(actual).equals(Buffer.from(expected))

/** The reader of a freshly built stack, living in the current scope. */
const readerOf = <E>(layer: Layer.Layer<StreamingReader, E>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, StreamingReader))

/** Reads `url` in order and returns the bytes and the session's segment count. */
const readOrdered = (reader: Context.Tag.Service<StreamingReader>, url: string, options: ReadOptionsInput) =>
  Effect.gen(function*() {
    const session = yield* reader.open(url, options)
    const chunks = yield* Stream.runCollect(session.stream)
    return { bytes: concat(Chunk.toReadonlyArray(chunks)), segments: session.segments, source: session.source }
  }).pipe(Effect.scoped)

/**
 * The most requests in progress at once for at least `toleranceMs`: each request counts from its
 * arrival to `toleranceMs` before it closed.
 */
const peakOverlap = (
  timeline: ReadonlyArray<{ readonly start: number; readonly end: number | undefined }>,
  toleranceMs: number
): number => {
  const events: Array<readonly [number, number]> = []
  for (const { end, start } of timeline) {
    const until = end === undefined ? Infinity : end - toleranceMs
    if (until > start) events.push([start, 1], [until, -1])
  }
  // At the same instant, a close counts before an arrival.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let current = 0
  let peak = 0
  for (const [, change] of events) {
    current += change
    peak = Math.max(peak, current)
  }
  return peak
}

describe("segments", () => {
  it.scopedLive("an ordered stream over 4 segments is byte-exact", () =>
    Effect.gen(function*() {
      const server = yield* makeTestServer({ body })
      const context = yield* Layer.build(stack)
      const reader = Context.get(context, StreamingReader)
      const session = yield* reader.open(server.url(), { segments: 4, minSegmentSize: 64 * KiB })
      assert.strictEqual(session.segments, 4)
      const chunks = yield* Stream.runCollect(session.stream)
      assert.isTrue(Buffer.from(concat(Chunk.toReadonlyArray(chunks))).equals(Buffer.from(body)))
      const [first, ...others] = server.requestLog()
      assert.strictEqual(first!.headers.range, "bytes=0-")
      assert.isAtLeast(others.length, 3)
      for (const request of others) {
        assert.match(request.headers.range ?? "", /^bytes=\d+-\d+$/)
        assert.strictEqual(request.headers["if-match"], "\"v1\"")
        assert.strictEqual(request.headers["if-range"], "\"v1\"")
      }
    }), { timeout: 30_000 })

  it.scopedLive("the segment server: drops and paces per request", () =>
    Effect.gen(function*() {
      const server = yield* makeSegmentServer({
        body,
        faultFor: (request) => request % 3 === 1 ? { _tag: "Drop", after: 100 * KiB } : undefined
      })
      const context = yield* Layer.build(stack)
      const reader = Context.get(context, StreamingReader)
      const session = yield* reader.open(server.url, { segments: 4, minSegmentSize: 64 * KiB })
      const chunks = yield* Stream.runCollect(session.stream)
      assert.isTrue(Buffer.from(concat(Chunk.toReadonlyArray(chunks))).equals(Buffer.from(body)))
      assert.isAtLeast(server.requests(), 6)
    }), { timeout: 30_000 })

  it.live.prop(
    "the ordered stream is byte-exact over any segment count, size, minimum and fault schedule",
    arbitrarySegmentedRead,
    ([segments, size, minSegmentSize, faults, seed]) =>
      Effect.gen(function*() {
        const object = testBytes(size, seed)
        const server = yield* makeSegmentServer({ body: object, faultFor: (request) => faults[request] })
        const reader = yield* readerOf(stack)
        const read = yield* readOrdered(reader, server.url, { ...fastRetries, segments, minSegmentSize })
        assert.strictEqual(read.bytes.length, size)
        assert.isTrue(sameBytes(read.bytes, object), "the bytes are the object's")
        const planned = makeSegmentPlan([{ start: 0, end: size }], segments, minSegmentSize).planned
        assert.strictEqual(read.segments, planned)
        if (segments > 1 && size >= 2 * minSegmentSize) assert.isAbove(read.segments, 1)
      }).pipe(Effect.scoped),
    { timeout: 30_000, fastCheck: { numRuns: 15 } }
  )

  describe("a changed object is refused", () => {
    const other = testBytes(body.length, 99)

    /** Reads in order until it fails; every byte emitted must be the old body's at its offset. */
    const readUntilRefused = (server: { readonly url: string }) =>
      Effect.gen(function*() {
        const reader = yield* readerOf(stack)
        const session = yield* reader.open(server.url, { ...fastRetries, segments: 4, minSegmentSize: 64 * KiB })
        assert.strictEqual(session.segments, 4)
        const emitted: Array<SourceChunk> = []
        const error = yield* Stream.runForEach(session.chunks, (chunk) =>
          Effect.sync(() => {
            emitted.push({ offset: chunk.offset, bytes: Uint8Array.from(chunk.bytes) })
          })).pipe(Effect.flip)
        assert.strictEqual(error._tag, "SourceChanged")
        let expected = 0
        for (const chunk of emitted) {
          assert.strictEqual(chunk.offset, expected, "the chunks come in order")
          assert.isTrue(
            sameBytes(chunk.bytes, body.subarray(chunk.offset, chunk.offset + chunk.bytes.length)),
            `the chunk at ${chunk.offset} is the old version's`
          )
          expected += chunk.bytes.length
        }
        assert.isBelow(expected, body.length, "the read did not complete")
      })

    const cases: ReadonlyArray<readonly [string, ChangingSchedule]> = [
      [
        "the ETag changes after the first request",
        (configure) => (request) => {
          if (request === 0) configure({ etag: "\"v2\"" })
          return undefined
        }
      ],
      [
        "the body and ETag change after the first request",
        (configure) => (request) => {
          if (request === 0) configure({ etag: "\"v2\"", body: other })
          return undefined
        }
      ],
      [
        "the body and ETag change mid-read, met by a segment's retry",
        (configure) => (request) => {
          if (request === 2) configure({ etag: "\"v2\"", body: other })
          return request === 1 ? { _tag: "Drop", after: 64 * KiB } : undefined
        }
      ]
    ]
    for (const [name, schedule] of cases) {
      it.scopedLive(`${name}: SourceChanged, nothing of the new version emitted`, () =>
        Effect.gen(function*() {
          const server = yield* makeChangingServer({ body }, schedule)
          yield* readUntilRefused(server)
        }), { timeout: 30_000 })

      it.scopedLive(
        `${name}, to a server that ignores If-Match and If-Range: SourceChanged`,
        () =>
          Effect.gen(function*() {
            const server = yield* makeChangingServer({ body, ignoreConditionals: true }, schedule)
            yield* readUntilRefused(server)
          }),
        { timeout: 30_000 }
      )
    }
  })

  describe("one connection when segments cannot be used", () => {
    const cases: ReadonlyArray<readonly [string, Partial<SegmentServeOptions> & { readonly body: Uint8Array }]> = [
      ["a server that ignores Range", { body, ignoreRange: true }],
      ["a weak ETag", { body, etag: "W/\"x\"" }],
      ["no ETag", { body, etag: undefined }],
      ["an unknown total in Content-Range", { body, unknownTotal: true }],
      ["an object smaller than two minimum segments", { body: body.subarray(0, 128 * KiB - 1) }]
    ]
    for (const [name, serve] of cases) {
      it.scopedLive(name, () =>
        Effect.gen(function*() {
          const server = yield* makeSegmentServer(serve)
          const reader = yield* readerOf(stack)
          const read = yield* readOrdered(reader, server.url, { ...fastRetries, segments: 8, minSegmentSize: 64 * KiB })
          assert.strictEqual(read.segments, 1)
          assert.isTrue(sameBytes(read.bytes, serve.body), "byte-exact")
          assert.strictEqual(server.peakConcurrent(), 1, "one request at a time")
          // No segment was asked for (with an unknown total, the end is found by asking past the last byte).
          for (const range of server.ranges()) assert.match(range ?? "bytes=0-", /^bytes=\d+-$/)
          if (serve.unknownTotal !== true) assert.strictEqual(server.requests(), 1)
        }), { timeout: 30_000 })
    }
  })

  it.scopedLive("the reorder window stays inside a 1 MiB budget with a slow consumer", () =>
    Effect.gen(function*() {
      const object = testBytes(4 * MiB, 11)
      // Paced, so that a connection is in progress while the others are (unpaced, each answer is in the socket buffers at once).
      const server = yield* makeSegmentServer({ body: object, bytesPerSecond: 8 * MiB })
      const context = yield* Layer.build(smallStack)
      const reader = Context.get(context, StreamingReader)
      const memory = Context.get(context, AdaptiveMemoryManager)
      assert.strictEqual(memory.limit, 1 * MiB)
      let peak = 0
      const sample = () => {
        peak = Math.max(peak, memory.unsafeInUse())
      }
      yield* Effect.sync(sample).pipe(Effect.repeat(Schedule.spaced(Duration.millis(1))), Effect.forkScoped)
      const session = yield* reader.open(server.url, {
        ...fastRetries,
        segments: 8,
        minSegmentSize: 64 * KiB,
        memoryLimit: 1 * MiB
      })
      assert.isAbove(session.segments, 1)
      const parts: Array<Uint8Array> = []
      yield* Stream.runForEach(session.stream, (bytes) =>
        Effect.gen(function*() {
          sample()
          parts.push(Uint8Array.from(bytes))
          yield* Effect.sleep(Duration.millis(3))
          sample()
        }))
      sample()
      assert.isTrue(sameBytes(concat(parts), object), "byte-exact")
      assert.isAtMost(peak, memory.limit, `peak budget ${peak}`)
      assert.isAbove(peak, 0)
      assert.isAbove(server.peakConcurrent(), 1, "more than one connection ran")
    }), { timeout: 30_000 })

  it.scopedLive("two reads of one host share maxConnections", () =>
    Effect.gen(function*() {
      const object = testBytes(1 * MiB, 13)
      const server = yield* makeSegmentServer({ body: object, bytesPerSecond: 2 * MiB })
      const reader = yield* readerOf(stack)
      const options: ReadOptionsInput = { ...fastRetries, segments: 8, minSegmentSize: 64 * KiB, maxConnections: 3 }
      const [first, second] = yield* Effect.all([
        readOrdered(reader, server.url, options),
        readOrdered(reader, `${server.url}?copy=2`, options)
      ], { concurrency: 2 })
      assert.isTrue(sameBytes(first.bytes, object), "first read byte-exact")
      assert.isTrue(sameBytes(second.bytes, object), "second read byte-exact")
      // A connection the reader dropped may still look open to the server for a millisecond while the
      // next request (on a pooled socket) arrives: overlaps that short are not counted.
      const peak = peakOverlap(server.timeline(), 5)
      assert.isAtMost(peak, 3, `at most maxConnections at once (strict peak ${server.peakConcurrent()})`)
      assert.isAtMost(server.peakConcurrent(), 4)
      assert.isAtLeast(peak, 2, "both reads ran at once")
    }), { timeout: 30_000 })

  it.scopedLive("rate caps all the segments together", () =>
    Effect.gen(function*() {
      const object = testBytes(1.5 * MiB, 17)
      const server = yield* makeSegmentServer({ body: object })
      const reader = yield* readerOf(stack)
      const startedAt = Date.now()
      const read = yield* readOrdered(reader, server.url, {
        ...fastRetries,
        segments: 4,
        minSegmentSize: 64 * KiB,
        rate: 1 * MiB
      })
      const elapsedMs = Date.now() - startedAt
      assert.strictEqual(read.segments, 4)
      assert.isTrue(sameBytes(read.bytes, object), "byte-exact")
      // 1.5 MiB at 1 MiB/s with a 256 KiB burst: 1.25 s at least; a lower bound only.
      assert.isAtLeast(elapsedMs, 1_000, `took ${elapsedMs} ms`)
    }), { timeout: 30_000 })

  it.scopedLive("ReaderMetrics counts the segments of a read", () =>
    Effect.gen(function*() {
      const server = yield* makeSegmentServer({ body })
      const context = yield* Layer.build(stack)
      const reader = Context.get(context, StreamingReader)
      const metrics = Context.get(context, ReaderMetrics)
      const read = yield* readOrdered(reader, server.url, { ...fastRetries, segments: 4, minSegmentSize: 64 * KiB })
      assert.isTrue(sameBytes(read.bytes, body))
      const stats = yield* metrics.stats(read.source)
      assert.isAbove(stats.maxSegments, 1)
      assert.isAtMost(stats.maxSegments, 4)
      assert.strictEqual(stats.bytes, body.length)
    }), { timeout: 30_000 })
})
