import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as Http from "node:http"
import * as NodePath from "node:path"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import type { CliResult } from "../support/cli.js"
import { readArgs, runCli, startCli } from "../support/cli.js"
import { tempDir, testBytes } from "../support/files.js"
import { listenOnLoopback } from "../support/httpServer.js"
import { skipPostgres } from "../support/postgres.js"
import type { SegmentServeOptions } from "../support/segmentServer.js"
import { makeSegmentServer } from "../support/segmentServer.js"
import { startWorker, waitFor, withQueue } from "../support/workers.js"
import { Database } from "../support/sqlite.js"

const cli = (args: ReadonlyArray<string>) => Effect.promise(() => runCli(args))

/** The largest chunk of a read with the default `--max-chunk`. */
const maxChunk = 256 * KiB

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const exists = (path: string) => NodeFs.existsSync(path)

/** Exit 0 and `path` holds exactly `bytes` (size and sha256). */
const assertCopied = (result: CliResult, path: string, bytes: Uint8Array) => {
  assert.strictEqual(result.code, 0, result.stderr)
  const written = NodeFs.readFileSync(path)
  assert.strictEqual(written.byteLength, bytes.byteLength)
  assert.strictEqual(sha256(written), sha256(bytes))
  assert.isFalse(exists(`${path}.partial`))
}

/** Exactly one line on stderr, `streaming-reader: ...`, with no stack trace. */
const assertOneLine = (stderr: string) => {
  assert.match(stderr, /^streaming-reader: [^\n]+\n$/, JSON.stringify(stderr))
  assert.notMatch(stderr, /^\s+at /m, "no stack trace")
}

/** A range of the source, `end` excluded. */
interface Span {
  readonly start: number
  readonly end: number
}

/** What the checkpoints in a state database vouch for: the bytes before `offset`, and `ranges`. */
interface Recorded {
  readonly offset: number
  readonly ranges: ReadonlyArray<Span>
  /** Bytes vouched for in all. */
  readonly bytes: number
}

/** The one checkpoint of a state database (none: nothing recorded). */
const recordedIn = (state: string): Recorded => {
  if (!exists(state)) return { offset: 0, ranges: [], bytes: 0 }
  const db = new Database(state, { readonly: true })
  try {
    const rows = db.prepare("SELECT byte_offset, done_ranges FROM checkpoints").all() as ReadonlyArray<
      { readonly byte_offset: number; readonly done_ranges: string | null }
    >
    assert.isAtMost(rows.length, 1, "one checkpoint per source and destination")
    const row = rows[0]
    if (row === undefined) return { offset: 0, ranges: [], bytes: 0 }
    const ranges = row.done_ranges === null ? [] : (JSON.parse(row.done_ranges) as ReadonlyArray<Span>)
    return {
      offset: row.byte_offset,
      ranges,
      bytes: row.byte_offset + ranges.reduce((sum, range) => sum + range.end - range.start, 0)
    }
  } finally {
    db.close()
  }
}

/** Every byte a checkpoint vouches for is in the partial output as it is in the source. */
const assertRecordedWritten = (partial: string, recorded: Recorded, bytes: Uint8Array) => {
  if (recorded.bytes === 0) return
  const written = NodeFs.readFileSync(partial)
  const spans: ReadonlyArray<Span> = [{ start: 0, end: recorded.offset }, ...recorded.ranges]
  let last = recorded.offset
  for (const span of recorded.ranges) {
    assert.isAbove(
      span.start,
      last,
      `done ranges are sorted, disjoint and past the offset: ${JSON.stringify(recorded)}`
    )
    assert.isAbove(span.end, span.start)
    last = span.end
  }
  assert.isAtMost(last, bytes.byteLength)
  for (const span of spans) {
    assert.isAtMost(span.end, written.byteLength, `recorded ${span.start}-${span.end} lies past the partial output`)
    assert.isTrue(
      written.subarray(span.start, span.end).equals(Buffer.from(bytes.subarray(span.start, span.end))),
      `recorded bytes ${span.start}-${span.end} are the source's`
    )
  }
}

/**
 * Starts `streaming-reader <args>`, SIGKILLs it once `ready` holds, and waits for it to exit;
 * whether it was killed (it may finish first). A short wait after the kill lets the server
 * notice the closed connections, so its counters hold still.
 */
const killWhen = (args: ReadonlyArray<string>, what: string, ready: () => boolean) =>
  Effect.gen(function*() {
    const run = startCli(args)
    let finished = false
    void run.exited.then(() => {
      finished = true
    })
    const killed = yield* waitFor(what, () => finished ? false : ready() ? true : undefined, 20_000, 2)
    if (killed) run.signal("SIGKILL")
    const result = yield* Effect.promise(() => run.exited)
    if (killed) assert.strictEqual(result.signal, "SIGKILL", result.stderr)
    yield* Effect.sleep("150 millis")
    return killed
  })

/** What the state database records so far, while a copy may be creating or writing it. */
const recordedSoFar = (state: string): number => {
  try {
    return recordedIn(state).bytes
  } catch {
    return 0
  }
}

/** A proxy in front of a server that counts the requests in progress as the client sees them. */
interface CountingProxy {
  readonly url: string
  /** The most requests in progress at once so far. */
  readonly peakConcurrent: () => number
}

/**
 * Starts a proxy to `target` on 127.0.0.1 that forwards each request and its response as they
 * come. A request is in progress until the last byte of its response is forwarded (or the
 * client goes away): unlike the segment server's own count, it does not wait for the server
 * to end a response whose bytes the client already has.
 */
const countingProxy = (target: string): Effect.Effect<CountingProxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const upstream = new URL(target)
    let concurrent = 0
    let peak = 0
    const server = Http.createServer((req, res) => {
      concurrent++
      peak = Math.max(peak, concurrent)
      let open = true
      const done = () => {
        if (open) concurrent--
        open = false
      }
      const headers = { ...req.headers, host: upstream.host }
      const forward = Http.request(
        { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers, agent: false },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.on("data", (chunk: Buffer) => res.write(chunk))
          answer.on("end", () => {
            done()
            res.end()
          })
          answer.on("error", () => res.destroy())
        }
      )
      forward.on("error", () => res.destroy())
      res.on("close", () => {
        done()
        forward.destroy()
      })
      forward.end()
    })
    const port = yield* listenOnLoopback(server)
    const proxy: CountingProxy = { url: `http://127.0.0.1:${port}${upstream.pathname}`, peakConcurrent: () => peak }
    return proxy
  })

/** Where a test's read writes: `out.bin` and its state database `state.db` in a new temporary directory. */
const outputPaths = Effect.map(tempDir, (dir) => ({
  out: NodePath.join(dir, "out.bin"),
  state: NodePath.join(dir, "state.db")
}))

/** `read <url>` into `out` with its state in `state`, over `segments` segments of at least 256 KiB, then `flags`. */
const segmentedRead = (url: string, out: string, state: string, segments: number, ...flags: ReadonlyArray<string>) =>
  readArgs(url, out, state, "--segments", String(segments), "--min-segment-size", "256KiB", ...flags)

/** Starts a segment server paced at `bytesPerSecond` per connection. */
const pacedServer = (body: Uint8Array, bytesPerSecond: number, more: Partial<SegmentServeOptions> = {}) =>
  makeSegmentServer({ body, etag: "\"v1\"", bytesPerSecond, ...more })

describe("a read over segments (end to end)", () => {
  it.scopedLive("killed (SIGKILL) at 5 points: each rerun fetches only what the checkpoint lacks, byte-exact", () =>
    Effect.gen(function*() {
      const size = 8 * MiB
      const bytes = testBytes(size, 61)
      const server = yield* pacedServer(bytes, 4 * MiB)
      const checkpointEvery = 2
      const segments = 4
      // Bytes a connection had in flight when it was narrowed (the first request asked again for its
      // own segment, or a range split) arrive once more on the other connection: a chunk per segment.
      const slack = maxChunk * (segments + 1)
      // Each list is one trial: the runs killed (at these fractions of the object sent in the trial), then a rerun.
      const trials: ReadonlyArray<ReadonlyArray<number>> = [[0.12], [0.33], [0.55], [0.8], [0.3, 0.7]]
      const report: Array<string> = []
      const overFetched: Array<string> = []
      let recordedSomething = 0
      yield* Effect.forEach(trials, (fractions, trial) =>
        Effect.gen(function*() {
          const { out, state } = yield* outputPaths
          const args = segmentedRead(
            server.url,
            out,
            state,
            segments,
            "--checkpoint-every",
            String(checkpointEvery),
            "--quiet"
          )
          server.configure({ bytesPerSecond: 4 * MiB })
          const start = server.bytesSent()
          for (const fraction of fractions) {
            const atBytes = start + Math.floor(fraction * size)
            const killed = yield* killWhen(args, `${atBytes} bytes sent`, () => server.bytesSent() >= atBytes)
            assert.isTrue(killed, `trial ${trial}: the copy ended before ${fraction} of the object was sent`)
            assert.isFalse(exists(out), "a killed copy never sits at the final path")
          }
          const recorded = recordedIn(state)
          assertRecordedWritten(`${out}.partial`, recorded, bytes)
          if (recorded.bytes > 0) recordedSomething++

          // The rerun is paced as a network would pace it: unpaced on loopback, the server would count
          // as sent the megabytes it pushes into socket buffers ahead of a connection the reader closes.
          server.configure({ bytesPerSecond: 8 * MiB })
          const before = server.bytesSent()
          const requestsBefore = server.requests()
          const rerun = yield* cli([...args, "--json"])
          assertCopied(rerun, out, bytes)
          const summary = JSON.parse(rerun.stdout)
          assert.strictEqual(summary.bytes, size)
          assert.strictEqual(summary.sha256, sha256(bytes))
          const fetched = server.bytesSent() - before
          const missing = size - recorded.bytes
          const allowed = missing + checkpointEvery * maxChunk * segments + slack
          const line = `trial ${trial}, killed at ${fractions.join(" then ")} of the object sent: ` +
            `checkpoint recorded ${recorded.bytes} (offset ${recorded.offset} + ${recorded.ranges.length} ranges), ` +
            `${missing} missing; the rerun fetched ${fetched} (allowed ${allowed}), asking ` +
            server.ranges().slice(requestsBefore).join(", ")
          report.push(line)
          if (fetched > allowed || (recorded.bytes >= size / 4 && fetched >= size)) overFetched.push(line)
        }))
      console.info(report.join("\n"))
      assert.isAtLeast(
        recordedSomething,
        3,
        `checkpoints recorded progress in most trials (the first kill may come before any):\n${report.join("\n")}`
      )
      assert.deepStrictEqual(
        overFetched,
        [],
        "each rerun fetches only what the checkpoint lacks (and less than the whole object when it held a quarter)"
      )
    }))

  it.scopedLive("--json reports 4 segments against a range server, 1 without ranges or a strong ETag", () =>
    Effect.gen(function*() {
      const size = 4 * MiB
      const cases: ReadonlyArray<readonly [string, Partial<SegmentServeOptions>, number]> = [
        ["ranges and a strong ETag", {}, 4],
        ["no Range support", { ignoreRange: true }, 1],
        ["a weak ETag", { etag: "W/\"v1\"" }, 1],
        ["no ETag", { etag: undefined }, 1],
        ["no total in Content-Range", { unknownTotal: true }, 1]
      ]
      yield* Effect.forEach(cases, ([name, options, expected], i) =>
        Effect.gen(function*() {
          const { out, state } = yield* outputPaths
          const bytes = testBytes(size, 70 + i)
          const server = yield* pacedServer(bytes, 8 * MiB, options)
          const result = yield* cli(segmentedRead(server.url, out, state, 4, "--json"))
          assertCopied(result, out, bytes)
          const summary = JSON.parse(result.stdout)
          assert.strictEqual(summary.segments, expected, `${name}: ${result.stdout}`)
          assert.strictEqual(summary.sha256, sha256(bytes), name)
          if (expected === 1) assert.strictEqual(server.peakConcurrent(), 1, `${name}: one connection`)
          else assert.isAtLeast(server.peakConcurrent(), 2, `${name}: connections at once`)
        }), { concurrency: "unbounded" })
    }))

  it.scopedLive("an object changed between a killed run and the rerun: exit 1, one line; --restart copies it", () =>
    Effect.gen(function*() {
      const size = 6 * MiB
      const first = testBytes(size, 81)
      const second = testBytes(size, 82)
      const server = yield* pacedServer(first, 4 * MiB)
      const { out, state } = yield* outputPaths
      const args = segmentedRead(server.url, out, state, 4, "--checkpoint-every", "2", "--quiet")
      assert.isTrue(yield* killWhen(args, "1 MiB recorded", () => recordedSoFar(state) >= 1 * MiB))
      const recorded = recordedIn(state)
      assert.isAbove(recorded.bytes, 0, "the killed run recorded progress")
      const partial = NodeFs.readFileSync(`${out}.partial`)

      server.configure({ etag: "\"v2\"", body: second, bytesPerSecond: undefined })
      const changed = yield* cli(args)
      assert.strictEqual(changed.code, 1, changed.stderr)
      assertOneLine(changed.stderr)
      assert.include(changed.stderr, "source changed since the checkpoint")
      assert.include(changed.stderr, "--restart")
      assert.isFalse(exists(out), "no output from a changed source")
      assert.isTrue(NodeFs.readFileSync(`${out}.partial`).equals(partial), "nothing of the new version is spliced in")

      const restarted = yield* cli([...args, "--restart", "--json"])
      assertCopied(restarted, out, second)
      assert.strictEqual(JSON.parse(restarted.stdout).segments, 4)
      assert.isFalse(exists(`${out}.lock`))
    }))

  it.scopedLive("--segments 0, --segments 65, --min-segment-size 1KiB: exit 2, one line naming the option", () =>
    Effect.gen(function*() {
      const { out, state } = yield* outputPaths
      const server = yield* makeSegmentServer({ body: testBytes(64 * KiB, 90) })
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["--segments", "0"], "invalid option --segments: 0 (allowed: 1 to 64)"],
        [["--segments", "65"], "invalid option --segments: 65 (allowed: 1 to 64)"],
        [["--min-segment-size", "1KiB"], "invalid option --min-segment-size: 1KiB (allowed: 64KiB to 1GiB)"]
      ]
      const results = yield* Effect.forEach(cases, ([flags]) => cli(readArgs(server.url, out, state, ...flags)), {
        concurrency: "unbounded"
      })
      results.forEach((result, i) => {
        const [flags, line] = cases[i]!
        assert.strictEqual(result.code, 2, `${flags.join(" ")}: ${result.stderr}`)
        assert.strictEqual(result.stdout, "")
        assertOneLine(result.stderr)
        assert.include(result.stderr, flags[0]!)
        assert.include(result.stderr, line)
      })
      assert.strictEqual(server.requests(), 0, "nothing fetched")
      assert.isFalse(exists(out))
      assert.isFalse(exists(`${out}.partial`))
    }))

  it.scopedLive("--max-connections 2 --segments 8: at most 2 connections at once, byte-exact", () =>
    Effect.gen(function*() {
      const size = 4 * MiB
      const bytes = testBytes(size, 95)
      const server = yield* pacedServer(bytes, 4 * MiB)
      // The segment server ends a paced response one pace step after its last byte, and counts
      // it in progress until then, while the client has its bytes and has moved on; the proxy
      // counts what the client holds.
      const proxy = yield* countingProxy(server.url)
      const { out, state } = yield* outputPaths
      const result = yield* cli(segmentedRead(proxy.url, out, state, 8, "--max-connections", "2", "--json"))
      assertCopied(result, out, bytes)
      const ranges = server.ranges().join(", ")
      assert.isAtMost(proxy.peakConcurrent(), 2, `requests at once; ranges asked: ${ranges}`)
      assert.isAtLeast(proxy.peakConcurrent(), 2, `the read used both connections; ranges asked: ${ranges}`)
      const summary = JSON.parse(result.stdout)
      assert.strictEqual(summary.sha256, sha256(bytes))
      assert.isAbove(summary.segments, 1, result.stdout)
      assert.isAtMost(summary.segments, 8, result.stdout)
    }))
})

describe.skipIf(skipPostgres)("workers reading over segments through PostgreSQL (end to end)", () => {
  it.scopedLive("a worker killed mid-job (SIGKILL): another takes it over and fetches only the rest", () =>
    withQueue(({ queue, url }) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const size = 8 * MiB
        const bytes = testBytes(size, 99)
        // Paced for both workers, as over a link of limited bandwidth: what the second one fetches
        // is what the checkpoint lacked, not what an unpaced server pushes into socket buffers.
        const server = yield* pacedServer(bytes, 1536 * KiB)
        const flags = ["--lease", "2s", "--checkpoint-every", "2", "--segments", "4", "--min-segment-size", "256KiB"]
        // Both workers are up before the job is queued: whichever claims it is killed, the other takes it over.
        const workers = yield* Effect.forEach(["A", "B"], (name) => startWorker(url, name, flags))
        yield* Effect.forEach(
          workers,
          (worker) => waitFor("the workers to start", () => worker.events().find((e) => e.event === "started"))
        )
        const destination = NodePath.join(dir, "big.bin")
        const job = yield* queue.enqueue(server.url, destination)
        const claimed = yield* waitFor(
          "a worker to claim the job",
          () => workers.flatMap((worker) => worker.events().filter((e) => e.event === "claimed"))[0]
        )
        const first = workers.find((worker) => worker.name === claimed.worker)!
        const second = workers.find((worker) => worker.name !== claimed.worker)!
        const checkpointed = yield* waitFor(
          "half the object sent and a checkpoint saved",
          Effect.map(
            queue.get(job.id),
            (row) => server.bytesSent() >= size / 2 && row.offset !== null ? row : undefined
          ),
          20_000,
          5
        )
        assert.strictEqual(checkpointed.state, "running", "the job is not done yet")
        first.signal("SIGKILL")
        yield* Effect.promise(() => first.exited)
        yield* Effect.sleep("150 millis")
        const before = server.bytesSent()
        const peakOfFirst = server.peakConcurrent()
        const taken = yield* waitFor(
          "the other worker to take the job over",
          Effect.map(queue.get(job.id), (row) => row.owner === second.name ? row : undefined),
          10_000,
          10
        )
        assert.strictEqual(taken.epoch, 2)
        const done = yield* waitFor("the job to be done", () => second.events().find((e) => e.event === "done"), 20_000)
        assert.strictEqual(done.job, job.id)
        assert.isAbove(done["segments"] as number, 1, "the second worker resumed over several connections too")
        assert.deepInclude(yield* queue.get(job.id), { state: "done", owner: second.name, epoch: 2 })
        const written = NodeFs.readFileSync(destination)
        assert.strictEqual(written.byteLength, size)
        assert.strictEqual(sha256(written), sha256(bytes))
        assert.isFalse(exists(`${destination}.partial`))
        const fetchedBySecond = server.bytesSent() - before
        assert.isBelow(fetchedBySecond, size, "the second worker fetched only what the first one's checkpoint lacked")
        assert.isAtLeast(peakOfFirst, 2, "the first worker fetched over several connections")
        assert.isUndefined(first.events().find((e) => e.event === "done"), "the killed worker never completes the job")
        console.info(
          `worker takeover over segments: checkpoint offset ${checkpointed.offset} at the kill, ` +
            `the second worker fetched ${fetchedBySecond} of ${size}`
        )
      })
    ))
})
