import { assert, describe, it } from "@effect/vitest"
import { Effect, Runtime } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { pipeline } from "node:stream/promises"
import { createReader, ReaderClosed, readToFile } from "../../src/adapters/PromiseApi.js"
import type { CreateReaderOptions } from "../../src/adapters/PromiseApi.js"
import { SourceNotFound } from "../../src/services/ByteSource.js"
import { CheckpointStoreError } from "../../src/services/CheckpointStore.js"
import { InvalidOptions, KiB, MiB } from "../../src/services/ReadOptions.js"
import { IntegrityMismatch } from "../../src/services/StreamingReader.js"
import { makeTestServer } from "../support/httpServer.js"
import { concat, fdsClosedOn, fdsOn, tempDir, testBytes, writeFile } from "../support/files.js"

/** A reader closed with the scope. */
const scopedReader = (options: CreateReaderOptions = {}) =>
  Effect.acquireRelease(Effect.sync(() => createReader(options)), (reader) => Effect.promise(() => reader.close()))

/** What a promise rejected with (the test fails if it resolved). */
const rejection = <A>(run: () => Promise<A>) => Effect.flip(Effect.tryPromise({ try: run, catch: (error) => error }))

/** Every chunk of an async iterable, concatenated. */
const collect = (iterable: AsyncIterable<Uint8Array>) =>
  Effect.promise(async () => {
    const chunks: Array<Uint8Array> = []
    for await (const chunk of iterable) chunks.push(chunk)
    return concat(chunks)
  })

/** Every chunk of a web stream, concatenated. */
const collectWeb = (stream: ReadableStream<Uint8Array>) =>
  Effect.promise(async () => {
    const chunks: Array<Uint8Array> = []
    const reader = stream.getReader()
    while (true) {
      const next = await reader.read()
      if (next.done) return concat(chunks)
      chunks.push(next.value)
    }
  })

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** A typed error, not a `FiberFailure` wrapper around it. */
const assertUnwrapped = (error: unknown) => assert.isFalse(Runtime.isFiberFailure(error), "not a FiberFailure")

describe("PromiseApi", () => {
  describe("readToFile", () => {
    it.scoped("copies a file byte-exact and resolves with the summary", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(2 * MiB + 11, 21)
        const source = writeFile(dir, "in.bin", bytes)
        const out = NodePath.join(dir, "out.bin")
        const summary = yield* Effect.promise(() => readToFile(source, out))
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
        assert.strictEqual(summary.source, source)
        assert.strictEqual(summary.bytes, bytes.length)
        assert.strictEqual(summary.sha256, sha256(bytes))
        assert.strictEqual(summary.resumedFrom, 0)
        assert.isAbove(summary.chunks, 0)
      }))

    it.scoped("copies an HTTP object with the basic stack", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const body = testBytes(3 * MiB + 1, 22)
        const server = yield* makeTestServer({ body })
        const out = NodePath.join(dir, "out.bin")
        const summary = yield* Effect.promise(() => readToFile(server.url(), out, { stack: "basic", hash: false }))
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(body)))
        assert.strictEqual(summary.bytes, body.length)
        assert.isNull(summary.sha256)
      }))

    it.scoped("keeps checkpoints in the SQLite database at statePath", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(MiB, 23)
        const source = writeFile(dir, "in.bin", bytes)
        const statePath = NodePath.join(dir, "state.db")
        const reader = yield* scopedReader({ statePath, memoryLimit: 8 * MiB })
        const summary = yield* Effect.promise(() => reader.readToFile(source, NodePath.join(dir, "out.bin")))
        assert.strictEqual(summary.sha256, sha256(bytes))
        assert.isTrue(NodeFs.existsSync(statePath))
      }))

    it.scoped("a stack that cannot be built rejects with its typed error", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const source = writeFile(dir, "in.bin", testBytes(KiB, 29))
        const statePath = NodePath.join(writeFile(dir, "not-a-directory", testBytes(1)), "state.db")
        const error = yield* rejection(() => readToFile(source, NodePath.join(dir, "out.bin"), { statePath }))
        assertUnwrapped(error)
        assert.instanceOf(error, CheckpointStoreError)
        const reader = yield* scopedReader({ statePath })
        const readError = yield* rejection(async () => {
          for await (const _ of reader.read(source)) assert.fail("no bytes")
        })
        assert.instanceOf(readError, CheckpointStoreError)
      }))

    it.scoped("a missing source rejects with SourceNotFound itself", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const missing = NodePath.join(dir, "missing.bin")
        const error = yield* rejection(() => readToFile(missing, NodePath.join(dir, "out.bin")))
        assertUnwrapped(error)
        assert.instanceOf(error, SourceNotFound)
        assert.strictEqual((error as SourceNotFound)._tag, "SourceNotFound")
        assert.strictEqual((error as SourceNotFound).source, missing)
      }))

    it.scoped("a bad option rejects with InvalidOptions naming it, a wrong checksum with IntegrityMismatch", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const source = writeFile(dir, "in.bin", testBytes(100 * KiB, 24))
        const reader = yield* scopedReader()
        const invalid = yield* rejection(() => reader.readToFile(source, NodePath.join(dir, "a.bin"), { chunkSize: 1 }))
        assertUnwrapped(invalid)
        assert.instanceOf(invalid, InvalidOptions)
        assert.strictEqual((invalid as InvalidOptions).option, "chunkSize")
        const mismatch = yield* rejection(() =>
          reader.readToFile(source, NodePath.join(dir, "b.bin"), { expectSha256: "0".repeat(64) })
        )
        assertUnwrapped(mismatch)
        assert.instanceOf(mismatch, IntegrityMismatch)
        assert.strictEqual((mismatch as IntegrityMismatch).actual, sha256(testBytes(100 * KiB, 24)))
      }))
  })

  describe("createReader().read", () => {
    it.scoped("for await reads a file byte-exact with either stack, and closes it", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(MiB + 7, 25)
        const source = writeFile(dir, "in.bin", bytes)
        for (const stack of ["enhanced", "basic"] as const) {
          const reader = yield* scopedReader({ stack })
          const read = yield* collect(reader.read(source))
          assert.isTrue(read.equals(Buffer.from(bytes)), stack)
          assert.strictEqual(yield* fdsClosedOn(source), 0, stack)
        }
      }))

    it.scoped("readable() pipes to a file and webStream() reads, byte-exact", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(MiB + 3, 26)
        const source = writeFile(dir, "in.bin", bytes)
        const out = NodePath.join(dir, "out.bin")
        const reader = yield* scopedReader()
        yield* Effect.promise(() => pipeline(reader.read(source).readable(), NodeFs.createWriteStream(out)))
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
        const web = yield* collectWeb(reader.read(source).webStream({ highWaterMark: 128 * KiB }))
        assert.isTrue(web.equals(Buffer.from(bytes)))
      }))

    it.scoped("break, destroy() and cancel() release the file", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const source = writeFile(dir, "in.bin", testBytes(4 * MiB, 27))
        const reader = yield* scopedReader()

        const during = yield* Effect.promise(async () => {
          for await (const _ of reader.read(source)) return fdsOn(source)
          return 0
        })
        assert.isAbove(during, 0, "the file is open while reading")
        assert.strictEqual(yield* fdsClosedOn(source), 0, "after break")

        const readable = reader.read(source).readable()
        yield* Effect.promise(() => new Promise((resolve) => readable.once("readable", resolve)))
        assert.isAbove(fdsOn(source), 0)
        readable.destroy()
        assert.strictEqual(yield* fdsClosedOn(source), 0, "after destroy()")

        const webReader = reader.read(source).webStream().getReader()
        yield* Effect.promise(() => webReader.read())
        assert.isAbove(fdsOn(source), 0)
        yield* Effect.promise(() => webReader.cancel())
        assert.strictEqual(yield* fdsClosedOn(source), 0, "after cancel()")
      }))

    it.scoped("a missing source is SourceNotFound itself in every form", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const missing = NodePath.join(dir, "missing.bin")
        const reader = yield* scopedReader()
        const result = reader.read(missing)
        const errors = [
          yield* rejection(async () => {
            for await (const _ of result) assert.fail("no bytes")
          }),
          yield* rejection(() => pipeline(result.readable(), NodeFs.createWriteStream(NodePath.join(dir, "out.bin")))),
          yield* rejection(() => result.webStream().getReader().read())
        ]
        for (const error of errors) {
          assertUnwrapped(error)
          assert.instanceOf(error, SourceNotFound)
          assert.strictEqual((error as SourceNotFound).source, missing)
        }
      }))
  })

  describe("close", () => {
    it.scoped("ends a read under way with ReaderClosed, releases its file and refuses new work", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(4 * MiB, 28)
        const source = writeFile(dir, "in.bin", bytes)
        const reader = yield* scopedReader()
        const iterator = reader.read(source)[Symbol.asyncIterator]()
        const first = yield* Effect.promise(() => iterator.next())
        assert.isFalse(first.done)
        yield* Effect.promise(() => reader.close())
        const error = yield* rejection(async () => {
          while (!(await iterator.next()).done) {
            // drain until the read fails
          }
        })
        assert.instanceOf(error, ReaderClosed)
        assert.strictEqual(yield* fdsClosedOn(source), 0)
        assert.instanceOf(
          yield* rejection(() => reader.readToFile(source, NodePath.join(dir, "out.bin"))),
          ReaderClosed
        )
        const late = yield* rejection(async () => {
          for await (const _ of reader.read(source)) assert.fail("no bytes after close")
        })
        assert.instanceOf(late, ReaderClosed)
      }))
  })
})
