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
})
