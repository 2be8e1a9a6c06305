import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Effect, Layer, Stream } from "effect"
import * as ByteSourceLive from "../../../src/layers/ByteSourceLive.js"
import { TestStack } from "../../../src/layers/Stacks.js"
import { StreamingReader } from "../../../src/services/StreamingReader.js"
import { concat, testBytes } from "../../support/files.js"
import { makeTestServer } from "../../support/httpServer.js"
import { makeSegmentServer } from "../../support/segmentServer.js"

const KiB = 1024
const body = testBytes(2 * 1024 * KiB, 7)

const stack = TestStack(
  ByteSourceLive.layer.pipe(Layer.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici)))
)

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
})
