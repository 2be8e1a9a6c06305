/**
 * The file destination through the built command line: an output is never the source, a
 * non-regular output is never touched, an unfinished copy never sits at the final path, one
 * writer per output, and a resume builds only on bytes this copy wrote.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { createRequire } from "node:module"
import * as NodeFs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as NodePath from "node:path"
import { MiB } from "../../src/services/ReadOptions.js"
import type { CliProcess } from "../support/cli.js"
import { readArgs, runCli, startCli } from "../support/cli.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"

const cli = (args: ReadonlyArray<string>) => Effect.promise(() => runCli(args))

const sha256 = (path: string) => createHash("sha256").update(NodeFs.readFileSync(path)).digest("hex")

const sizeOf = (path: string) => {
  try {
    return NodeFs.statSync(path).size
  } catch {
    return -1
  }
}

const assertOneLine = (stderr: string, includes: string) => {
  const lines = stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, stderr)
  assert.match(lines[0]!, /^streaming-reader: /)
  assert.include(lines[0]!, includes)
}

/** Waits (real time, bounded) until `ready` holds. */
const until = (ready: () => boolean, timeoutMs = 20_000) =>
  Effect.promise(() =>
    new Promise<boolean>((resolve) => {
      const startedAt = Date.now()
      const poll = setInterval(() => {
        if (ready() || Date.now() - startedAt > timeoutMs) {
          clearInterval(poll)
          resolve(ready())
        }
      }, 5)
    })
  )

const finish = (started: CliProcess) => Effect.promise(() => started.exited)

/** Starts a copy and kills it with SIGKILL once its partial file holds `atBytes`. */
const killAt = (args: ReadonlyArray<string>, partial: string, atBytes: number) =>
  Effect.gen(function*() {
    const started = startCli(args)
    assert.isTrue(yield* until(() => sizeOf(partial) >= atBytes), "the copy made progress")
    started.signal("SIGKILL")
    yield* finish(started)
  })

interface SqliteDatabase {
  prepare(sql: string): { get(): unknown }
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(
  path: string,
  options?: object
) => SqliteDatabase

/** The offset of the one checkpoint in a state database. */
const checkpointOffset = (state: string): number => {
  const db = new Database(state, { readonly: true })
  try {
    return (db.prepare("SELECT byte_offset AS offset FROM checkpoints").get() as { readonly offset: number }).offset
  } finally {
    db.close()
  }
}

describe("the output is never the source", () => {
  const cases: ReadonlyArray<readonly [string, (dir: string, source: string) => string]> = [
    ["the same path", (_, source) => source],
    ["the same path spelled differently", (dir) => NodePath.join(dir, ".", "sub", "..", "source.bin")],
    ["a symbolic link to the source", (dir, source) => {
      const link = NodePath.join(dir, "link.bin")
      NodeFs.symlinkSync(source, link)
      return link
    }],
    ["a hard link to the source", (dir, source) => {
      const link = NodePath.join(dir, "hard.bin")
      NodeFs.linkSync(source, link)
      return link
    }]
  ]
  for (const [name, outOf] of cases) {
    it.scopedLive(`refuses ${name}: exit 2, the source untouched`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        NodeFs.mkdirSync(NodePath.join(dir, "sub"))
        const source = writeFile(dir, "source.bin", testBytes(300_000, 3))
        const before = sha256(source)
        const result = yield* cli(["read", source, "--out", outOf(dir, source), "--state", NodePath.join(dir, "s.db")])
        assert.strictEqual(result.code, 2, result.stderr)
        assertOneLine(result.stderr, "the output is the source")
        assert.strictEqual(sha256(source), before)
        assert.strictEqual(sizeOf(source), 300_000)
      }))
  }

  it.scopedLive("refuses a source that is a symbolic link to the output", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = writeFile(dir, "out.bin", testBytes(100_000, 4))
      const link = NodePath.join(dir, "link.bin")
      NodeFs.symlinkSync(out, link)
      const result = yield* cli(["read", link, "--out", out, "--state", NodePath.join(dir, "s.db")])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.strictEqual(sizeOf(out), 100_000)
    }))
})

describe("a non-regular output is refused and never removed", () => {
  it.scopedLive("a directory, a named pipe and a socket stay what they were", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "source.bin", testBytes(50_000, 5))
      const directory = NodePath.join(dir, "a-directory")
      NodeFs.mkdirSync(directory)
      const fifo = NodePath.join(dir, "a-fifo")
      execFileSync("mkfifo", [fifo])
      const socketPath = NodePath.join(dir, "a-socket")
      const server = Net.createServer()
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => server.listen(socketPath, resolve))),
        () => Effect.sync(() => server.close())
      )
      const kinds: ReadonlyArray<readonly [string, (stats: NodeFs.Stats) => boolean]> = [
        [directory, (stats) => stats.isDirectory()],
        [fifo, (stats) => stats.isFIFO()],
        [socketPath, (stats) => stats.isSocket()]
      ]
      for (const [out, isKind] of kinds) {
        const result = yield* cli(["read", source, "--out", out, "--state", NodePath.join(dir, "s.db")])
        assert.strictEqual(result.code, 2, result.stderr)
        assertOneLine(result.stderr, out)
        assert.isTrue(isKind(NodeFs.lstatSync(out)), `${out} is still what it was`)
        assert.isFalse(NodeFs.existsSync(`${out}.partial`))
        assert.isFalse(NodeFs.existsSync(`${out}.lock`))
      }
    }))

  it.scopedLive("/dev/null survives --out and --out-dir", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "null", testBytes(50_000, 6))
      const byOut = yield* cli(["read", source, "--out", "/dev/null", "--state", NodePath.join(dir, "s.db")])
      assert.strictEqual(byOut.code, 2, byOut.stderr)
      const byDir = yield* cli(["read", source, "--out-dir", "/dev", "--state", NodePath.join(dir, "s.db")])
      assert.strictEqual(byDir.code, 2, byDir.stderr)
      const stats = NodeFs.lstatSync("/dev/null")
      assert.isTrue(stats.isCharacterDevice())
      assert.isFalse(NodeFs.existsSync("/dev/null.partial"))
      assert.isFalse(NodeFs.existsSync("/dev/null.lock"))
    }))
})

describe("partial file and rename", () => {
  it.scopedLive("an unfinished copy sits only at <out>.partial; the complete one is renamed into place", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "source.bin", testBytes(3 * MiB, 7))
      const out = NodePath.join(dir, "out.bin")
      const copying = startCli([
        "read",
        source,
        "--out",
        out,
        "--rate",
        "2MiB/s",
        "--state",
        NodePath.join(dir, "s.db")
      ])
      assert.isTrue(yield* until(() => sizeOf(`${out}.partial`) > 0))
      assert.isFalse(NodeFs.existsSync(out), "nothing at the final path while copying")
      assert.isTrue(NodeFs.existsSync(`${out}.lock`))
      const result = yield* finish(copying)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(sha256(out), sha256(source))
      assert.isFalse(NodeFs.existsSync(`${out}.partial`))
      assert.isFalse(NodeFs.existsSync(`${out}.lock`))
    }))

  it.scopedLive("a failed sha256 check leaves nothing new at the final path and keeps an older file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "source.bin", testBytes(400_000, 8))
      const fresh = NodePath.join(dir, "fresh.bin")
      const wrong = "0".repeat(64)
      const first = yield* cli([
        "read",
        source,
        "--out",
        fresh,
        "--expect-sha256",
        wrong,
        "--state",
        NodePath.join(dir, "s.db")
      ])
      assert.strictEqual(first.code, 1, first.stderr)
      assertOneLine(first.stderr, "sha256 mismatch")
      assert.isFalse(NodeFs.existsSync(fresh))
      assert.isFalse(NodeFs.existsSync(`${fresh}.partial`))
      const older = writeFile(dir, "older.bin", testBytes(1000, 9))
      const second = yield* cli([
        "read",
        source,
        "--out",
        older,
        "--expect-sha256",
        wrong,
        "--state",
        NodePath.join(dir, "s.db")
      ])
      assert.strictEqual(second.code, 1, second.stderr)
      assert.isTrue(NodeFs.readFileSync(older).equals(Buffer.from(testBytes(1000, 9))))
    }))

  it.scopedLive("a failure to open the source leaves no partial file and no checkpoint row", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = NodePath.join(dir, "out.bin")
      const state = NodePath.join(dir, "s.db")
      const result = yield* cli(["read", NodePath.join(dir, "missing.bin"), "--out", out, "--state", state])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.deepStrictEqual(NodeFs.readdirSync(dir).filter((name) => name.startsWith("out.bin")), [])
    }))
})

describe("one writer per output", () => {
  it.scopedLive("a second writer exits 1 at once naming the first, which completes byte-exact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "source.bin", testBytes(4 * MiB, 10))
      const out = NodePath.join(dir, "out.bin")
      // Slow enough (8 s) that the first is still writing when the second, started on a loaded machine, looks.
      const first = startCli([
        "read",
        source,
        "--out",
        out,
        "--rate",
        "512KiB/s",
        "--state",
        NodePath.join(dir, "a.db")
      ])
      assert.isTrue(yield* until(() => sizeOf(`${out}.partial`) > 0))
      const second = yield* cli(["read", source, "--out", out, "--state", NodePath.join(dir, "b.db"), "--restart"])
      assert.strictEqual(second.code, 1, second.stderr)
      assertOneLine(second.stderr, `process ${first.pid}`)
      const done = yield* finish(first)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.strictEqual(sha256(out), sha256(source))
    }))

  it.scopedLive("a lock left by a killed process is taken over", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "source.bin", testBytes(3 * MiB, 11))
      const out = NodePath.join(dir, "out.bin")
      const args = ["read", source, "--out", out, "--rate", "4MiB/s", "--state", NodePath.join(dir, "s.db")]
      yield* killAt(args, `${out}.partial`, 512 * 1024)
      assert.isTrue(NodeFs.existsSync(`${out}.lock`), "kill -9 leaves its lock behind")
      const result = yield* cli(args.filter((arg) => arg !== "--rate" && arg !== "4MiB/s"))
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(sha256(out), sha256(source))
      assert.isFalse(NodeFs.existsSync(`${out}.lock`))
    }))
})

describe("a resume builds only on bytes this copy wrote", () => {
  const tamperings: ReadonlyArray<readonly [string, (partial: string, offset: number) => void]> = [
    ["left as it was (resumes)", () => undefined],
    ["modified just before the checkpoint", (partial, offset) => {
      const fd = NodeFs.openSync(partial, "r+")
      NodeFs.writeSync(fd, Buffer.from([0xde, 0xad]), 0, 2, offset - 2)
      NodeFs.closeSync(fd)
    }],
    ["truncated below the checkpoint", (partial, offset) => NodeFs.truncateSync(partial, Math.floor(offset / 2))],
    ["replaced by a copy of itself", (partial) => {
      NodeFs.copyFileSync(partial, `${partial}.copy`)
      NodeFs.renameSync(`${partial}.copy`, partial)
    }]
  ]
  for (const [name, tamper] of tamperings) {
    it.scopedLive(`a partial file ${name}`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const source = writeFile(dir, "source.bin", testBytes(4 * MiB, 12))
        const out = NodePath.join(dir, "out.bin")
        const state = NodePath.join(dir, "s.db")
        const args = ["read", source, "--out", out, "--state", state, "--checkpoint-every", "1"]
        yield* killAt([...args, "--rate", "4MiB/s"], `${out}.partial`, 1 * MiB)
        const offset = checkpointOffset(state)
        assert.isAbove(offset, 0)
        tamper(`${out}.partial`, offset)
        const result = yield* cli([...args, "--json"])
        assert.strictEqual(result.code, 0, result.stderr)
        assert.strictEqual(sha256(out), sha256(source))
        const summary = JSON.parse(result.stdout) as { readonly resumedFrom: number }
        if (name.startsWith("left")) {
          assert.strictEqual(summary.resumedFrom, offset)
        } else {
          assert.strictEqual(summary.resumedFrom, 0)
          assert.include(result.stderr, "copying again from byte 0")
        }
      }))
  }
})

describe("a file source's identity", () => {
  const replacements: ReadonlyArray<readonly [string, (source: string) => void]> = [
    ["replaced with other bytes of the same size and mtime (cp -p)", (source) => {
      const { atime, mtime } = NodeFs.statSync(source)
      writeFile(NodePath.dirname(source), "new.bin", testBytes(4 * MiB, 99))
      NodeFs.utimesSync(NodePath.join(NodePath.dirname(source), "new.bin"), atime, mtime)
      NodeFs.renameSync(NodePath.join(NodePath.dirname(source), "new.bin"), source)
    }],
    ["rewritten in place with its mtime restored", (source) => {
      const { atime, mtime } = NodeFs.statSync(source)
      NodeFs.writeFileSync(source, testBytes(4 * MiB, 98))
      NodeFs.utimesSync(source, atime, mtime)
    }]
  ]
  for (const [name, replace] of replacements) {
    it.scopedLive(`a source ${name} is refused on resume`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const source = writeFile(dir, "source.bin", testBytes(4 * MiB, 13))
        const out = NodePath.join(dir, "out.bin")
        const args = ["read", source, "--out", out, "--state", NodePath.join(dir, "s.db"), "--checkpoint-every", "1"]
        yield* killAt([...args, "--rate", "4MiB/s"], `${out}.partial`, 1 * MiB)
        replace(source)
        const result = yield* cli(args)
        assert.strictEqual(result.code, 1, result.stderr)
        assertOneLine(result.stderr, "source changed since the checkpoint")
        assert.isFalse(NodeFs.existsSync(out), "nothing of two versions reaches the final path")
      }))
  }
})

/** A paced HTTP server for one object whose validator is weak or absent, with one-shot drops. */
const makeWeakServer = (initial: Uint8Array, etag: string | undefined) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{
        readonly url: string
        readonly ranges: Array<string | undefined>
        readonly state: { body: Uint8Array; etag: string | undefined; dropAt: number | undefined; dropNow: boolean }
        readonly close: () => void
      }>((resolve) => {
        const state = { body: initial, etag, dropAt: undefined as number | undefined, dropNow: false }
        const ranges: Array<string | undefined> = []
        const server = Http.createServer((req, res) => {
          ranges.push(req.headers.range)
          const body = state.body
          const headers: Record<string, string | number> = { "content-length": body.length, "accept-ranges": "bytes" }
          if (state.etag !== undefined) headers["etag"] = state.etag
          const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "")
          const from = range === null ? 0 : Number(range[1])
          if (from > 0) {
            headers["content-length"] = body.length - from
            headers["content-range"] = `bytes ${from}-${body.length - 1}/${body.length}`
          }
          res.writeHead(from > 0 ? 206 : 200, headers)
          let at = from
          const dropAt = state.dropAt
          state.dropAt = undefined
          const step = () => {
            if (at >= body.length) return res.end()
            if ((dropAt !== undefined && at >= dropAt) || state.dropNow) {
              state.dropNow = false
              return res.destroy()
            }
            const piece = body.subarray(at, Math.min(body.length, at + 16 * 1024))
            at += piece.length
            res.write(piece, () => setTimeout(step, 4))
          }
          step()
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as Net.AddressInfo).port
          resolve({
            url: `http://127.0.0.1:${port}/object.bin`,
            ranges,
            state,
            close: () => {
              server.closeAllConnections()
              server.close()
            }
          })
        })
      })
    ),
    (server) => Effect.sync(() => server.close())
  )

describe("HTTP objects without a strong validator", () => {
  const validators: ReadonlyArray<readonly [string, string | undefined]> = [["a weak ETag", "W/\"v1\""], [
    "no validator",
    undefined
  ]]
  for (const [name, etag] of validators) {
    it.scopedLive(`with ${name}, a dropped connection is resumed by reading again from byte 0`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(1 * MiB, 14)
        const server = yield* makeWeakServer(bytes, etag)
        server.state.dropAt = 400_000
        const out = NodePath.join(dir, "out.bin")
        const result = yield* cli(["read", server.url, "--out", out, "--json", "--state", NodePath.join(dir, "s.db")])
        assert.strictEqual(result.code, 0, result.stderr)
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
        assert.strictEqual(server.ranges.length, 2)
        for (const range of server.ranges) assert.oneOf(range, [undefined, "bytes=0-"], "never a range past byte 0")
        assert.strictEqual((JSON.parse(result.stdout) as { readonly retries: number }).retries, 1)
      }))

    it.scopedLive(`with ${name}, a changed object is copied again from byte 0 across runs, never spliced`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const first = testBytes(1 * MiB, 15)
        const second = testBytes(1 * MiB, 16)
        const server = yield* makeWeakServer(first, etag)
        server.state.dropAt = 500_000
        const out = NodePath.join(dir, "out.bin")
        const args = readArgs(server.url, out, NodePath.join(dir, "s.db"), "--checkpoint-every", "1")
        const failed = yield* cli([...args, "--retries", "0"])
        assert.strictEqual(failed.code, 1, failed.stderr)
        assert.isAbove(sizeOf(`${out}.partial`), 0)
        server.state.body = second
        const result = yield* cli([...args, "--json"])
        assert.strictEqual(result.code, 0, result.stderr)
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(second)), "the output is the new version, whole")
        assert.strictEqual((JSON.parse(result.stdout) as { readonly resumedFrom: number }).resumedFrom, 0)
        assert.include(result.stderr, "from byte 0")
      }))

    it.scopedLive(`with ${name}, an unchanged object resumes across runs after checking its prefix`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(1 * MiB, 17)
        const server = yield* makeWeakServer(bytes, etag)
        server.state.dropAt = 500_000
        const out = NodePath.join(dir, "out.bin")
        const args = readArgs(server.url, out, NodePath.join(dir, "s.db"), "--checkpoint-every", "1")
        const failed = yield* cli([...args, "--retries", "0"])
        assert.strictEqual(failed.code, 1, failed.stderr)
        const result = yield* cli([...args, "--json"])
        assert.strictEqual(result.code, 0, result.stderr)
        assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(bytes)))
        assert.isAbove((JSON.parse(result.stdout) as { readonly resumedFrom: number }).resumedFrom, 0)
        for (const range of server.ranges) assert.oneOf(range, [undefined, "bytes=0-"])
      }))
  }

  it.scopedLive("with a weak ETag, an object that changes during the run is copied again from byte 0", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = testBytes(1 * MiB, 18)
      const second = testBytes(1 * MiB, 19)
      const server = yield* makeWeakServer(first, "W/\"v1\"")
      const out = NodePath.join(dir, "out.bin")
      const copying = startCli(["read", server.url, "--out", out, "--state", NodePath.join(dir, "s.db")])
      assert.isTrue(yield* until(() => sizeOf(`${out}.partial`) > 300_000))
      server.state.body = second
      server.state.dropNow = true
      const result = yield* finish(copying)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(NodeFs.readFileSync(out).equals(Buffer.from(second)), "the new version, whole, never spliced")
      assert.include(result.stderr, "from byte 0")
    }))
})
