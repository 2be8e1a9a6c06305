import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { openFile } from "../../../src/layers/sources/FileSource.js"
import { tempDir, testBytes, writeFile } from "../../support/files.js"

const open = (path: string) => Effect.flatMap(FileSystem.FileSystem, (fs) => openFile(fs, path))

layer(NodeFileSystem.layer)("FileSource", (it) => {
  describe("opening", () => {
    it.scoped("reads a file from an offset, with its identity", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(10_000, 3)
        const path = writeFile(dir, "a.bin", bytes)
        const handle = yield* open(path)
        assert.strictEqual(handle.source, path)
        const cursor = yield* handle.readFrom(100)
        assert.strictEqual(cursor.identity.size, bytes.byteLength)
        assert.deepStrictEqual(yield* cursor.pull(50), bytes.subarray(100, 150))
      }))

    it.scoped("a missing path, or one through a file, is SourceNotFound", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = writeFile(dir, "f", testBytes(10))
        for (const path of [NodePath.join(dir, "missing"), NodePath.join(file, "below")]) {
          const error = yield* Effect.flip(open(path))
          assert.deepStrictEqual(error._tag, "SourceNotFound", path)
        }
      }))

    it.scoped("a directory is NotAFile", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const error = yield* Effect.flip(open(dir))
        if (error._tag !== "NotAFile") return assert.fail(error._tag)
        assert.strictEqual(error.message, `${dir} is a directory, not a file`)
      }))

    it.scoped("a symbolic link loop is NotAFile, saying why", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const loop = NodePath.join(dir, "loop")
        NodeFs.symlinkSync(loop, loop)
        const error = yield* Effect.flip(open(loop))
        if (error._tag !== "NotAFile") return assert.fail(error._tag)
        assert.strictEqual(error.message, `not a regular file: ${loop} (too many levels of symbolic links)`)
      }))
  })

  describe("reading ahead", () => {
    it.scoped("a pull after a prefetch of the same size gets the bytes read ahead; another size reads anew", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(100_000, 4)
        const handle = yield* open(writeFile(dir, "ahead.bin", bytes))
        const cursor = yield* handle.readFrom(0)
        const prefetch = cursor.prefetch
        if (prefetch === undefined) return assert.fail("a file reads ahead")
        const pulled: Array<Uint8Array> = [yield* cursor.pull(10_000)]
        prefetch(20_000)
        pulled.push(yield* cursor.pull(20_000))
        prefetch(30_000)
        pulled.push(yield* cursor.pull(5_000), yield* cursor.pull(100_000))
        prefetch(1_000)
        pulled.push(yield* cursor.pull(1_000))
        assert.deepStrictEqual(pulled.map((chunk) => chunk.length), [10_000, 20_000, 5_000, 65_000, 0])
        assert.isTrue(Buffer.concat(pulled).equals(Buffer.from(bytes)), "every byte once, in order")
      }))

    it.scoped("two reads ahead go back to back and come in order; none starts past the end", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(50_000, 7)
        const handle = yield* open(writeFile(dir, "chain.bin", bytes))
        const cursor = yield* handle.readFrom(0)
        const prefetch = cursor.prefetch
        if (prefetch === undefined) return assert.fail("a file reads ahead")
        const pulled: Array<Uint8Array> = []
        for (let round = 0; round < 4; round++) {
          prefetch(16_000)
          prefetch(16_000)
          pulled.push(yield* cursor.pull(16_000))
        }
        pulled.push(yield* cursor.pull(16_000))
        assert.deepStrictEqual(pulled.map((chunk) => chunk.length), [16_000, 16_000, 16_000, 2_000, 0])
        assert.isTrue(Buffer.concat(pulled).equals(Buffer.from(bytes)), "every byte once, in order")
      }))

    it.scoped("a read ahead into a given buffer fills that buffer; a pull asking for another waits for it first", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(64_000, 5)
        const handle = yield* open(writeFile(dir, "into.bin", bytes))
        const cursor = yield* handle.readFrom(0)
        const first = new Uint8Array(32_000)
        const second = new Uint8Array(32_000)
        cursor.prefetch?.(32_000, first)
        const viaSecond = yield* cursor.pull(32_000, second)
        assert.strictEqual(viaSecond.buffer, second.buffer, "the pull's own buffer holds its bytes")
        assert.isTrue(Buffer.from(viaSecond).equals(Buffer.from(bytes.subarray(0, 32_000))))
        assert.isTrue(Buffer.from(first).equals(Buffer.from(bytes.subarray(0, 32_000))), "the read ahead finished")
        cursor.prefetch?.(32_000, first)
        const viaFirst = yield* cursor.pull(32_000, first)
        assert.strictEqual(viaFirst.buffer, first.buffer)
        assert.isTrue(Buffer.from(viaFirst).equals(Buffer.from(bytes.subarray(32_000))))
      }))

    it.scoped("an attempt whose read ahead is under way ends only once the read is done", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(4 * 1024 * 1024, 6)
        const handle = yield* open(writeFile(dir, "closing.bin", bytes))
        const into = new Uint8Array(bytes.length)
        yield* Effect.scoped(Effect.gen(function*() {
          const cursor = yield* handle.readFrom(0)
          cursor.prefetch?.(bytes.length, into)
        }))
        assert.isTrue(Buffer.from(into).equals(Buffer.from(bytes)), "the buffer was filled before the attempt ended")
      }))
  })
})
