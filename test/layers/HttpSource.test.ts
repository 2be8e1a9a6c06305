import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it, layer } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ConfigProvider, Effect, Exit, FastCheck as fc, Scope } from "effect"
import * as Net from "node:net"
import * as ByteSourceLive from "../../src/layers/ByteSourceLive.js"
import { parseContentRange } from "../../src/layers/sources/HttpRanges.js"
import { isRetryableStatus, makeHttpSource, parseRetryAfter } from "../../src/layers/sources/HttpSource.js"
import { classify } from "../../src/layers/StreamRecoveryManagerLive.js"
import type { SourceCursor } from "../../src/services/ByteSource.js"
import type { RecordedRequest } from "../support/httpServer.js"
import { httpSource, makeTestServer, unusedPort } from "../support/httpServer.js"

const KiB = 1024
const MiB = 1024 * KiB

// Deterministic pseudo-random bytes (xorshift32), so a failure can be replayed.
const randomBytes = (size: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

const assertBytes = (actual: Uint8Array, expected: Uint8Array) => {
  assert.strictEqual(actual.byteLength, expected.byteLength, "length")
  const differs = Buffer.compare(
    Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength),
    Buffer.from(expected)
  )
  assert.strictEqual(differs, 0, "content")
}

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.byteLength, 0))
  let at = 0
  for (const chunk of chunks) {
    out.set(chunk, at)
    at += chunk.byteLength
  }
  return out
}

// Pulls with the sizes in turn (cycling) until the end; a pull may return less than asked (what
// has arrived), never more.
const readAll = (cursor: SourceCursor, sizes: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    for (let i = 0;; i++) {
      const asked = sizes[i % sizes.length]!
      const chunk = yield* cursor.pull(asked)
      if (chunk.byteLength === 0) break
      assert.isAtMost(chunk.byteLength, asked)
      chunks.push(chunk)
    }
    assert.strictEqual((yield* cursor.pull(1)).byteLength, 0, "stays at the end")
    return concat(chunks)
  })

const body = randomBytes(1 * MiB, 7)

// A TCP server on 127.0.0.1 that accepts connections and never answers, closed with the scope.
const silentServer = Effect.gen(function*() {
  const sockets = new Set<Net.Socket>()
  let accepted = 0
  const server = Net.createServer((socket) => {
    accepted += 1
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  const port = yield* Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed(address !== null && typeof address !== "string" ? address.port : 0))
      })
    }),
    () =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )
  return { port, accepted: () => accepted }
})

layer(NodeHttpClient.layerUndici, { excludeTestServices: true })("HttpSource", (it) => {
  describe("ranged reads", () => {
    it.scoped("reads the whole body with one GET and Range: bytes=0-", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const source = yield* httpSource(server.url())
        assert.strictEqual(source.source, server.url())
        assert.isTrue(source.seekable)
        const cursor = yield* source.readFrom(0)
        assert.deepStrictEqual(cursor.identity, {
          size: body.byteLength,
          etag: "\"v1\"",
          lastModified: new Date(Date.UTC(2024, 0, 1)).toUTCString()
        })
        assertBytes(yield* readAll(cursor, [64 * KiB, 1, 100_000, 7, 256 * KiB, 3 * KiB]), body)
        assert.strictEqual(server.requests(), 1)
        assert.strictEqual(server.requestLog()[0]!.headers.range, "bytes=0-")
      }))

    it.scoped.prop(
      "any pull-size sequence from any offset delivers exactly the suffix",
      [
        fc.integer({ min: 0, max: 256 * KiB }),
        fc.array(fc.integer({ min: 1, max: 300 * KiB }), { minLength: 1, maxLength: 12 })
      ],
      ([offset, sizes]) =>
        Effect.gen(function*() {
          const data = body.subarray(0, 256 * KiB)
          const server = yield* makeTestServer({ body: data, writeChunk: 16 * KiB })
          const source = yield* httpSource(server.url())
          const cursor = yield* source.readFrom(offset)
          assertBytes(yield* readAll(cursor, sizes), data.subarray(offset))
          assert.strictEqual(server.requests(), 1)
        }),
      { fastCheck: { numRuns: 25 } }
    )

    it.scoped("readFrom(offset) asks for the suffix and delivers it", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const source = yield* httpSource(server.url())
        const offset = 300_001
        const cursor = yield* source.readFrom(offset)
        assert.strictEqual(cursor.identity.size, body.byteLength)
        assertBytes(yield* readAll(cursor, [64 * KiB]), body.subarray(offset))
        assert.strictEqual(server.requestLog()[0]!.headers.range, `bytes=${offset}-`)
      }))

    it.scoped("pieces joined for one pull are joined into the buffer the caller gives, not a new one", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, writeChunk: 16 * KiB })
        const cursor = yield* (yield* httpSource(server.url())).readFrom(0)
        const into = new Uint8Array(256 * KiB)
        const first = yield* cursor.pull(200 * KiB, into)
        assert.strictEqual(first.buffer, into.buffer)
        assertBytes(first, body.subarray(0, 200 * KiB))
        const second = yield* cursor.pull(100 * KiB)
        assert.notStrictEqual(second.buffer, into.buffer)
        assertBytes(second, body.subarray(200 * KiB, 300 * KiB))
      }))

    it.scoped("a 416 at the end of the source is a cursor already at the end", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const source = yield* httpSource(server.url())
        const atEnd = yield* source.readFrom(body.byteLength, { size: body.byteLength })
        assert.strictEqual(atEnd.identity.size, body.byteLength)
        assert.strictEqual((yield* atEnd.pull(64 * KiB)).byteLength, 0)
        const noExpectation = yield* source.readFrom(body.byteLength)
        assert.strictEqual((yield* noExpectation.pull(64 * KiB)).byteLength, 0)
      }))

    it.scoped("an offset past the end of a shrunken source is SourceChanged", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const source = yield* httpSource(server.url())
        const error = yield* Effect.flip(source.readFrom(body.byteLength + 10, { size: body.byteLength + 10 }))
        assert.strictEqual(error._tag, "SourceChanged")
      }))
  })

  describe("servers that do not honour ranges", () => {
    it.scoped("a 200 answer is resumed by discarding the bytes before the offset", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, ignoreRange: true, writeChunk: 10_000 })
        const source = yield* httpSource(server.url())
        const offset = 123_457
        const cursor = yield* source.readFrom(offset)
        assert.strictEqual(cursor.identity.size, body.byteLength)
        assertBytes(yield* readAll(cursor, [50_000, 64 * KiB]), body.subarray(offset))
        const atEnd = yield* source.readFrom(body.byteLength)
        assert.strictEqual((yield* atEnd.pull(10)).byteLength, 0)
      }))

    it.scoped("a Content-Range that starts elsewhere fails RangeNotSupported", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, lieContentRange: -100 })
        const source = yield* httpSource(server.url())
        const error = yield* Effect.flip(source.readFrom(1000))
        assert.strictEqual(error._tag, "RangeNotSupported")
        assert.include(error.message, "bytes 900-")
      }))

    it.scoped("bytes past the end of the range are never delivered", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, extraBytes: 5000 })
        const source = yield* httpSource(server.url())
        assertBytes(yield* readAll(yield* source.readFrom(0), [100_000]), body)
        assertBytes(yield* readAll(yield* source.readFrom(body.byteLength - 10), [3]), body.subarray(-10))
      }))
  })

  describe("failures", () => {
    it.scoped("a body that ends early fails TransientReadError after the bytes that arrived", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, truncateAfter: 100_000 })
        const source = yield* httpSource(server.url())
        const cursor = yield* source.readFrom(0)
        const first = yield* cursor.pull(64 * KiB)
        assertBytes(first, body.subarray(0, 64 * KiB))
        const second = yield* cursor.pull(64 * KiB)
        assertBytes(second, body.subarray(64 * KiB, 100_000))
        const error = yield* Effect.flip(cursor.pull(64 * KiB))
        assert.strictEqual(error._tag, "TransientReadError")
        assert.include(error.message, `body ended early at byte 100000 of ${body.byteLength}`)
        assert.strictEqual((yield* Effect.flip(cursor.pull(1)))._tag, "TransientReadError", "the failure sticks")
      }))

    it.scoped("a connection dropped mid-body fails TransientReadError", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, dropAfter: 200_000 })
        const source = yield* httpSource(server.url())
        const cursor = yield* source.readFrom(0)
        const error = yield* Effect.flip(readAll(cursor, [64 * KiB]))
        assert.strictEqual(error._tag, "TransientReadError")
      }))

    it.scoped("bytes before a dropped connection are a correct prefix", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, dropAfter: 200_000 })
        const source = yield* httpSource(server.url())
        const cursor = yield* source.readFrom(0)
        const chunks: Array<Uint8Array> = []
        const error = yield* Effect.flip(Effect.forever(Effect.flatMap(cursor.pull(30_000), (chunk) =>
          chunk.byteLength === 0 ? Effect.dieMessage("unexpected end") : Effect.sync(() =>
            chunks.push(chunk)
          ))))
        assert.strictEqual(error._tag, "TransientReadError")
        const prefix = concat(chunks)
        assert.isAtMost(prefix.byteLength, 200_000)
        assertBytes(prefix, body.subarray(0, prefix.byteLength))
      }))

    it.scoped("404 and 503 are HttpStatusError with status and Retry-After", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const notFound = yield* Effect.flip((yield* httpSource(server.url("/missing"))).readFrom(0))
        if (notFound._tag !== "HttpStatusError") return assert.fail(notFound._tag)
        assert.strictEqual(notFound.status, 404)
        assert.isFalse("retryAfterMs" in notFound)
        const busy = yield* Effect.flip((yield* httpSource(server.url("/status/503?retryAfter=7"))).readFrom(0))
        if (busy._tag !== "HttpStatusError") return assert.fail(busy._tag)
        assert.strictEqual(busy.status, 503)
        assert.strictEqual(busy.retryAfterMs, 7000)
      }))

    it.scoped("Retry-After as an HTTP-date is the time until then", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        server.failNext(1, 503, { "retry-after": new Date(Date.now() + 30_000).toUTCString() })
        const error = yield* Effect.flip((yield* httpSource(server.url())).readFrom(0))
        if (error._tag !== "HttpStatusError") return assert.fail(error._tag)
        assert.strictEqual(error.status, 503)
        assert.isDefined(error.retryAfterMs)
        assert.isTrue(error.retryAfterMs! > 25_000 && error.retryAfterMs! <= 30_000, String(error.retryAfterMs))
      }))

    it.scoped("a refused connection is TransientReadError", () =>
      Effect.gen(function*() {
        const port = yield* unusedPort
        const error = yield* Effect.flip((yield* httpSource(`http://127.0.0.1:${port}/file`)).readFrom(0))
        assert.strictEqual(error._tag, "TransientReadError")
        assert.include(error.message, "connection refused")
      }))

    it.scoped("412 is SourceChanged with what the server reports", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        server.failNext(1, 412, { etag: "\"v9\"" })
        const expected = { size: body.byteLength, etag: "\"v1\"" }
        const error = yield* Effect.flip((yield* httpSource(server.url())).readFrom(10, expected))
        if (error._tag !== "SourceChanged") return assert.fail(error._tag)
        assert.deepStrictEqual(error.expected, expected)
        assert.strictEqual(error.actual.etag, "\"v9\"")
      }))
  })

  describe("redirects", () => {
    it.scoped("a redirect is followed, with the Range kept", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const cursor = yield* (yield* httpSource(server.url("/redirect?to=/file"))).readFrom(1000)
        assertBytes(yield* readAll(cursor, [64 * KiB]), body.subarray(1000))
        assert.deepStrictEqual(
          server.requestLog().map((request) => [request.path, request.headers.range]),
          [["/redirect?to=/file", "bytes=1000-"], ["/file", "bytes=1000-"]]
        )
      }))

    it.scoped("five redirects are followed, a sixth is a BadRedirect", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const cursor = yield* (yield* httpSource(server.url("/redirect-chain/4"))).readFrom(0)
        assert.strictEqual(cursor.identity.size, body.byteLength)
        const error = yield* Effect.flip((yield* httpSource(server.url("/redirect-chain/5"))).readFrom(0))
        if (error._tag !== "BadRedirect") return assert.fail(error._tag)
        assert.include(error.message, "too many redirects (more than 5)")
      }))

    it.scoped("a redirect loop is a fatal BadRedirect after five redirects, credentials redacted", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const url = server.url("/redirect-loop").replace("http://", "http://carol:l00p@")
        const error = yield* Effect.flip((yield* httpSource(url)).readFrom(0))
        if (error._tag !== "BadRedirect") return assert.fail(error._tag)
        assert.strictEqual(
          error.message,
          `bad redirect from http://***@127.0.0.1:${server.port}/redirect-loop: too many redirects (more than 5)`
        )
        assert.strictEqual(server.requests(), 6)
        assert.strictEqual(classify(error), "fatal")
      }))

    it.scoped("a redirect to a non-HTTP scheme is a fatal BadRedirect and is not followed", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const targets = ["ftp://eve:pw0rd@files.example/x.bin", "file:///etc/passwd", "javascript:alert(1)"]
        for (const target of targets) {
          const url = server.url(`/redirect?to=${encodeURIComponent(target)}`)
          const error = yield* Effect.flip((yield* httpSource(url)).readFrom(0))
          if (error._tag !== "BadRedirect") return assert.fail(error._tag)
          assert.include(error.message, "redirect to a non-HTTP URL refused: ")
          assert.include(error.message, new URL(target).protocol)
          assert.notInclude(error.reason, "pw0rd")
          assert.strictEqual(classify(error), "fatal")
        }
        assert.deepStrictEqual(
          server.requestLog().map((request) => request.path.split("?")[0]),
          targets.map(() => "/redirect")
        )
      }))

    it.scoped("a 3xx without Location, or one that is not a redirect, is an HttpStatusError", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        server.failNext(1, 302)
        server.failNext(1, 304, { location: "/file" })
        for (const status of [302, 304]) {
          const error = yield* Effect.flip((yield* httpSource(server.url())).readFrom(0))
          if (error._tag !== "HttpStatusError") return assert.fail(error._tag)
          assert.strictEqual(error.status, status)
        }
        assert.strictEqual(server.requests(), 2)
      }))
    it.scoped("each hop goes to the URL its Location names, byte for byte", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const target = "/file?a=%20b&flag&c=~&d=%7e#fragment"
        const cursor = yield* (yield* httpSource(server.url(`/redirect?to=${encodeURIComponent(target)}`))).readFrom(0)
        assert.strictEqual((yield* cursor.pull(10)).byteLength, 10)
        assert.strictEqual(server.requestLog()[1]!.path, "/file?a=%20b&flag&c=~&d=%7e")
      }))

    it.scoped("an empty or unreadable Location is a fatal BadRedirect", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        for (const location of ["", "http://user:s3cret@[bad/x"]) {
          server.failNext(1, 307, { location })
          const error = yield* Effect.flip((yield* httpSource(server.url())).readFrom(0))
          if (error._tag !== "BadRedirect") return assert.fail(error._tag)
          assert.include(error.reason, "unreadable Location")
          assert.notInclude(error.reason, "s3cret")
        }
        assert.strictEqual(server.requests(), 2)
      }))

    it.scoped("a redirect to a server that never answers is bounded by the caller's timeout (the stall timeout)", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const silent = yield* silentServer
        const url = server.url(`/redirect?to=${encodeURIComponent(`http://127.0.0.1:${silent.port}/file`)}`)
        const source = yield* httpSource(url)
        const error = yield* Effect.flip(
          Effect.scoped(source.readFrom(0)).pipe(
            Effect.timeoutFail({ duration: "300 millis", onTimeout: () => "stalled" as const })
          )
        )
        assert.strictEqual(error, "stalled")
        assert.strictEqual(silent.accepted(), 1, "the redirect was followed")
      }))
  })

  describe("trace propagation", () => {
    const traceHeaders = (request: RecordedRequest) =>
      Object.keys(request.headers).filter((name) => name === "traceparent" || name === "b3" || name.startsWith("x-b3-"))

    it.scoped("no traceparent or b3 header is sent by default, neither before nor after a cross-origin redirect", () =>
      Effect.gen(function*() {
        const first = yield* makeTestServer({ body })
        const second = yield* makeTestServer({ body })
        const direct = yield* (yield* httpSource(first.url())).readFrom(0)
        assert.strictEqual((yield* direct.pull(10)).byteLength, 10)
        const redirected = yield* (yield* httpSource(first.url(`/redirect?to=${encodeURIComponent(second.url())}`)))
          .readFrom(0)
        assert.strictEqual((yield* redirected.pull(10)).byteLength, 10)
        const requests = [...first.requestLog(), ...second.requestLog()]
        assert.strictEqual(requests.length, 3)
        for (const request of requests) assert.deepStrictEqual(traceHeaders(request), [], request.path)
      }).pipe(Effect.withSpan("test.parent")))

    it.scoped("when turned on, the trace context goes to the first URL's origin only", () =>
      Effect.gen(function*() {
        const first = yield* makeTestServer({ body })
        const second = yield* makeTestServer({ body })
        const client = yield* HttpClient.HttpClient
        const url = new URL(first.url(`/redirect?to=${encodeURIComponent(second.url())}`))
        const cursor = yield* makeHttpSource(client, url, { tracePropagation: true }).readFrom(0)
        assert.strictEqual((yield* cursor.pull(10)).byteLength, 10)
        const [hop] = first.requestLog()
        assert.match(String(hop!.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
        assert.isDefined(hop!.headers.b3)
        assert.deepStrictEqual(traceHeaders(second.requestLog()[0]!), [])
      }).pipe(Effect.withSpan("test.parent")))
  })

  describe("trace propagation from the environment", () => {
    it.scoped("ByteSourceLive turns it on only for STREAMING_READER_TRACE_PROPAGATION=true", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const readWith = (value: string | undefined) =>
          ByteSourceLive.make.pipe(
            Effect.flatMap((sources) => sources.open(server.url())),
            Effect.flatMap((handle) => handle.readFrom(0)),
            Effect.flatMap((cursor) => cursor.pull(10)),
            Effect.provide(NodeFileSystem.layer),
            Effect.withConfigProvider(ConfigProvider.fromMap(
              new Map(value === undefined ? [] : [["STREAMING_READER_TRACE_PROPAGATION", value]])
            ))
          )
        for (const value of [undefined, "false", "banana", "true"]) yield* readWith(value)
        assert.deepStrictEqual(
          server.requestLog().map((request) => request.headers.traceparent !== undefined),
          [false, false, false, true]
        )
      }).pipe(Effect.withSpan("test.parent")))
  })

  describe("shorter ranges", () => {
    it.scoped("a 206 for less than the rest delivers its bytes, then fails transiently at its end", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, rangeCap: 100_000 })
        const source = yield* httpSource(server.url())
        const cursor = yield* source.readFrom(5000)
        const chunks: Array<Uint8Array> = []
        const error = yield* Effect.flip(
          Effect.forever(Effect.flatMap(cursor.pull(30_000), (chunk) =>
            chunk.byteLength === 0
              ? Effect.dieMessage("a shorter range is not the end")
              : Effect.sync(() => chunks.push(chunk))))
        )
        assert.strictEqual(error._tag, "TransientReadError")
        assert.include(error.message, `up to byte 105000 of ${body.byteLength}`)
        assertBytes(concat(chunks), body.subarray(5000, 105_000))
        const last = yield* source.readFrom(body.byteLength - 100_000)
        assertBytes(yield* readAll(last, [64 * KiB]), body.subarray(-100_000))
      }))

    it.scoped("a 206 of an unknown total is never taken for the end of the object", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, unknownTotal: true })
        const cursor = yield* (yield* httpSource(server.url())).readFrom(0)
        assert.isUndefined(cursor.identity.size)
        const error = yield* Effect.flip(readAll(cursor, [256 * KiB]))
        assert.strictEqual(error._tag, "TransientReadError")
        assert.include(error.message, `up to byte ${body.byteLength} of ?`)
      }))
  })

  describe("credentials and preconditions", () => {
    it.scoped("credentials in the URL become Basic auth and never appear in names or errors", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const withCredentials = (url: string) => url.replace("http://", "http://alice:s3cr%40t@")
        const source = yield* httpSource(withCredentials(server.url()))
        assert.notInclude(source.source, "s3cr")
        assert.notInclude(source.source, "alice")
        const cursor = yield* source.readFrom(0)
        assert.strictEqual((yield* cursor.pull(10)).byteLength, 10)
        const request = server.requestLog()[0]!
        assert.strictEqual(request.headers.authorization, `Basic ${Buffer.from("alice:s3cr@t").toString("base64")}`)
        assert.notInclude(request.path, "alice")

        const failures = [
          yield* Effect.flip((yield* httpSource(withCredentials(server.url("/status/503")))).readFrom(0)),
          yield* Effect.flip((yield* httpSource(withCredentials(server.url("/redirect-loop")))).readFrom(0)),
          yield* Effect.flip(
            (yield* httpSource(withCredentials(`http://127.0.0.1:${yield* unusedPort}/x`))).readFrom(0)
          )
        ]
        for (const error of failures) {
          const text = `${error.message} ${JSON.stringify(error)}`
          assert.notInclude(text, "s3cr")
          assert.notInclude(text, "alice")
        }
      }))

    it.scoped("credentials are not sent to another origin after a redirect", () =>
      Effect.gen(function*() {
        const first = yield* makeTestServer({ body })
        const second = yield* makeTestServer({ body })
        const url = first.url(`/redirect?to=${encodeURIComponent(second.url())}`).replace("http://", "http://bob:pw@")
        const cursor = yield* (yield* httpSource(url)).readFrom(0)
        assert.strictEqual((yield* cursor.pull(10)).byteLength, 10)
        assert.isDefined(first.requestLog()[0]!.headers.authorization)
        assert.isUndefined(second.requestLog()[0]!.headers.authorization)
      }))

    it.scoped("a strong ETag is sent as If-Range, a weak one is not", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        const source = yield* httpSource(server.url())
        const cursor = yield* source.readFrom(10, { size: body.byteLength, etag: "\"v1\"" })
        assertBytes(yield* cursor.pull(100), body.subarray(10, 110))
        yield* source.readFrom(10, { size: body.byteLength, etag: "W/\"v1\"" })
        const [strong, weak] = server.requestLog()
        assert.strictEqual(strong!.headers["if-range"], "\"v1\"")
        assert.isUndefined(weak!.headers["if-range"])
      }))

    it.scoped("after the ETag changed, If-Range brings the new version whole, with its identity", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body })
        server.changeEtag()
        const cursor = yield* (yield* httpSource(server.url())).readFrom(10, { etag: "\"v1\"" })
        assert.strictEqual(cursor.identity.etag, "\"v2\"")
        assertBytes(yield* cursor.pull(100), body.subarray(10, 110))
      }))
  })

  describe("lifetime", () => {
    it.scoped("closing the attempt's scope closes the connection mid-body", () =>
      Effect.gen(function*() {
        const big = randomBytes(4 * MiB, 3)
        const server = yield* makeTestServer({ body: big })
        const source = yield* httpSource(server.url())
        const scope = yield* Scope.make()
        const cursor = yield* Scope.extend(source.readFrom(0), scope)
        assertBytes(yield* cursor.pull(64 * KiB), big.subarray(0, 64 * KiB))
        assert.strictEqual(server.openConnections(), 1)
        yield* Scope.close(scope, Exit.void)
        assert.isTrue(yield* server.awaitNoConnections(2000))
      }))

    it.scoped("closing the scope aborts a stalled body", () =>
      Effect.gen(function*() {
        const server = yield* makeTestServer({ body, stallAfter: 1000 })
        const source = yield* httpSource(server.url())
        const scope = yield* Scope.make()
        const cursor = yield* Scope.extend(source.readFrom(0), scope)
        assertBytes(yield* cursor.pull(1000), body.subarray(0, 1000))
        assert.strictEqual(server.openConnections(), 1)
        yield* Scope.close(scope, Exit.void)
        assert.isTrue(yield* server.awaitNoConnections(2000))
      }))
  })
})

describe("header parsing", () => {
  it.prop(
    "Content-Range round-trips any valid range",
    [fc.nat(1e12), fc.nat(1e6), fc.nat(1e6)],
    ([start, length, after]) => {
      const end = start + length
      assert.deepStrictEqual(parseContentRange(`bytes ${start}-${end}/${end + 1 + after}`), {
        start,
        end,
        total: end + 1 + after
      })
      assert.deepStrictEqual(parseContentRange(`bytes ${start}-${end}/*`), { start, end, total: undefined })
      assert.isUndefined(parseContentRange(`bytes ${start}-${end}/${end}`))
    }
  )

  it.effect("408, 429 and every 5xx are worth another attempt; other statuses are not", () =>
    Effect.sync(() => {
      for (const status of [408, 429, 500, 502, 503, 504, 599]) assert.isTrue(isRetryableStatus(status), String(status))
      for (const status of [200, 206, 302, 304, 400, 401, 403, 404, 412, 416, 600]) {
        assert.isFalse(isRetryableStatus(status), String(status))
      }
    }))

  it.effect("unreadable Content-Range and Retry-After values are undefined", () =>
    Effect.sync(() => {
      assert.isUndefined(parseContentRange(undefined))
      assert.isUndefined(parseContentRange("bytes 10-5/100"))
      assert.isUndefined(parseContentRange("items 0-5/100"))
      assert.isUndefined(parseRetryAfter("soon", 0))
      assert.strictEqual(parseRetryAfter("120", 0), 120_000)
      assert.strictEqual(parseRetryAfter(new Date(5000).toUTCString(), 1000), 4000)
      assert.strictEqual(parseRetryAfter(new Date(5000).toUTCString(), 9000), 0)
    }))
})
