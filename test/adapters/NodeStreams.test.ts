import { assert, describe, layer } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { toReadable, toWebStream } from "../../src/adapters/NodeStreams.js"
import { BasicStack, PlatformLive } from "../../src/layers/Stacks.js"
import { SourceNotFound, TransientReadError } from "../../src/services/ByteSource.js"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { makeTestServer } from "../support/httpServer.js"
import { concat, fdsClosedOn, fdsOn, tempDir, testBytes, writeFile } from "../support/files.js"

const TestEnv = BasicStack.pipe(Layer.provide(PlatformLive))

/** Real time, for the event loop to move Node and web streams along (not the TestClock). */
const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Everything a Node `Readable` gives until it ends, or what it failed with (and the bytes before). */
const drainNode = (readable: Readable) =>
  Effect.promise(async () => {
    const chunks: Array<Uint8Array> = []
    try {
      for await (const chunk of readable) chunks.push(chunk as Uint8Array)
      return { bytes: concat(chunks), error: undefined }
    } catch (error) {
      return { bytes: concat(chunks), error }
    }
  })

/** Everything a web stream gives until it ends, or what it failed with (and the bytes before). */
const drainWeb = (stream: ReadableStream<Uint8Array>) =>
  Effect.promise(async () => {
    const chunks: Array<Uint8Array> = []
    const reader = stream.getReader()
    try {
      while (true) {
        const next = await reader.read()
        if (next.done) return { bytes: concat(chunks), error: undefined }
        chunks.push(next.value)
      }
    } catch (error) {
      return { bytes: concat(chunks), error }
    }
  })

/** The first chunk of a Node `Readable`, leaving it paused. */
const firstNodeChunk = (readable: Readable) =>
  Effect.promise(() =>
    new Promise<Uint8Array>((resolve, reject) => {
      readable.once("error", reject)
      readable.once("data", (chunk: Uint8Array) => {
        readable.pause()
        resolve(chunk)
      })
    })
  )

/** Node and web streams drop what is still buffered when they error: what arrived is a prefix. */
const assertPrefix = (actual: Buffer, expected: Buffer) =>
  assert.isTrue(actual.length <= expected.length && actual.equals(expected.subarray(0, actual.length)), "a prefix")

const fixed = { chunkSize: 64 * KiB } as const

layer(TestEnv)("NodeStreams", (it) => {
  describe("toReadable", () => {
    it.scoped("reads a file byte-exact and closes it at the end", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const bytes = testBytes(MiB + 17, 3)
        const path = writeFile(dir, "data.bin", bytes)
        const { bytes: read, error } = yield* drainNode(
          toReadable(reader.read(path), { runtime: yield* Effect.runtime() })
        )
        assert.isUndefined(error)
        assert.isTrue(read.equals(Buffer.from(bytes)))
        assert.strictEqual(yield* fdsClosedOn(path), 0)
      }))

    it.scoped("pipes to a file", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const bytes = testBytes(700 * KiB + 1, 4)
        const path = writeFile(dir, "data.bin", bytes)
        const out = NodePath.join(dir, "out.bin")
        yield* Effect.promise(() => pipeline(toReadable(reader.read(path)), NodeFs.createWriteStream(out)))
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
      }))

    it.scoped("pulls only while its buffer is below the high-water mark", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const bytes = testBytes(4 * MiB, 5)
        const path = writeFile(dir, "big.bin", bytes)
        let pulled = 0
        const stream = reader.read(path, fixed).pipe(Stream.tap(() => Effect.sync(() => pulled++)))
        const readable = toReadable(stream, { highWaterMark: 128 * KiB })
        yield* realSleep(50)
        assert.strictEqual(pulled, 0, "nothing is pulled before the consumer reads")
        const first = yield* firstNodeChunk(readable)
        yield* realSleep(150)
        // one chunk taken, the buffer up to the high-water mark, at most one more in hand
        assert.isAtMost(pulled, 1 + (128 * KiB) / (64 * KiB) + 1)
        assert.isAtLeast(pulled, 2)
        const rest = yield* drainNode(readable)
        assert.isTrue(concat([first, rest.bytes]).equals(Buffer.from(bytes)))
        assert.strictEqual(pulled, 64)
      }))

    it.scoped("destroy() interrupts the stream and closes the file", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const path = writeFile(dir, "big.bin", testBytes(4 * MiB, 6))
        let released = false
        const readable = toReadable(
          reader.read(path, fixed).pipe(Stream.ensuring(Effect.sync(() => {
            released = true
          })))
        )
        yield* firstNodeChunk(readable)
        assert.isAbove(fdsOn(path), 0, "the file is open while reading")
        const closed = Effect.promise(() => new Promise<void>((resolve) => readable.once("close", resolve)))
        readable.destroy()
        yield* closed
        assert.isTrue(released, "the stream's finalizer ran before close")
        assert.strictEqual(yield* fdsClosedOn(path), 0)
      }))

    it.scoped("a missing file is an error event carrying SourceNotFound", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const missing = NodePath.join(dir, "missing.bin")
        const error = yield* Effect.promise(() =>
          pipeline(toReadable(reader.read(missing)), NodeFs.createWriteStream(NodePath.join(dir, "out.bin"))).then(
            () => undefined,
            (error: unknown) => error
          )
        )
        assert.instanceOf(error, SourceNotFound)
        assert.strictEqual((error as SourceNotFound)._tag, "SourceNotFound")
        assert.strictEqual((error as SourceNotFound).source, missing)
      }))

    it.effect("a failure part-way is the typed error instance, after no bytes but the ones before it", () =>
      Effect.gen(function*() {
        const failure = new TransientReadError({ source: "mem", reason: "connection reset" })
        const stream = Stream.concat(Stream.make(testBytes(10, 1), testBytes(20, 2)), Stream.fail(failure))
        const { bytes, error } = yield* drainNode(toReadable(stream))
        assert.strictEqual(error, failure)
        assertPrefix(bytes, concat([testBytes(10, 1), testBytes(20, 2)]))
      }))
  })

  describe("toWebStream", () => {
    it.scoped("reads a file byte-exact and closes it at the end", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const bytes = testBytes(MiB + 5, 7)
        const path = writeFile(dir, "data.bin", bytes)
        const { bytes: read, error } = yield* drainWeb(
          toWebStream(reader.read(path), { runtime: yield* Effect.runtime() })
        )
        assert.isUndefined(error)
        assert.isTrue(read.equals(Buffer.from(bytes)))
        assert.strictEqual(yield* fdsClosedOn(path), 0)
      }))

    it.scoped("pulls only while its queue is below the high-water mark", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const bytes = testBytes(4 * MiB, 8)
        const path = writeFile(dir, "big.bin", bytes)
        let pulled = 0
        const stream = reader.read(path, fixed).pipe(Stream.tap(() => Effect.sync(() => pulled++)))
        const web = toWebStream(stream, { highWaterMark: 128 * KiB })
        yield* realSleep(150)
        // the queue up to the high-water mark, at most one more in hand
        assert.isAtMost(pulled, (128 * KiB) / (64 * KiB) + 1)
        assert.isAtLeast(pulled, 1)
        const { bytes: read } = yield* drainWeb(web)
        assert.isTrue(read.equals(Buffer.from(bytes)))
        assert.strictEqual(pulled, 64)
      }))

    it.scoped("cancel() interrupts the stream and closes the file", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const path = writeFile(dir, "big.bin", testBytes(4 * MiB, 9))
        let released = false
        const web = toWebStream(
          reader.read(path, fixed).pipe(Stream.ensuring(Effect.sync(() => {
            released = true
          })))
        )
        const webReader = web.getReader()
        const first = yield* Effect.promise(() => webReader.read())
        assert.strictEqual(first.value?.length, 64 * KiB)
        assert.isAbove(fdsOn(path), 0, "the file is open while reading")
        yield* Effect.promise(() => webReader.cancel())
        assert.isTrue(released, "the stream's finalizer ran before cancel() resolved")
        assert.strictEqual(yield* fdsClosedOn(path), 0)
      }))

    it.scoped("a missing file errors the stream with SourceNotFound", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const dir = yield* tempDir
        const missing = NodePath.join(dir, "missing.bin")
        const { error } = yield* drainWeb(toWebStream(reader.read(missing)))
        assert.instanceOf(error, SourceNotFound)
        assert.strictEqual((error as SourceNotFound).source, missing)
      }))

    it.effect("a failure part-way is the typed error instance, after no bytes but the ones before it", () =>
      Effect.gen(function*() {
        const failure = new TransientReadError({ source: "mem", reason: "connection reset" })
        const stream = Stream.concat(Stream.make(testBytes(10, 1), testBytes(20, 2)), Stream.fail(failure))
        const { bytes, error } = yield* drainWeb(toWebStream(stream))
        assert.strictEqual(error, failure)
        assertPrefix(bytes, concat([testBytes(10, 1), testBytes(20, 2)]))
      }))

    it.scoped("reads an HTTP object byte-exact and closes the connection on cancel", () =>
      Effect.gen(function*() {
        const reader = yield* StreamingReader
        const body = testBytes(8 * MiB, 10)
        const server = yield* makeTestServer({ body })
        const whole = yield* drainWeb(toWebStream(reader.read(server.url())))
        assert.isTrue(whole.bytes.equals(Buffer.from(body)))
        server.dropConnections()
        assert.isTrue(yield* server.awaitNoConnections(2_000))
        const webReader = toWebStream(reader.read(server.url(), fixed)).getReader()
        yield* Effect.promise(() => webReader.read())
        assert.strictEqual(server.openConnections(), 1)
        yield* Effect.promise(() => webReader.cancel())
        assert.isTrue(yield* server.awaitNoConnections(2_000), "the connection is closed after cancel()")
      }))
  })

  it.effect.prop(
    "both adapters hand over every byte in order, whatever the chunks and high-water mark",
    [
      fc.array(fc.uint8Array({ maxLength: 3_000 }), { maxLength: 25 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 8 * KiB })
    ],
    ([chunks, group, highWaterMark]) =>
      Effect.gen(function*() {
        const stream = Stream.fromIterable(chunks).pipe(Stream.rechunk(group))
        const expected = concat(chunks)
        const node = yield* drainNode(toReadable(stream, { highWaterMark }))
        const web = yield* drainWeb(toWebStream(stream, { highWaterMark }))
        assert.isUndefined(node.error)
        assert.isUndefined(web.error)
        assert.isTrue(node.bytes.equals(expected))
        assert.isTrue(web.bytes.equals(expected))
      }),
    { fastCheck: { numRuns: 50 } }
  )
})
