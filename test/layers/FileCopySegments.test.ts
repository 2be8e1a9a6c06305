import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { CopyRequest } from "../../src/layers/FileCopy.js"
import { copyToFile } from "../../src/layers/FileCopy.js"
import { partialSuffix } from "../../src/layers/FileDestination.js"
import { makeSegmentPlan } from "../../src/layers/reader/SegmentPlan.js"
import type { ReaderParts } from "../../src/layers/Stacks.js"
import { EnhancedStack, PlatformLive } from "../../src/layers/Stacks.js"
import type { ByteRange, Checkpoint } from "../../src/services/CheckpointStore.js"
import { CheckpointStore } from "../../src/services/CheckpointStore.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"
import { tempDir, testBytes } from "../support/files.js"
import type { ChangingSchedule, SegmentServeOptions, SegmentServer } from "../support/segmentServer.js"
import { makeChangingServer, makeSegmentServer } from "../support/segmentServer.js"
import { arbitrarySegmentedRead, fastRetries, liveTestStack as stack } from "../support/segments.js"

const KiB = 1024
const MiB = 1024 * KiB
const body = testBytes(2 * MiB, 21)

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const sameBytes = (actual: Uint8Array, expected: Uint8Array) => Buffer.from(actual).equals(Buffer.from(expected))

/** Copies with the reader of `context`. */
const copyIn = (context: Context.Context<ReaderParts>, request: CopyRequest) =>
  copyToFile(request).pipe(Effect.provide(context))

/** The checkpoint of a copy of `server` into `out`. */
const checkpointOf = (context: Context.Context<ReaderParts>, server: SegmentServer, out: string) =>
  Context.get(context, CheckpointStore).load({ source: server.url, destination: NodePath.resolve(out) })

/** Every byte the checkpoint says was handled: the bytes before its offset and its ranges. */
const heldBy = (checkpoint: Checkpoint): ReadonlyArray<ByteRange> => [
  { start: 0, end: checkpoint.offset },
  ...(checkpoint.ranges ?? [])
]

/** Copies `server`'s object into `out.bin` of a new temporary directory with a new stack, with fast retries. */
const copyFrom = (server: SegmentServer, options: ReadOptionsInput) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(stack)
    const dir = yield* tempDir
    const out = NodePath.join(dir, "out.bin")
    const copy = copyIn(context, { source: server.url, out, options: { ...fastRetries, ...options }, hash: true })
    return { context, out, copy }
  })

describe("copyToFile over segments", () => {
  it.live.prop(
    "the copy is byte-exact over any segment count, size, minimum and fault schedule",
    arbitrarySegmentedRead,
    ([segments, size, minSegmentSize, faults, seed]) =>
      Effect.gen(function*() {
        const object = testBytes(size, seed)
        const server = yield* makeSegmentServer({ body: object, faultFor: (request) => faults[request] })
        const { context, copy, out } = yield* copyFrom(server, { segments, minSegmentSize })
        const summary = yield* copy
        assert.strictEqual(summary.bytes, size)
        assert.strictEqual(summary.sha256, sha256(object), "the summary's sha256 is the object's")
        assert.isTrue(sameBytes(NodeFs.readFileSync(out), object), "the file is the object")
        assert.isFalse(NodeFs.existsSync(`${out}${partialSuffix}`), "no partial file is left")
        // The most connections used at once: those planned, unless one finished before the last started.
        const planned = makeSegmentPlan([{ start: 0, end: size }], segments, minSegmentSize).planned
        assert.isAtMost(summary.segments, planned)
        assert.isAtLeast(summary.segments, Math.min(2, planned))
        assert.isTrue(Option.isNone(yield* checkpointOf(context, server, out)), "a finished copy leaves no checkpoint")
      }).pipe(Effect.scoped),
    { timeout: 30_000, fastCheck: { numRuns: 15 } }
  )

  describe("a changed object is refused", () => {
    const other = testBytes(body.length, 99)
    const cases: ReadonlyArray<readonly [string, ChangingSchedule, Partial<SegmentServeOptions>]> = [
      ["the ETag changes after the first request", (configure) => (request) => {
        if (request === 0) configure({ etag: "\"v2\"" })
        return undefined
      }, {}],
      ["the body and ETag change mid-read, met by a segment's retry", (configure) => (request) => {
        if (request === 2) configure({ etag: "\"v2\"", body: other })
        return request === 1 ? { _tag: "Drop", after: 64 * KiB } : undefined
      }, {}],
      [
        "the body and ETag change mid-read, on a server that ignores If-Match and If-Range",
        (configure) => (request) => {
          if (request === 2) configure({ etag: "\"v2\"", body: other })
          return request === 1 ? { _tag: "Drop", after: 64 * KiB } : undefined
        },
        { ignoreConditionals: true }
      ]
    ]
    for (const [name, schedule, serve] of cases) {
      it.scopedLive(`${name}: SourceChanged, nothing of the new version committed`, () =>
        Effect.gen(function*() {
          const server = yield* makeChangingServer({ body, ...serve }, schedule)
          const { context, copy, out } = yield* copyFrom(server, {
            segments: 4,
            minSegmentSize: 64 * KiB,
            checkpointEvery: 1
          })
          const error = yield* copy.pipe(Effect.flip)
          assert.strictEqual(error._tag, "SourceChanged")
          assert.isFalse(NodeFs.existsSync(out), "the output is not committed")
          // What the copy recorded as written is the old version's.
          const checkpoint = yield* checkpointOf(context, server, out)
          if (Option.isSome(checkpoint) && NodeFs.existsSync(`${out}${partialSuffix}`)) {
            assert.strictEqual(checkpoint.value.identity.etag, "\"v1\"")
            const partial = NodeFs.readFileSync(`${out}${partialSuffix}`)
            for (const range of heldBy(checkpoint.value)) {
              assert.isTrue(
                sameBytes(partial.subarray(range.start, range.end), body.subarray(range.start, range.end)),
                `the partial file's ${range.start}-${range.end} is the old version's`
              )
            }
          }
        }), { timeout: 30_000 })
    }
  })

  describe("one connection when segments cannot be used", () => {
    const cases: ReadonlyArray<readonly [string, Partial<SegmentServeOptions>]> = [
      ["a server that ignores Range", { ignoreRange: true }],
      ["a weak ETag", { etag: "W/\"x\"" }],
      ["no ETag", { etag: undefined }],
      ["an unknown total in Content-Range", { unknownTotal: true }]
    ]
    for (const [name, serve] of cases) {
      it.scopedLive(name, () =>
        Effect.gen(function*() {
          const server = yield* makeSegmentServer({ body, ...serve })
          const { copy, out } = yield* copyFrom(server, { segments: 8, minSegmentSize: 64 * KiB })
          const summary = yield* copy
          assert.strictEqual(summary.segments, 1)
          assert.strictEqual(summary.sha256, sha256(body))
          assert.isTrue(sameBytes(NodeFs.readFileSync(out), body))
          assert.strictEqual(server.peakConcurrent(), 1)
        }), { timeout: 30_000 })
    }
  })

  describe("a copy interrupted part-way resumes over segments", () => {
    /** Copies `body` from a paced server, interrupts it once `interruptAfter` bytes were sent, then copies again. */
    const interruptAndResume = <E1, E2>(
      /** The stack of the first copy, and how to close it (a process ending). */
      first: Effect.Effect<readonly [Context.Context<ReaderParts>, Effect.Effect<void>], E1, Scope.Scope>,
      /** The stack of the second copy, built once the first is closed. */
      second: (
        firstContext: Context.Context<ReaderParts>
      ) => Effect.Effect<Context.Context<ReaderParts>, E2, Scope.Scope>
    ) =>
      Effect.gen(function*() {
        const server = yield* makeSegmentServer({ body, bytesPerSecond: 1 * MiB })
        const dir = yield* tempDir
        const out = NodePath.join(dir, "out.bin")
        const request: CopyRequest = {
          source: server.url,
          out,
          options: { ...fastRetries, segments: 4, minSegmentSize: 64 * KiB, checkpointEvery: 1 },
          hash: true
        }
        const [firstContext, closeFirst] = yield* first
        const copying = yield* Effect.fork(copyIn(firstContext, request))
        while (server.bytesSent() < 768 * KiB) {
          assert.isNull(copying.unsafePoll(), "the first copy is still running")
          yield* Effect.sleep("5 millis")
        }
        const exit = yield* Fiber.interrupt(copying)
        assert.isTrue(Exit.isInterrupted(exit))
        assert.isAbove(server.peakConcurrent(), 1, "more than one segment ran")
        assert.isFalse(NodeFs.existsSync(out))

        const checkpoint = yield* checkpointOf(firstContext, server, out)
        assert.isTrue(Option.isSome(checkpoint), "the interrupted copy left a checkpoint")
        const saved = Option.getOrThrow(checkpoint)
        assert.isDefined(saved.ranges, "the checkpoint of a copy over segments has ranges")
        assert.isAbove(saved.ranges!.length, 0)
        const held = heldBy(saved).reduce((sum, range) => sum + range.end - range.start, 0)
        assert.isAbove(held, 0)
        assert.isBelow(held, body.length)

        yield* closeFirst
        const resumer = yield* second(firstContext)
        const sentBefore = server.bytesSent()
        const requestsBefore = server.requests()
        const summary = yield* copyIn(resumer, request)
        const resumeRanges = server.ranges().slice(requestsBefore)
        const fetched = server.bytesSent() - sentBefore
        assert.strictEqual(summary.resumedFrom, saved.offset)
        assert.strictEqual(summary.sha256, sha256(body), "the summary's sha256 is the object's")
        assert.isTrue(sameBytes(NodeFs.readFileSync(out), body), "the file is the object")
        assert.isAtLeast(fetched, body.length - held, "every byte not held was fetched")
        assert.isBelow(fetched, body.length, `the resume fetched ${fetched} bytes, ${held} were held`)
        assert.isTrue(
          Option.isNone(yield* checkpointOf(resumer, server, out)),
          "the finished copy's checkpoint is gone"
        )
        return { saved, resumeRanges }
      })

    /** The bytes a `Range` header asks for, in an object of `size` bytes. */
    const rangeOf = (header: string | undefined, size: number): ByteRange => {
      const match = /^bytes=(\d+)-(\d*)$/.exec(header ?? "bytes=0-")
      assert.isNotNull(match, `a single byte range: ${header}`)
      return { start: Number(match![1]), end: match![2] === "" ? size : Number(match![2]) + 1 }
    }

    it.scopedLive("with the in-memory store shared by both copies", () =>
      interruptAndResume(
        Effect.map(Layer.build(stack), (context) => [context, Effect.void] as const),
        (context) => Effect.succeed(context)
      ), { timeout: 30_000 })

    it.scopedLive(
      "the resume asks the server only for bytes the checkpoint does not hold",
      () =>
        Effect.gen(function*() {
          const { resumeRanges, saved } = yield* interruptAndResume(
            Effect.map(Layer.build(stack), (context) => [context, Effect.void] as const),
            (context) => Effect.succeed(context)
          )
          const held = heldBy(saved)
          for (const header of resumeRanges) {
            const asked = rangeOf(header, body.length)
            for (const range of held) {
              const overlap = Math.min(asked.end, range.end) - Math.max(asked.start, range.start)
              assert.isAtMost(
                overlap,
                0,
                `${header} asks for ${overlap} bytes of ${range.start}-${range.end}, which the checkpoint holds`
              )
            }
          }
        }),
      { timeout: 30_000 }
    )

    it.scopedLive("with an SQLite store, across two stacks", () =>
      Effect.gen(function*() {
        const stateDir = yield* tempDir
        const layer = EnhancedStack({ statePath: NodePath.join(stateDir, "state.db") }).pipe(
          Layer.provide(PlatformLive)
        )
        yield* interruptAndResume(
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const context = yield* Scope.extend(Layer.build(layer), scope)
            return [context, Scope.close(scope, Exit.void)] as const
          }),
          () => Layer.build(layer)
        )
      }), { timeout: 30_000 })
  })
})
