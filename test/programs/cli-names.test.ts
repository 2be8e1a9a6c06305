import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as Http from "node:http"
import * as NodePath from "node:path"
import { lockSuffix, partialSuffix } from "../../src/layers/FileDestination.js"
import { maxNameBytes, outputName, outputNames } from "../../src/layers/OutputNames.js"
import { runCli } from "../support/cli.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"

/** What the server answers for a request path: the path itself, so each output shows its source. */
const bodyFor = (path: string) => `served ${path}\n`

/** A real HTTP server on 127.0.0.1 that answers every path with `bodyFor(path)`; closed with the scope. */
const anyPathServer = Effect.acquireRelease(
  Effect.async<Http.Server>((resume) => {
    const server = Http.createServer((req, res) => {
      const body = Buffer.from(bodyFor(req.url ?? "/"))
      res.writeHead(200, { "content-length": body.length, etag: "\"v1\"", "content-type": "application/octet-stream" })
      res.end(req.method === "HEAD" ? undefined : body)
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.promise(() => new Promise<void>((done) => server.close(() => done())))
)

const originOf = (server: Http.Server) => {
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no TCP address")
  return `http://127.0.0.1:${address.port}`
}

/** Every file under `dir`, as paths relative to it. */
const filesUnder = (dir: string): ReadonlyArray<string> =>
  NodeFs.readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => NodeFs.statSync(NodePath.join(dir, name)).isFile())
    .sort()

describe("output names under --out-dir", () => {
  it("a name is the last segment, decoded and made safe, never its query or fragment", () => {
    assert.strictEqual(outputName("http://h/%2e%2e%2fevil"), ".._evil")
    assert.strictEqual(outputName("http://h/a%2fb"), "a_b")
    assert.strictEqual(outputName("http://h/a%5Cb"), "a_b")
    assert.strictEqual(outputName("http://h/.."), "index")
    assert.strictEqual(outputName("http://h/"), "index")
    assert.strictEqual(outputName("http://h"), "index")
    assert.strictEqual(outputName("http://h/%2e%2e"), "index")
    assert.strictEqual(outputName("http://h/dir/"), "dir")
    assert.strictEqual(outputName("http://h/x%00y%0az%7f"), "x_y_z_")
    assert.strictEqual(outputName("http://h/caf%C3%A9.txt"), "café.txt")
    assert.strictEqual(outputName("http://h/bad%ffname"), "bad%ffname")
    assert.strictEqual(outputName("https://h/d/file.bin?X-Amz-Signature=abc&name=x/y#frag"), "file.bin")
    assert.strictEqual(outputName("/data/in/part-1.bin"), "part-1.bin")
    assert.strictEqual(outputName("/data/in/a\nb\\c"), "a_b_c")
    assert.strictEqual(outputName("/data/in/100%2f.bin"), "100%2f.bin")
  })

  it("a long name is cut on a character boundary to fit with its helper files, its extension kept", () => {
    assert.strictEqual(maxNameBytes, 255 - Math.max(partialSuffix.length, lockSuffix.length))
    const ascii = outputName(`http://h/${"a".repeat(400)}.tar.gz`)
    assert.strictEqual(Buffer.byteLength(ascii), maxNameBytes)
    assert.isTrue(ascii.endsWith("a.gz"))
    const wide = outputName(`http://h/${encodeURIComponent("é".repeat(300))}.bin`)
    assert.isAtMost(Buffer.byteLength(wide), maxNameBytes)
    assert.match(wide, /^é+\.bin$/)
    const noExtension = outputName(`/in/${"€".repeat(200)}`)
    assert.isAtMost(Buffer.byteLength(noExtension), maxNameBytes)
    assert.match(noExtension, /^€+$/)
  })

  it("names are distinct, avoid each other's .partial and .lock, and are the same for the same sources", () => {
    const sources = [
      "http://h/a/f.bin",
      "http://h/b/f.bin",
      "http://h/c/f.bin",
      "http://h/f.bin.partial",
      "http://h/g.lock",
      "http://h/g",
      "http://h/f.bin.1"
    ]
    const names = outputNames(sources)
    assert.deepStrictEqual(names, ["f.bin", "f.bin.1", "f.bin.2", "f.bin.partial.1", "g.lock", "g.1", "f.bin.1.1"])
    assert.deepStrictEqual(outputNames(sources), names)
    const all = names.flatMap((name) => [name, name + partialSuffix, name + lockSuffix])
    assert.strictEqual(new Set(all).size, all.length)
    const long = outputNames([`http://h/${"x".repeat(300)}`, `http://h/${"x".repeat(300)}`])
    assert.isTrue(long[1]!.endsWith(".1"))
    assert.isAtMost(Buffer.byteLength(long[1]!), maxNameBytes)
    assert.notStrictEqual(long[0], long[1])
  })

  it.scopedLive("hostile URLs all land inside --out-dir, each in its own file, and a rerun keeps the names", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const origin = originOf(yield* anyPathServer)
      const sentinel = writeFile(dir, "evil", Buffer.from("keep me"))
      const outDir = NodePath.join(dir, "out")
      NodeFs.mkdirSync(outDir)
      const paths = [
        "/%2e%2e%2fevil",
        "/a%2fb",
        "/..",
        "/",
        "/a%00b",
        "/x%0ay",
        "/q/same.bin",
        "/r/same.bin",
        "/same.bin.partial",
        "/t.bin?sig=secret#frag"
      ]
      const args = [
        "read",
        ...paths.map((path) => origin + path),
        "--out-dir",
        outDir,
        "--state",
        NodePath.join(dir, "state.db"),
        "--quiet"
      ]
      const result = yield* Effect.promise(() => runCli(args))
      assert.strictEqual(result.code, 0, result.stderr)
      const expected = [
        ".._evil",
        "a_b",
        "index",
        "index.1",
        "a_b.1",
        "x_y",
        "same.bin",
        "same.bin.1",
        "same.bin.partial.1",
        "t.bin"
      ]
      assert.deepStrictEqual(filesUnder(outDir), [...expected].sort())
      const served = [
        "/%2e%2e%2fevil",
        "/a%2fb",
        "/",
        "/",
        "/a%00b",
        "/x%0ay",
        "/q/same.bin",
        "/r/same.bin",
        "/same.bin.partial",
        "/t.bin?sig=secret"
      ]
      expected.forEach((name, i) =>
        assert.strictEqual(NodeFs.readFileSync(NodePath.join(outDir, name), "utf8"), bodyFor(served[i]!), name)
      )
      assert.strictEqual(NodeFs.readFileSync(sentinel, "utf8"), "keep me")
      const outside = NodeFs.readdirSync(dir).filter((name) => !name.startsWith("state.db")).sort()
      assert.deepStrictEqual(outside, ["evil", "out"], "nothing written beside --out-dir")

      const again = yield* Effect.promise(() => runCli(args))
      assert.strictEqual(again.code, 0, again.stderr)
      assert.deepStrictEqual(filesUnder(outDir), [...expected].sort())
    }))

  it.scopedLive("--out-dir is created when missing, parents included", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "s.bin", testBytes(1000, 3))
      const outDir = NodePath.join(dir, "a", "b", "c")
      const result = yield* Effect.promise(() => runCli(["read", source, "--out-dir", outDir, "--quiet"], { cwd: dir }))
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(NodePath.join(outDir, "s.bin")).equals(Buffer.from(testBytes(1000, 3))))
    }))

  it.scopedLive("an --out-dir that cannot be created is exit 2 and one line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "s.bin", testBytes(10))
      for (const outDir of [NodePath.join(source, "sub"), source]) {
        const result = yield* Effect.promise(() => runCli(["read", source, "--out-dir", outDir], { cwd: dir }))
        assert.strictEqual(result.code, 2, result.stderr)
        assert.strictEqual(result.stderr, `streaming-reader: cannot create --out-dir ${outDir}: a file is in the way\n`)
      }
      assert.isFalse(NodeFs.existsSync(NodePath.join(dir, ".streaming-reader")), "nothing opened before the check")
    }))
})
