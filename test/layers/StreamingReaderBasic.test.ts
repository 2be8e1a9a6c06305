import * as FileSystem from "@effect/platform/FileSystem"
import { SystemError } from "@effect/platform/Error"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it, layer } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Layer, Stream } from "effect"
import * as NodeFs from "node:fs"
import { PassThrough } from "node:stream"
import * as ByteSourceLive from "../../src/layers/ByteSourceLive.js"
import { BasicStack } from "../../src/layers/Stacks.js"
import { ByteSource, SourceSpec } from "../../src/services/ByteSource.js"
import { KiB } from "../../src/services/ReadOptions.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { concat, fdsOn, tempDir, testBytes, writeFile } from "../support/files.js"

const TestEnv = BasicStack.pipe(Layer.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici)))

layer(TestEnv)("StreamingReader (basic)", (it) => {
  it.effect("reads bytes in order in chunks of the fixed size", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const bytes = testBytes(200 * KiB + 17)
      const chunks = yield* reader.read(SourceSpec.Bytes({ name: "mem", bytes }), { chunkSize: 64 * KiB }).pipe(
        Stream.runCollect
      )
      assert.deepStrictEqual(Chunk.toReadonlyArray(chunks).map((c) => c.length), [65536, 65536, 65536, 8209])
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)))
    }))

  it.scoped("reads a file byte-exact and closes it when the stream completes", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const dir = yield* tempDir
      const bytes = testBytes(1024 * KiB + 3, 7)
      const path = writeFile(dir, "data.bin", bytes)
      const chunks = yield* Stream.runCollect(reader.read(path))
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)))
      assert.strictEqual(fdsOn(path), 0)
    }))

  it.scoped("closes the file when the consumer stops early (interruption)", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const dir = yield* tempDir
      const path = writeFile(dir, "data.bin", testBytes(512 * KiB))
      const taken = yield* reader.read(path, { chunkSize: 32 * KiB }).pipe(Stream.take(2), Stream.runCollect)
      assert.strictEqual(taken.length, 2)
      assert.strictEqual(fdsOn(path), 0)
      const firstChunk = yield* Deferred.make<void>()
      const fiber = yield* reader.read(path, { chunkSize: 32 * KiB }).pipe(
        Stream.tap(() => Effect.zipRight(Deferred.succeed(firstChunk, undefined), Effect.never)),
        Stream.runDrain,
        Effect.fork
      )
      yield* Deferred.await(firstChunk)
      assert.strictEqual(fdsOn(path), 1)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(fdsOn(path), 0)
    }))

  it.scoped("fails with a typed error and closes the file when the source ends early", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const dir = yield* tempDir
      const path = writeFile(dir, "shrinks.bin", testBytes(256 * KiB))
      const error = yield* reader.read(path, { chunkSize: 32 * KiB }).pipe(
        Stream.tap(() => Effect.sync(() => NodeFs.truncateSync(path, 64 * KiB))),
        Stream.runDrain,
        Effect.flip
      )
      assert.strictEqual(error._tag, "TransientReadError")
      assert.include(error.message, "ended early")
      assert.strictEqual(fdsOn(path), 0)
    }))

  it.effect("reads a Node Readable in order", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const bytes = testBytes(300 * KiB, 3)
      const readable = new PassThrough()
      for (let i = 0; i < bytes.length; i += 10_000) readable.write(bytes.subarray(i, i + 10_000))
      readable.end()
      const chunks = yield* Stream.runCollect(reader.read(SourceSpec.Readable({ name: "pipe", stream: readable })))
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)))
      assert.isTrue(Chunk.toReadonlyArray(chunks).slice(0, -1).every((c) => c.length === 64 * KiB))
    }))

  it.effect("a failing Readable fails the stream with a typed error", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const readable = new PassThrough()
      readable.write(testBytes(1000))
      setTimeout(() => readable.destroy(new Error("pipe broke")), 5)
      const error = yield* reader.read(SourceSpec.Readable({ name: "pipe", stream: readable })).pipe(
        Stream.runDrain,
        Effect.flip
      )
      assert.strictEqual(error._tag, "TransientReadError")
      assert.include(error.message, "pipe broke")
    }))

  it.effect("missing files, directories and bad URLs are distinct typed errors", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const missing = yield* Effect.flip(Stream.runDrain(reader.read("/definitely/not/here.bin")))
      assert.strictEqual(missing._tag, "SourceNotFound")
      const directory = yield* Effect.flip(Stream.runDrain(reader.read("/tmp")))
      assert.strictEqual(directory._tag, "NotAFile")
      const scheme = yield* Effect.flip(Stream.runDrain(reader.read("ftp://example.com/x")))
      assert.strictEqual(scheme._tag, "InvalidUrl")
      const broken = yield* Effect.flip(Stream.runDrain(reader.read("http://[::1")))
      assert.strictEqual(broken._tag, "InvalidUrl")
    }))

  it.effect("an option out of range fails with InvalidOptions naming it and its range", () =>
    Effect.gen(function*() {
      const reader = yield* StreamingReader
      const error = yield* Effect.flip(
        Stream.runDrain(reader.read(SourceSpec.Bytes({ name: "m", bytes: testBytes(10) }), { chunkSize: 1024 * KiB }))
      )
      assert.deepStrictEqual(
        { tag: error._tag, message: error.message },
        { tag: "InvalidOptions", message: "invalid option chunkSize: 1MiB (allowed: 32KiB to 256KiB)" }
      )
    }))
})

describe("ByteSource (file)", () => {
  it.scoped("a permission error from the file system is AccessDenied", () =>
    Effect.gen(function*() {
      const denied = new SystemError({
        reason: "PermissionDenied",
        module: "FileSystem",
        method: "stat",
        pathOrDescriptor: "/secret"
      })
      const fsLayer = Layer.succeed(FileSystem.FileSystem, FileSystem.makeNoop({ stat: () => Effect.fail(denied) }))
      const sources = yield* Effect.provide(
        ByteSource,
        ByteSourceLive.layer.pipe(Layer.provide(Layer.mergeAll(fsLayer, NodeHttpClient.layerUndici)))
      )
      const error = yield* Effect.flip(sources.open("/secret"))
      assert.strictEqual(error._tag, "AccessDenied")
      assert.strictEqual(error.message, "access denied: /secret")
    }))
})
