import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { identityTags, ifRangeValidator, makeHttpSource } from "../../src/layers/sources/HttpSource.js"
import { resumableAtOffset, sameIdentity } from "../../src/services/ByteSource.js"
import type { SourceIdentity } from "../../src/services/ByteSource.js"
import type { ServeOptions } from "../support/httpServer.js"
import { makeTestServer } from "../support/httpServer.js"

const body = new Uint8Array(64 * 1024).map((_, i) => (i * 31 + 7) & 0xff)

const modified = new Date(Date.UTC(2024, 0, 1, 12, 0, 0))
const lastModified = modified.toUTCString()
const secondLater = new Date(modified.getTime() + 1000).toUTCString()
const sameSecond = new Date(modified.getTime() + 999).toUTCString()

// What one server configuration makes of the identity, and which If-Range a resume with it sends.
const observe = (options: Partial<ServeOptions>) =>
  Effect.gen(function*() {
    const server = yield* makeTestServer({ body, ...options })
    const client = yield* HttpClient.HttpClient
    const source = makeHttpSource(client, new URL(server.url()))
    const first = yield* source.readFrom(0)
    const resumed = yield* source.readFrom(1000, first.identity)
    const bytes = yield* resumed.pull(10)
    assert.deepStrictEqual([...bytes], [...body.subarray(1000, 1010)])
    const [initial, resume] = server.requestLog()
    assert.isUndefined(initial!.headers["if-range"], "the first attempt has nothing to send")
    return { identity: first.identity, ifRange: resume!.headers["if-range"] }
  })

layer(NodeHttpClient.layerUndici, { excludeTestServices: true })("HttpSource validators", (it) => {
  describe("which validators are strong", () => {
    const cases: ReadonlyArray<
      readonly [string, Partial<ServeOptions>, boolean, string | undefined]
    > = [
      ["a strong ETag", { etag: "\"v1\"", lastModified: undefined }, true, "\"v1\""],
      ["a strong ETag beside a weak Last-Modified", { etag: "\"v1\"", lastModified, date: null }, true, "\"v1\""],
      ["a weak ETag", { etag: "W/\"v1\"", lastModified: undefined }, false, undefined],
      [
        "a weak ETag beside a strong Last-Modified",
        { etag: "W/\"v1\"", lastModified, date: secondLater },
        false,
        undefined
      ],
      ["a malformed (unquoted) ETag", { etag: "v1", lastModified: undefined }, false, undefined],
      [
        "Last-Modified alone, Date a second later",
        { etag: undefined, lastModified, date: secondLater },
        true,
        lastModified
      ],
      [
        "Last-Modified alone, Date within the same second",
        { etag: undefined, lastModified, date: sameSecond },
        false,
        undefined
      ],
      ["Last-Modified alone, no Date", { etag: undefined, lastModified, date: null }, false, undefined],
      [
        "Last-Modified alone, an unreadable Date",
        { etag: undefined, lastModified, date: "yesterday" },
        false,
        undefined
      ],
      ["no validator at all", { etag: undefined, lastModified: undefined }, false, undefined]
    ]
    for (const [name, options, strong, ifRange] of cases) {
      it.scoped(`${name}: ${strong ? "strong, If-Range sent" : "strongValidator false, no If-Range"}`, () =>
        Effect.gen(function*() {
          const observed = yield* observe(options)
          assert.strictEqual(resumableAtOffset(observed.identity), strong)
          assert.strictEqual("strongValidator" in observed.identity, !strong, "absent means strong")
          assert.strictEqual(observed.ifRange, ifRange)
        }))
    }
  })

  describe("identities compare equal across answers", () => {
    it.scoped("a 206 and a 200 of the same version have the same identity, weak or strong", () =>
      Effect.gen(function*() {
        for (const options of [{ etag: "\"v1\"" }, { etag: "W/\"v1\"" }, { etag: undefined, date: null }]) {
          const server = yield* makeTestServer({ body, lastModified, ...options })
          const source = makeHttpSource(yield* HttpClient.HttpClient, new URL(server.url()))
          const partial = yield* source.readFrom(500)
          server.configure({ ignoreRange: true })
          const whole = yield* source.readFrom(500)
          assert.deepStrictEqual(server.requestLog().map((request) => request.headers.range), [
            "bytes=500-",
            "bytes=500-"
          ])
          assert.deepStrictEqual(partial.identity, whole.identity)
          assert.isTrue(sameIdentity(partial.identity, whole.identity))
          assert.strictEqual(partial.identity.size, body.byteLength)
        }
      }))

    it.scoped("the Date of each answer is not part of the identity", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, etag: undefined, lastModified, date: secondLater })
        const source = makeHttpSource(yield* HttpClient.HttpClient, new URL(server.url()))
        const first = yield* source.readFrom(0)
        server.configure({ date: new Date(modified.getTime() + 86_400_000).toUTCString() })
        const later = yield* source.readFrom(10, first.identity)
        assert.deepStrictEqual(later.identity, first.identity)
        assert.deepStrictEqual(first.identity, { size: body.byteLength, lastModified })
      }))

    it.scoped("a changed Last-Modified answers If-Range with the whole new version, which is not the same identity", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, etag: undefined, lastModified, date: secondLater })
        const source = makeHttpSource(yield* HttpClient.HttpClient, new URL(server.url()))
        const first = yield* source.readFrom(0)
        const changed = new Date(modified.getTime() + 5000).toUTCString()
        server.configure({ lastModified: changed, date: new Date(modified.getTime() + 60_000).toUTCString() })
        const resumed = yield* source.readFrom(100, first.identity)
        assert.strictEqual(server.requestLog()[1]!.headers["if-range"], lastModified)
        assert.strictEqual(resumed.identity.lastModified, changed)
        assert.isFalse(sameIdentity(first.identity, resumed.identity))
        assert.deepStrictEqual([...(yield* resumed.pull(4))], [...body.subarray(100, 104)])
      }))

    it.scoped("a weak identity is read again from byte 0 without If-Range", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, etag: "W/\"v1\"" })
        const source = makeHttpSource(yield* HttpClient.HttpClient, new URL(server.url()))
        const first = yield* source.readFrom(0)
        assert.isFalse(resumableAtOffset(first.identity))
        const again = yield* source.readFrom(0, first.identity)
        assert.deepStrictEqual(again.identity, first.identity)
        const request = server.requestLog()[1]!
        assert.strictEqual(request.headers.range, "bytes=0-")
        assert.isUndefined(request.headers["if-range"])
        assert.strictEqual((yield* again.pull(body.byteLength)).byteLength, body.byteLength)
      }))
  })
})

describe("If-Range from an identity", () => {
  it.effect("only a strong validator is ever sent", () =>
    Effect.sync(() => {
      const cases: ReadonlyArray<readonly [SourceIdentity, string | undefined]> = [
        [{ etag: "\"a\"" }, "\"a\""],
        [{ etag: "\"a\"", lastModified }, "\"a\""],
        [{ etag: "W/\"a\"", lastModified }, undefined],
        [{ etag: "\"a\"", strongValidator: false }, undefined],
        [{ lastModified }, lastModified],
        [{ lastModified, strongValidator: false }, undefined],
        [{ size: 10 }, undefined],
        [{}, undefined]
      ]
      for (const [identity, expected] of cases) {
        assert.strictEqual(ifRangeValidator(identity), expected, JSON.stringify(identity))
      }
    }))

  it.effect("headers make the same identity as a server would report them", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(identityTags({ etag: "\"x\"", date: sameSecond }), { etag: "\"x\"" })
      assert.deepStrictEqual(identityTags({ "last-modified": lastModified, date: secondLater }), { lastModified })
      assert.deepStrictEqual(identityTags({ "last-modified": lastModified, date: sameSecond }), {
        lastModified,
        strongValidator: false
      })
      assert.deepStrictEqual(identityTags({}), { strongValidator: false })
    }))
})
