import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { partialSuffix } from "../../src/layers/FileDestination.js"
import { runCli, startCli } from "../support/cli.js"
import { makeTestServer } from "../support/httpServer.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const cli = (args: ReadonlyArray<string>, cwd?: string) =>
  Effect.promise(() => runCli(args, cwd === undefined ? {} : { cwd }))

/** One line on stderr, no stack trace. */
const assertOneLine = (stderr: string, fragment: string) => {
  const lines = stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, stderr)
  assert.include(lines[0], fragment)
  assert.notMatch(stderr, /^\s+at /m)
}

describe("streaming-reader read (end to end)", () => {
  it.scopedLive("copies a file byte-exact and prints the JSON summary", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(3 * MiB + 123, 5)
      const source = writeFile(dir, "source.bin", bytes)
      const out = NodePath.join(dir, "copy.bin")
      const result = yield* cli(["read", source, "--out", out, "--json", "--state", NodePath.join(dir, "state.db")])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
      const summary = JSON.parse(result.stdout.trim())
      assert.deepStrictEqual(Object.keys(summary), [
        "source",
        "bytes",
        "sha256",
        "chunks",
        "retries",
        "resumedFrom",
        "durationMs",
        "mbPerSec",
        "p95ChunkMs",
        "peakRssMb",
        "segments"
      ])
      assert.strictEqual(summary.source, source)
      assert.strictEqual(summary.bytes, bytes.length)
      assert.strictEqual(summary.sha256, sha256(bytes))
      assert.isAtLeast(summary.chunks, Math.ceil(bytes.length / (256 * KiB)))
      assert.strictEqual(summary.resumedFrom, 0)
      assert.isAbove(summary.peakRssMb, 10)
      assert.isAbove(summary.p95ChunkMs, 0, "chunk latencies were measured")
      assert.strictEqual(result.stderr, "")
    }))

  it.scopedLive("copies several sources into --out-dir, each named after its source", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const sources = [1, 2, 3].map((n) => ({ n, bytes: testBytes(200 * KiB * n, n) }))
      const paths = sources.map(({ bytes, n }) => writeFile(dir, `part-${n}.bin`, bytes))
      const outDir = NodePath.join(dir, "out")
      NodeFs.mkdirSync(outDir)
      const result = yield* cli(["read", ...paths, "--out-dir", outDir, "--concurrency", "2", "--quiet"])
      assert.strictEqual(result.code, 0, result.stderr)
      for (const { bytes, n } of sources) {
        assert.isTrue(NodeFs.readFileSync(NodePath.join(outDir, `part-${n}.bin`)).equals(Buffer.from(bytes)))
      }
    }))

  it.scopedLive("--expect-sha256 that does not match exits 1", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "s.bin", testBytes(100 * KiB))
      const result = yield* cli([
        "read",
        source,
        "--out",
        NodePath.join(dir, "o.bin"),
        "--expect-sha256",
        "00".repeat(32)
      ])
      assert.strictEqual(result.code, 1)
      assertOneLine(result.stderr, "sha256 mismatch")
    }))

  describe("bad input: exit 2 and one clear line", () => {
    const cases: ReadonlyArray<readonly [string, (dir: string) => ReadonlyArray<string>, string]> = [
      ["missing file", (dir) => [NodePath.join(dir, "missing.bin")], "source not found"],
      ["directory", (dir) => [dir], "is a directory, not a file"],
      ["unsupported scheme", () => ["ftp://example.com/file"], "invalid URL ftp://example.com/file"],
      ["malformed URL", () => ["http://[oops/file"], "invalid URL"],
      [
        "bad size",
        (dir) => [writeFile(dir, "a.bin", testBytes(10)), "--chunk-size", "12XB"],
        "--chunk-size: not a size: 12XB"
      ],
      [
        "chunk size out of range",
        (dir) => [writeFile(dir, "a.bin", testBytes(10)), "--chunk-size", "1MiB"],
        "invalid option --chunk-size: 1MiB (allowed: 32KiB to 256KiB)"
      ],
      ["no output", (dir) => [writeFile(dir, "a.bin", testBytes(10))], "missing --out"]
    ]
    for (const [name, args, message] of cases) {
      it.scopedLive(name, () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const argv = args(dir)
          const withOut = name === "no output" ? argv : [...argv, "--out", NodePath.join(dir, "out.bin")]
          const result = yield* cli(["read", ...withOut], dir)
          assert.strictEqual(result.code, 2, result.stderr)
          assertOneLine(result.stderr, message)
        }))
    }
  })

  it.scopedLive("a refused connection is a failed read: exit 1 and one line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* cli([
        "read",
        "http://127.0.0.1:9/file.bin",
        "--out",
        NodePath.join(dir, "o"),
        "--retries",
        "0"
      ])
      assert.strictEqual(result.code, 1)
      assertOneLine(result.stderr, "connection refused")
    }))

  it.scopedLive("copies an HTTP object byte-exact, and names the output after the URL's last segment", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(2 * MiB + 5, 11)
      const server = yield* makeTestServer({ body: bytes, etag: "\"v1\"" })
      const result = yield* cli(["read", server.url("/file"), "--out-dir", dir, "--json"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(NodePath.join(dir, "file")).equals(Buffer.from(bytes)))
      assert.strictEqual(JSON.parse(result.stdout).sha256, sha256(bytes))
    }))

  it.scopedLive("an HTTP 404 is bad input (exit 2) and credentials in the URL are never printed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const server = yield* makeTestServer({ body: testBytes(10) })
      const url = server.url("/nothing-here").replace("http://", "http://alice:s3cret@")
      const result = yield* cli(["read", url, "--out", NodePath.join(dir, "o")])
      assert.strictEqual(result.code, 2)
      assertOneLine(result.stderr, "HTTP 404")
      assert.notInclude(result.stderr, "s3cret")
      assert.notInclude(result.stderr, "alice")
    }))

  it.scopedLive("an HTTP 503 with no retries left is a failed read (exit 1)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const server = yield* makeTestServer({ body: testBytes(10) })
      server.failNext(5, 503)
      const result = yield* cli(["read", server.url("/file"), "--out", NodePath.join(dir, "o"), "--retries", "0"])
      assert.strictEqual(result.code, 1)
      assertOneLine(result.stderr, "503")
    }))

  it.scopedLive("log lines go to stderr, warnings by default, and --log-level error hides them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const server = yield* makeTestServer({ body: testBytes(512 * KiB, 3), etag: "\"v1\"", stallAfter: 128 * KiB })
      const argsFor = (name: string) => [
        "read",
        server.url("/file"),
        "--out",
        NodePath.join(dir, name),
        "--state",
        NodePath.join(dir, `${name}.db`),
        "--chunk-size",
        "32KiB",
        "--min-chunk",
        "32KiB",
        "--max-chunk",
        "32KiB",
        "--checkpoint-every",
        "1",
        "--quiet"
      ]
      // Two copies stopped part-way, each with a checkpoint; their partial files are then overwritten,
      // so resuming them logs a warning and copies again from byte 0.
      const children = yield* Effect.acquireRelease(
        Effect.sync(() => ["quiet.bin", "loud.bin"].map((name) => startCli(argsFor(name)))),
        (started) => Effect.sync(() => started.forEach((child) => child.signal("SIGKILL")))
      )
      const partials = ["quiet.bin", "loud.bin"].map((name) => NodePath.join(dir, name + partialSuffix))
      yield* Effect.promise(async () => {
        const deadline = Date.now() + 10_000
        const size = (path: string) => (NodeFs.existsSync(path) ? NodeFs.statSync(path).size : 0)
        while (partials.some((path) => size(path) < 96 * KiB) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      })
      children.forEach((child) => child.signal("SIGTERM"))
      const stopped = yield* Effect.promise(() => Promise.all(children.map((child) => child.exited)))
      assert.deepStrictEqual(stopped.map((result) => result.code), [143, 143], stopped.map((r) => r.stderr).join(""))
      partials.forEach((path) => NodeFs.writeFileSync(path, new Uint8Array(NodeFs.statSync(path).size)))
      server.configure({ stallAfter: undefined })
      const [quiet, loud] = yield* Effect.all([
        cli([...argsFor("quiet.bin"), "--log-level", "error"]),
        cli(argsFor("loud.bin"))
      ], { concurrency: "unbounded" })
      assert.strictEqual(quiet.code, 0, quiet.stderr)
      assert.strictEqual(quiet.stderr, "")
      assert.strictEqual(quiet.stdout, "")
      assert.strictEqual(loud.code, 0, loud.stderr)
      assert.strictEqual(loud.stdout, "", "nothing but --json output on stdout")
      assert.match(loud.stderr, /^streaming-reader: warning: [^\n]*copying again from byte 0\n$/)
    }))
})
