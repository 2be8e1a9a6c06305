/**
 * The body of an HTTP attempt through each kind of client: the platform's Node clients (undici
 * and `node:http`), whose body stream is read directly, and `fetch`, read through the response's
 * `Stream`. Each must give the same bytes, never one past the range, and resume byte-exact.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import type { Layer } from "effect"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import { Readable } from "node:stream"
import { nodeBodyOf } from "../../../src/layers/sources/HttpSource.js"
import type { SourceCursor, SourceError } from "../../../src/services/ByteSource.js"
import { httpSource, makeTestServer } from "../../support/httpServer.js"
import { concat, testBytes } from "../../support/files.js"

const KiB = 1024

const body = testBytes(1024 * KiB, 11)

const same = (actual: Uint8Array, expected: Uint8Array) => {
  assert.strictEqual(actual.byteLength, expected.byteLength, "length")
  assert.isTrue(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected)), "bytes")
}

/** Pulls with the sizes in turn until the end or a failure: the bytes, and how it stopped. */
const drain = (cursor: SourceCursor, sizes: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    for (let i = 0;; i++) {
      const asked = sizes[i % sizes.length]!
      const exit = yield* Effect.exit(cursor.pull(asked))
      if (Exit.isFailure(exit)) return { bytes: concat(chunks), exit: exit as Exit.Exit<never, SourceError> }
      assert.isAtMost(exit.value.byteLength, asked)
      if (exit.value.byteLength === 0) return { bytes: concat(chunks), exit: Exit.void }
      chunks.push(exit.value)
    }
  })

/** The tag of the typed failure an exit holds, if any. */
const failureTag = (exit: Exit.Exit<void, SourceError>): string | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause))?._tag : undefined

const clients: ReadonlyArray<readonly [string, Layer.Layer<HttpClient.HttpClient>, boolean]> = [
  ["undici", NodeHttpClient.layerUndici, true],
  ["node:http", NodeHttpClient.layer, true],
  ["fetch", FetchHttpClient.layer, false]
]

for (const [name, client, readsTheStream] of clients) {
  layer(client, { excludeTestServices: true })(`HTTP body through ${name}`, (it) => {
    it.scoped(
      readsTheStream ? "the body's Node stream is reachable" : "no Node stream: the Stream is read",
      () =>
        Effect.gen(function*() {
          const server = yield* makeTestServer({ body })
          const scoped = HttpClient.withScope(yield* HttpClient.HttpClient)
          const response = yield* scoped.get(server.url())
          assert.strictEqual(nodeBodyOf(response) instanceof Readable, readsTheStream)
        })
    )

    it.scoped("from any offset, at mixed pull sizes, exactly the suffix", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, writeChunk: 13 * KiB })
        const source = yield* httpSource(server.url())
        for (const offset of [0, 1, 300_001, body.byteLength - 1]) {
          const { bytes, exit } = yield* drain(yield* source.readFrom(offset), [256 * KiB, 1, 70_000, 3 * KiB])
          assert.deepStrictEqual(exit, Exit.void)
          same(bytes, body.subarray(offset))
        }
      }))

    it.scoped("a consumer slower than the server: the body waits for it and loses nothing", () =>
      Effect.gen(function*() {
        const big = testBytes(4096 * KiB, 12)
        const server = yield* makeTestServer({ body: big })
        const cursor = yield* (yield* httpSource(server.url())).readFrom(0)
        const chunks: Array<Uint8Array> = []
        for (let i = 0; i < 6; i++) {
          chunks.push(yield* cursor.pull(64 * KiB))
          yield* Effect.sleep("40 millis")
        }
        const { bytes, exit } = yield* drain(cursor, [200 * KiB])
        assert.deepStrictEqual(exit, Exit.void)
        same(concat([...chunks, bytes]), big)
      }))

    it.scoped("bytes the server sends past the range are never delivered", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, extraBytes: 5_000 })
        const { bytes, exit } = yield* drain(yield* (yield* httpSource(server.url())).readFrom(1_000), [256 * KiB])
        assert.deepStrictEqual(exit, Exit.void)
        same(bytes, body.subarray(1_000))
      }))

    it.scoped("a shorter range ends in a transient failure; the attempt from there goes on byte-exact", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, rangeCap: 300 * KiB })
        const source = yield* httpSource(server.url())
        const first = yield* drain(yield* source.readFrom(0), [256 * KiB])
        same(first.bytes, body.subarray(0, 300 * KiB))
        assert.strictEqual(failureTag(first.exit), "TransientReadError")
        server.configure({ rangeCap: undefined })
        const rest = yield* drain(yield* source.readFrom(first.bytes.byteLength), [256 * KiB])
        assert.deepStrictEqual(rest.exit, Exit.void)
        same(concat([first.bytes, rest.bytes]), body)
      }))

    it.scoped("after a cut connection the bytes are a prefix, and the next attempt resumes byte-exact", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, dropAfter: 500_001 })
        const source = yield* httpSource(server.url())
        const first = yield* drain(yield* source.readFrom(0), [256 * KiB])
        assert.strictEqual(failureTag(first.exit), "TransientReadError", "the cut is a failure, not an end")
        assert.isAtMost(first.bytes.byteLength, 500_001)
        same(first.bytes, body.subarray(0, first.bytes.byteLength))
        server.configure({ dropAfter: undefined })
        const rest = yield* drain(yield* source.readFrom(first.bytes.byteLength), [256 * KiB])
        assert.deepStrictEqual(rest.exit, Exit.void)
        same(concat([first.bytes, rest.bytes]), body)
      }))

    it.scoped("a server that ignores the range: the bytes before the offset are skipped", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, ignoreRange: true, writeChunk: 10 * KiB })
        const { bytes, exit } = yield* drain(yield* (yield* httpSource(server.url())).readFrom(123_457), [64 * KiB])
        assert.deepStrictEqual(exit, Exit.void)
        same(bytes, body.subarray(123_457))
      }))

    it.scoped("a body that stalls: a pull holding bytes returns them instead of waiting for a whole chunk", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, stallAfter: 10_000 })
        const cursor = yield* (yield* httpSource(server.url())).readFrom(0)
        const chunk = yield* cursor.pull(256 * KiB).pipe(Effect.timeout("5 seconds"))
        same(chunk, body.subarray(0, 10_000))
        const stalled = yield* Effect.exit(cursor.pull(256 * KiB).pipe(Effect.timeout("300 millis")))
        assert.isTrue(Exit.isFailure(stalled), "nothing more comes: the pull waits, bounded by the caller")
      }))
  })
}
