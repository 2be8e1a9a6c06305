import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option, Stream, Tracer } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as ByteSourceLive from "../../src/layers/ByteSourceLive.js"
import { makeHttpSource } from "../../src/layers/sources/HttpSource.js"
import { TestStack } from "../../src/layers/Stacks.js"
import {
  ByteSource,
  describeSource,
  redactText,
  redactUrl,
  redactUrlText,
  SourceSpec
} from "../../src/services/ByteSource.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { runCli } from "../support/cli.js"
import { tempDir, testBytes } from "../support/files.js"
import { makeTestServer } from "../support/httpServer.js"
import { Database } from "../support/sqlite.js"

const secrets = ["s3cret", "abcdef123", "tok999"] as const

const assertNoSecret = (text: string, where: string) => {
  for (const secret of secrets) assert.notInclude(text, secret, where)
}

// `http://user:s3cret@<host>/file?X-Amz-Signature=abcdef123&token=tok999` for a server's origin.
const secretUrl = (origin: string, path = "/file") =>
  `${origin.replace("http://", "http://user:s3cret@")}${path}?X-Amz-Signature=abcdef123&token=tok999`

describe("redactUrl", () => {
  it.effect("hides the user information and every credential parameter, keeping the rest byte for byte", () =>
    Effect.sync(() => {
      const names = [
        "X-Amz-Signature",
        "x-amz-credential",
        "X-AMZ-SECURITY-TOKEN",
        "X-Goog-Signature",
        "X-Goog-Credential",
        "sig",
        "signature",
        "Signature",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "auth",
        "Policy",
        "Key-Pair-Id"
      ]
      for (const name of names) {
        const url = new URL(`https://h.example/a%20b/c?keep=1%2B2+3&${name}=SECRETVALUE&z=`)
        assert.strictEqual(redactUrl(url), `https://h.example/a%20b/c?keep=1%2B2+3&${name}=***&z=`, name)
      }
      assert.strictEqual(redactUrl(new URL("http://u:p@h/x?se=2030&sp=r&sv=1")), "http://***@h/x?se=2030&sp=r&sv=1")
      assert.strictEqual(
        redactUrl(new URL("http://h/x#access_token=abc&state=1")),
        "http://h/x#access_token=***&state=1"
      )
      assert.strictEqual(redactUrl(new URL("http://h/x?monkey=1&keys=2")), "http://h/x?monkey=1&keys=2")
      assert.strictEqual(redactUrl(new URL("http://h/x?%73ig=abc")), "http://h/x?%73ig=***")
      for (const plain of ["http://h/x", "http://h/x?", "http://h/x?a", "http://h:81/%7Ex?q=%20&r=a+b#f"]) {
        assert.strictEqual(redactUrl(new URL(plain)), new URL(plain).href)
      }
      assert.strictEqual(
        describeSource(SourceSpec.Http({ url: new URL(secretUrl("http://h")) })),
        "http://***@h/file?X-Amz-Signature=***&token=***"
      )
    }))
})

describe("redactText", () => {
  it.effect("redacts user information and credential parameters in strings that are not URLs", () =>
    Effect.sync(() => {
      assert.strictEqual(redactText("http://user:s3cret@[bad/x"), "http://***@[bad/x")
      assert.strictEqual(redactText("https://u:a/b@host/x"), "https://***@host/x")
      assert.strictEqual(redactText("http:/user:s3cret@[x"), "http:/***@[x")
      assert.strictEqual(redactText("HTTP://U:my pass@[bad"), "HTTP://***@[bad")
      assert.strictEqual(
        redactText("see ftp://a:b@c/d and http://e:f@g/h?token=tok999&x=1"),
        "see ftp://***@c/d and http://***@g/h?token=***&x=1"
      )
      assert.strictEqual(
        redactText("GET /x?Signature=abc&Key-Pair-Id=K#id_token=z"),
        "GET /x?Signature=***&Key-Pair-Id=***#id_token=***"
      )
      for (const plain of ["", "/tmp/some file.bin", "http://h/x?a=1&b=2", "user@example.com", "a=1&monkey=2"]) {
        assert.strictEqual(redactText(plain), plain)
      }
    }))

  it.effect("an input that does not parse as a URL is reported without its secrets", () =>
    Effect.gen(function*() {
      const inputs = [
        "http://user:s3cret@[bad/x",
        "https://user:s3cret@:99999/x?token=tok999",
        "http:/user:s3cret@[x",
        "ftp://user:s3cret@host/x?X-Amz-Signature=abcdef123",
        "http://user:s3cret@/x"
      ]
      for (const input of inputs) {
        const error = yield* Effect.flip(ByteSourceLive.parseSource(input))
        assert.strictEqual(error._tag, "InvalidUrl", input)
        assertNoSecret(`${error.message} ${JSON.stringify(error)}`, input)
        assert.include(error.message, "***", input)
      }
    }))
})

describe("redactUrlText", () => {
  it.effect("redacts a URL of any scheme given as text, parsed or not, and leaves text without credentials as it is", () =>
    Effect.sync(() => {
      assert.strictEqual(
        redactUrlText("postgres://someone:hunter2@127.0.0.1:5432/jobs"),
        "postgres://***@127.0.0.1:5432/jobs"
      )
      assert.strictEqual(redactUrlText("postgres://u:s3cret@host:notaport/db"), "postgres://***@host:notaport/db")
      assert.strictEqual(
        redactUrlText("postgresql://db.example/jobs?sslmode=require&password=s3cret"),
        "postgresql://db.example/jobs?sslmode=require&password=***"
      )
      assert.strictEqual(redactUrlText(secretUrl("http://h")), "http://***@h/file?X-Amz-Signature=***&token=***")
      for (
        const plain of [
          "",
          "not a url",
          "HTTP://H/x?a=1",
          "postgres://host/db",
          "/tmp/some file.bin",
          "mailto:user@example.com"
        ]
      ) {
        assert.strictEqual(redactUrlText(plain), plain)
      }
    }))
})

describe("checkpoint keys", () => {
  const source = (url: string) => makeHttpSource(HttpClient.make(() => Effect.die("unused")), new URL(url))

  it.effect("a URL with nothing to hide is its own key; one with secrets is keyed by its redacted name and a hash", () =>
    Effect.sync(() => {
      assert.isUndefined(source("http://h.example/x?a=1").checkpointKey)
      const url = "http://user:s3cret@h.example/x?X-Amz-Signature=abcdef123&token=tok999"
      const handle = source(url)
      const hash = createHash("sha256").update(new URL(url).href).digest("hex").slice(0, 16)
      assert.strictEqual(handle.source, "http://***@h.example/x?X-Amz-Signature=***&token=***")
      assert.strictEqual(handle.checkpointKey, `${handle.source} #${hash}`)
    }))

  it.effect("two URLs that differ only in a secret have one name and two keys", () =>
    Effect.sync(() => {
      const a = source("https://h.example/x?X-Amz-Signature=one")
      const b = source("https://h.example/x?X-Amz-Signature=two")
      const c = source("https://alice:one@h.example/x")
      const d = source("https://alice:two@h.example/x")
      assert.strictEqual(a.source, b.source)
      assert.notStrictEqual(a.checkpointKey, b.checkpointKey)
      assert.strictEqual(c.source, d.source)
      assert.notStrictEqual(c.checkpointKey, d.checkpointKey)
      for (const handle of [a, b, c, d]) {
        assert.notInclude(handle.checkpointKey ?? "", "one")
        assert.notInclude(handle.checkpointKey ?? "", "two")
      }
    }))
})

// A tracer that keeps every span it makes (names, attributes, events, exits) for inspection.
const recordingTracer = Effect.map(Effect.tracer, (native) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (...args) => {
      const span = native.span(...args)
      spans.push(span)
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  })
  const dump = () =>
    JSON.stringify(
      spans.map((span) => ({
        name: span.name,
        attributes: [...span.attributes],
        events: (span as { readonly events?: unknown }).events,
        status: span.status._tag === "Ended" ? String(span.status.exit) : "open"
      })),
      (_, value) => typeof value === "bigint" ? String(value) : value
    )
  return { tracer, spans, dump }
})

const SourcesLive = ByteSourceLive.layer.pipe(
  Layer.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici))
)

layer(SourcesLive, { excludeTestServices: true })("secrets in spans", (it) => {
  it.scoped("no span of a read, its redirects or its failures names a password, signature or token", () =>
    Effect.gen(function*() {
      const server = yield* makeTestServer({ body: testBytes(300 * 1024, 5) })
      const other = yield* makeTestServer({ body: testBytes(1000, 6) })
      const recording = yield* recordingTracer
      yield* Effect.gen(function*() {
        const sources = yield* ByteSource
        const reader = Context.get(yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources))), StreamingReader)
        const bytes = yield* Stream.runFold(
          reader.read(secretUrl(server.origin), { acknowledge: "on-pull", destination: "out" }),
          0,
          (n, chunk) => n + chunk.byteLength
        )
        assert.strictEqual(bytes, 300 * 1024)
        server.failNext(1, 302, { location: secretUrl(other.origin) })
        const redirected = yield* Effect.scoped(
          Effect.flatMap(
            sources.open(secretUrl(server.origin)),
            (handle) => Effect.flatMap(handle.readFrom(0), (cursor) => cursor.pull(10))
          )
        )
        assert.strictEqual(redirected.byteLength, 10)
        server.failNext(1, 302, { location: "ftp://user:s3cret@x/?token=tok999" })
        const error = yield* Effect.flip(
          Effect.scoped(Effect.flatMap(sources.open(secretUrl(server.origin)), (handle) => handle.readFrom(0)))
        )
        assert.strictEqual(error._tag, "BadRedirect")
        assertNoSecret(error.message, "the error")
      }).pipe(Effect.withTracer(recording.tracer))
      const names = recording.spans.map((span) => span.name)
      assert.include(names, "HttpSource.request")
      assert.include(names, "StreamingReader.attempt")
      const dumped = recording.dump()
      assertNoSecret(dumped, "spans")
      assert.notInclude(dumped, Buffer.from("user:s3cret").toString("base64"), "spans")
      const requests = recording.spans.filter((span) => span.name === "HttpSource.request")
      assert.isTrue(requests.every((span) => Option.isSome(Option.fromNullable(span.attributes.get("url.full")))))
      assert.strictEqual(
        server.requestLog()[0]!.headers.authorization,
        `Basic ${Buffer.from("user:s3cret").toString("base64")}`
      )
      assert.include(server.requestLog()[0]!.path, "X-Amz-Signature=abcdef123", "the server still gets the real URL")
      assert.include(other.requestLog()[0]!.path, "token=tok999")
      assert.isUndefined(other.requestLog()[0]!.headers.authorization, "credentials stay with their origin")
    }))
})

layer(NodeHttpClient.layerUndici, { excludeTestServices: true })("secrets in the spans of redirects", (it) => {
  it.scoped("every hop has its own request span naming its redacted URL", () =>
    Effect.gen(function*() {
      const server = yield* makeTestServer({ body: testBytes(1000, 5) })
      const other = yield* makeTestServer({ body: testBytes(1000, 6) })
      const recording = yield* recordingTracer
      const client = yield* HttpClient.HttpClient
      server.failNext(1, 302, { location: secretUrl(other.origin) })
      const bytes = yield* Effect.scoped(
        Effect.flatMap(
          makeHttpSource(client, new URL(secretUrl(server.origin))).readFrom(0),
          (cursor) => cursor.pull(10)
        )
      ).pipe(Effect.withTracer(recording.tracer))
      assert.strictEqual(bytes.byteLength, 10)
      const hops = recording.spans.filter((span) => span.name === "HttpSource.request")
      assert.deepStrictEqual(
        hops.map((span) => [span.attributes.get("url.full"), span.attributes.get("http.response.status_code")]),
        [
          [`http://127.0.0.1:${server.port}/file?X-Amz-Signature=***&token=***`, 302],
          [`http://127.0.0.1:${other.port}/file?X-Amz-Signature=***&token=***`, 206]
        ]
      )
      assertNoSecret(recording.dump(), "spans")
      assert.notInclude(recording.dump(), Buffer.from("user:s3cret").toString("base64"), "spans")
      assert.isUndefined(other.requestLog()[0]!.headers.authorization, "credentials stay with their origin")
    }))
})

const checkpointSources = (state: string): ReadonlyArray<string> => {
  const db = new Database(state, { readonly: true })
  try {
    return db.prepare("SELECT source FROM checkpoints").all().map((row) => (row as { readonly source: string }).source)
  } finally {
    db.close()
  }
}

// Every byte the state database and its journal files hold, as text.
const stateBytes = (state: string) =>
  ["", "-wal", "-shm", "-journal"]
    .map((suffix) => `${state}${suffix}`)
    .filter((path) => NodeFs.existsSync(path))
    .map((path) => NodeFs.readFileSync(path).toString("latin1"))
    .join("\n")

layer(Layer.empty, { excludeTestServices: true })("secrets through the command line", (it) => {
  it.scoped("a copy prints, measures and stores no password, signature or token, and sends no trace headers", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const body = testBytes(700 * 1024, 9)
      const server = yield* makeTestServer({ body })
      const [out, metrics, state] = ["out.bin", "m.prom", "s.db"].map((name) => NodePath.join(dir, name))
      const result = yield* Effect.promise(() =>
        runCli([
          "read",
          secretUrl(server.origin),
          "--out",
          out!,
          "--json",
          "--metrics",
          metrics!,
          "--state",
          state!,
          "--checkpoint-every",
          "1"
        ], {
          cwd: dir
        })
      )
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(Buffer.from(body).equals(NodeFs.readFileSync(out!)))
      const summary = JSON.parse(result.stdout.trim()) as { readonly source: string }
      assert.strictEqual(summary.source, `http://***@127.0.0.1:${server.port}/file?X-Amz-Signature=***&token=***`)
      assertNoSecret(result.stdout, "stdout")
      assertNoSecret(result.stderr, "stderr")
      const prom = NodeFs.readFileSync(metrics!, "utf8")
      assert.include(prom, "X-Amz-Signature=***")
      assertNoSecret(prom, "metrics")
      assertNoSecret(stateBytes(state!), "state database")
      for (const request of server.requestLog()) {
        assert.isUndefined(request.headers.traceparent)
        assert.isUndefined(request.headers.b3)
      }
    }))

  it.scoped("a failed copy keeps its checkpoint under a redacted, hashed key", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const body = testBytes(1024 * 1024, 10)
      const server = yield* makeTestServer({
        body,
        dropAfter: 400_000,
        writeChunk: 16 * 1024,
        statusAfter: { requests: 1, status: 503 }
      })
      const [out, metrics, state] = ["out.bin", "m.prom", "s.db"].map((name) => NodePath.join(dir, name))
      const result = yield* Effect.promise(() =>
        runCli(
          [
            "read",
            secretUrl(server.origin),
            "--out",
            out!,
            "--json",
            "--metrics",
            metrics!,
            "--state",
            state!,
            "--retries",
            "1",
            "--checkpoint-every",
            "1"
          ],
          { cwd: dir }
        )
      )
      assert.strictEqual(result.code, 1, result.stderr)
      assert.isAtLeast(server.requests(), 2)
      assertNoSecret(result.stdout, "stdout")
      assertNoSecret(result.stderr, "stderr")
      if (NodeFs.existsSync(metrics!)) assertNoSecret(NodeFs.readFileSync(metrics!, "utf8"), "metrics")
      const keys = checkpointSources(state!)
      assert.strictEqual(keys.length, 1, "the checkpoint is kept")
      assert.match(
        keys[0]!,
        /^http:\/\/\*\*\*@127\.0\.0\.1:\d+\/file\?X-Amz-Signature=\*\*\*&token=\*\*\* #[0-9a-f]{16}$/
      )
      assertNoSecret(stateBytes(state!), "state database")
    }))

  it.scoped("a URL that does not parse is one line on stderr without its password", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* Effect.promise(() =>
        runCli([
          "read",
          "http://user:s3cret@[bad/x",
          "--out",
          NodePath.join(dir, "o"),
          "--state",
          NodePath.join(dir, "s.db")
        ], { cwd: dir })
      )
      assert.strictEqual(result.code, 2)
      const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
      assert.strictEqual(lines.length, 1, result.stderr)
      assert.include(lines[0]!, "http://***@[bad/x")
      assertNoSecret(result.stdout + result.stderr, "output")
    }))
})
