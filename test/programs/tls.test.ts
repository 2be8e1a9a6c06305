import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as Https from "node:https"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { permanentTlsProblem } from "../../src/layers/SystemErrors.js"
import { runCli } from "../support/cli.js"
import { tempDir, testBytes } from "../support/files.js"
import { listenOnLoopback, makeTestServer } from "../support/httpServer.js"

/** A self-signed certificate made by `openssl` for `subjectAltName` (e.g. `IP:127.0.0.1`), in `dir`. */
const makeCertificate = (dir: string, name: string, subjectAltName: string) => {
  const key = NodePath.join(dir, `${name}.key`)
  const cert = NodePath.join(dir, `${name}.pem`)
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    `subjectAltName=${subjectAltName}`
  ], { stdio: "ignore" })
  return { key: NodeFs.readFileSync(key), cert: NodeFs.readFileSync(cert), certPath: cert }
}

/** An HTTPS server on 127.0.0.1 with `certificate` that counts the TLS handshakes it sees. */
const httpsServer = (certificate: { readonly key: Buffer; readonly cert: Buffer }, body: Uint8Array) =>
  Effect.gen(function*() {
    let connections = 0
    const server = Https.createServer({ key: certificate.key, cert: certificate.cert }, (_req, res) => {
      res.writeHead(200, { "content-length": body.byteLength, etag: "\"v1\"" })
      res.end(body)
    })
    server.on("connection", () => connections++)
    const port = yield* listenOnLoopback(server)
    return { url: `https://127.0.0.1:${port}/object.bin`, connections: () => connections }
  })

/** One line on stderr, no stack trace. */
const assertOneLine = (stderr: string) => {
  assert.match(stderr, /^streaming-reader: [^\n]+\n$/, JSON.stringify(stderr))
  assert.notMatch(stderr, /^\s+at /m, "no stack trace")
}

const body = testBytes(64 * 1024, 71)

describe("TLS failures are permanent (end to end)", () => {
  it.scopedLive(
    "an untrusted (self-signed) certificate: exit 2 at once, one line naming the problem",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const server = yield* httpsServer(makeCertificate(dir, "self", "IP:127.0.0.1"), body)
        const result = yield* Effect.promise(() =>
          runCli(["read", server.url, "--out", NodePath.join(dir, "out.bin"), "--state", NodePath.join(dir, "s.db")])
        )
        assert.strictEqual(result.code, 2, result.stderr)
        assertOneLine(result.stderr)
        assert.include(result.stderr, "TLS failure")
        assert.include(result.stderr, "self-signed")
        assert.strictEqual(server.connections(), 1, "not retried")
        assert.isFalse(NodeFs.existsSync(NodePath.join(dir, "out.bin")))
      }),
    { timeout: 30_000 }
  )

  it.scopedLive("a certificate for another host: exit 2 at once, one line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const certificate = makeCertificate(dir, "other", "DNS:other.example")
      const server = yield* httpsServer(certificate, body)
      // The certificate is trusted (it is its own CA), but names another host.
      const result = yield* Effect.promise(() =>
        runCli(
          ["read", server.url, "--out", NodePath.join(dir, "out.bin"), "--state", NodePath.join(dir, "s.db")],
          { env: { NODE_EXTRA_CA_CERTS: certificate.certPath } }
        )
      )
      assert.strictEqual(result.code, 2, result.stderr)
      assertOneLine(result.stderr)
      assert.include(result.stderr, "for another host")
      assert.strictEqual(server.connections(), 1, "not retried")
    }), { timeout: 30_000 })

  it.scopedLive("TLS spoken to a plain-HTTP port: exit 2 at once, one line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const plain = yield* makeTestServer({ body })
      const url = plain.url().replace(/^http:/, "https:")
      const result = yield* Effect.promise(() =>
        runCli(["read", url, "--out", NodePath.join(dir, "out.bin"), "--state", NodePath.join(dir, "s.db")])
      )
      assert.strictEqual(result.code, 2, result.stderr)
      assertOneLine(result.stderr)
      assert.include(result.stderr, "does not speak TLS")
    }), { timeout: 30_000 })

  it.scopedLive(
    "a trusted certificate for the host copies byte-exact (the failures above are the certificate's)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const certificate = makeCertificate(dir, "good", "IP:127.0.0.1")
        const server = yield* httpsServer(certificate, body)
        const out = NodePath.join(dir, "out.bin")
        const result = yield* Effect.promise(() =>
          runCli(["read", server.url, "--out", out, "--state", NodePath.join(dir, "s.db")], {
            env: { NODE_EXTRA_CA_CERTS: certificate.certPath }
          })
        )
        assert.strictEqual(result.code, 0, result.stderr)
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(body)))
      }),
    { timeout: 30_000 }
  )
})

describe("permanentTlsProblem", () => {
  it("names expired, not-yet-valid and revoked certificates, and leaves other errors transient", () => {
    const withCode = (code: string, message = "") => Object.assign(new Error(message), { code })
    assert.include(permanentTlsProblem(withCode("CERT_HAS_EXPIRED")), "has expired")
    assert.include(permanentTlsProblem(withCode("CERT_NOT_YET_VALID")), "not valid yet")
    assert.include(permanentTlsProblem(new Error("fetch failed", { cause: withCode("CERT_REVOKED") })), "revoked")
    assert.include(
      permanentTlsProblem(withCode("EPROTO", "SSL routines:ssl3_get_record:wrong version number")),
      "does not speak TLS"
    )
    assert.isUndefined(permanentTlsProblem(withCode("ECONNRESET")))
    assert.isUndefined(permanentTlsProblem(withCode("EPROTO", "something else")))
    assert.isUndefined(permanentTlsProblem(new Error("no code")))
  })
})
