import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { OutputFailed, OutputLocked } from "../../src/layers/FileDestination.js"
import { errorLine, ExitCode, exitCodeFor, formatDurationMs } from "../../src/layers/CommandLine.js"
import { BadRedirect } from "../../src/services/ByteSource.js"
import { InvalidOptions, KiB } from "../../src/services/ReadOptions.js"
import type { CliResult } from "../support/cli.js"
import { runCli } from "../support/cli.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"
import { makeTestServer } from "../support/httpServer.js"

const cli = (args: ReadonlyArray<string>, cwd: string) => Effect.promise(() => runCli(args, { cwd }))

/** Exit 2, nothing on stdout, and exactly one line on stderr: `streaming-reader: ` and then `fragment` in it. */
const assertBadUsage = (result: CliResult, fragment: string) => {
  assert.strictEqual(result.code, 2, result.stderr)
  assert.strictEqual(result.stdout, "")
  assert.match(result.stderr, /^streaming-reader: [^\n]+\n$/, JSON.stringify(result.stderr))
  assert.include(result.stderr, fragment)
  assert.notInclude(result.stderr, "\u001b[", "no terminal styles")
}

describe.concurrent("bad usage: exit 2 and exactly one line on stderr", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
    ["a size that is not one", ["--chunk-size", "abc"], "--chunk-size: not a size: abc"],
    ["a count that is not a number", ["--concurrency", "x"], "--concurrency: not a whole number: x"],
    ["no source copied at once", ["--concurrency", "0"], "invalid option --concurrency: 0 (allowed: 1 to 1000)"],
    ["an unknown flag", ["--bogus"], "unknown option --bogus"],
    ["a flag without its value", ["--chunk-size"], "--chunk-size"],
    ["a memory limit of 0", ["--memory-limit", "0"], "invalid option --memory-limit: 0B (allowed: 1MiB to 64GiB)"],
    ["a stall timeout of 0", ["--stall-timeout", "0"], "invalid option --stall-timeout: 0ms (allowed: 10ms to 3600s)"],
    ["a stall timeout that is not a duration", ["--stall-timeout", "abc"], "--stall-timeout: not a duration: abc"],
    ["negative retries", ["--retries", "-1"], "invalid option --retries: -1 (allowed: 0 to 1000)"],
    ["a rate of 0", ["--rate", "0"], "--rate: not a rate: 0"],
    ["an unknown log level", ["--log-level", "loud"], "--log-level: not a level: loud"]
  ]
  for (const [name, flags, fragment] of cases) {
    it.scopedLive(name, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const source = writeFile(dir, "s.bin", testBytes(10))
        const result = yield* cli(["read", source, "--out", NodePath.join(dir, "o.bin"), ...flags], dir)
        assertBadUsage(result, fragment)
        assert.notInclude(result.stderr, "-ms", "options are named as typed")
        assert.isFalse(NodeFs.existsSync(NodePath.join(dir, ".streaming-reader")), "no checkpoint database opened")
      }))
  }

  it.scopedLive("a missing source and an unknown command", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      assertBadUsage(yield* cli(["read", "--out", NodePath.join(dir, "o.bin")], dir), "Missing argument <source>")
      assertBadUsage(yield* cli(["raed", "x"], dir), "Invalid subcommand")
    }))

  it.scopedLive("a --state whose directory cannot be made is exit 2 and one line, not a hang", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "s.bin", testBytes(10 * KiB))
      const result = yield* cli(
        ["read", source, "--out", NodePath.join(dir, "o.bin"), "--state", "/proc/nope/s.db"],
        dir
      )
      assertBadUsage(result, "/proc/nope/s.db")
      assert.deepStrictEqual(NodeFs.readdirSync(dir), ["s.bin"], "nothing written")
    }))

  it.scopedLive("--expect-sha256 that is not 64 hex characters is refused before any byte is copied", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = writeFile(dir, "s.bin", testBytes(100 * KiB))
      const out = NodePath.join(dir, "o.bin")
      const state = NodePath.join(dir, "state.db")
      for (const digest of ["0".repeat(63), "g".repeat(64)]) {
        const result = yield* cli(["read", source, "--out", out, "--state", state, "--expect-sha256", digest], dir)
        assertBadUsage(result, "--expect-sha256: not a sha256 digest (64 hex characters)")
      }
      assert.deepStrictEqual(NodeFs.readdirSync(dir), ["s.bin"], "no output, no partial file, no checkpoint database")
    }))

  it.scopedLive("worker: read options and --concurrency are checked before the queue is reached", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const queue = ["worker", "--postgres", "postgres://nobody:certainly-not-the-password@127.0.0.1:9/none"]
      assertBadUsage(yield* cli([...queue, "--memory-limit", "0"], dir), "invalid option --memory-limit: 0B")
      assertBadUsage(yield* cli([...queue, "--concurrency", "0"], dir), "invalid option --concurrency: 0")
    }))

  it.scopedLive("--help and --version still print and exit 0", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const [help, readHelp, version] = yield* Effect.forEach([["--help"], ["read", "--help"], ["--version"]], (args) =>
        cli(args, dir), { concurrency: "unbounded" })
      for (const result of [help!, readHelp!, version!]) {
        assert.strictEqual(result.code, 0, result.stderr)
        assert.strictEqual(result.stderr, "")
      }
      assert.include(help!.stdout, "read")
      assert.include(readHelp!.stdout, "--expect-sha256")
      assert.strictEqual(version!.stdout.trim(), "0.1.0")
    }))
})

describe.concurrent("bad input found while reading", () => {
  it.scopedLive("a redirect loop and a redirect to another scheme are exit 2 (BadRedirect)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const server = yield* makeTestServer({ body: testBytes(10) })
      for (const path of ["/redirect-loop", `/redirect?to=${encodeURIComponent("ftp://127.0.0.1/file")}`]) {
        const result = yield* cli(["read", server.url(path), "--out", NodePath.join(dir, "o"), "--retries", "0"], dir)
        assertBadUsage(result, "bad redirect")
      }
    }))
})

describe("errorLine and exitCodeFor", () => {
  it("names each read option by its flag and shows values as they are typed", () => {
    const line = (option: string, value: string, allowed: string) =>
      errorLine(new InvalidOptions({ option, value, allowed }))
    assert.strictEqual(
      line("stallTimeoutMs", "5", "10 to 3600000"),
      "invalid option --stall-timeout: 5ms (allowed: 10ms to 3600s)"
    )
    assert.strictEqual(
      line("maxRetryDelayMs", "4000000", "0 to 3600000"),
      "invalid option --max-retry-delay: 4000s (allowed: 0ms to 3600s)"
    )
    assert.strictEqual(
      line("memoryLimit", "0B", "1MiB to 64GiB"),
      "invalid option --memory-limit: 0B (allowed: 1MiB to 64GiB)"
    )
    const flags: ReadonlyArray<readonly [string, string]> = [
      ["chunkSize", "--chunk-size"],
      ["minChunk", "--min-chunk"],
      ["maxChunk", "--max-chunk"],
      ["checkpointEvery", "--checkpoint-every"],
      ["retries", "--retries"],
      ["rate", "--rate"],
      ["concurrency", "--concurrency"]
    ]
    for (const [option, flag] of flags) {
      assert.strictEqual(line(option, "1", "2 to 3"), `invalid option ${flag}: 1 (allowed: 2 to 3)`)
    }
    assert.strictEqual(formatDurationMs(1500), "1500ms")
    assert.strictEqual(formatDurationMs(30_000), "30s")
  })

  it("BadRedirect and an output refused at open are bad input (2); OutputLocked is a failed read (1)", () => {
    const redirect = new BadRedirect({ source: "http://h/x", reason: "too many redirects" })
    assert.strictEqual(exitCodeFor(redirect), ExitCode.BadInput)
    assert.strictEqual(exitCodeFor(new OutputLocked({ path: "/o", pid: 1, host: "h" })), ExitCode.ReadFailed)
    const refused = new OutputFailed({ path: "/o", reason: "the output is the source", atOpen: true })
    assert.strictEqual(exitCodeFor(refused), ExitCode.BadInput)
    assert.strictEqual(
      exitCodeFor(new OutputFailed({ path: "/o", reason: "no space", atOpen: false })),
      ExitCode.ReadFailed
    )
  })
})
