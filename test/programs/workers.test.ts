import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { Job } from "../../src/services/JobQueue.js"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { runCli } from "../support/cli.js"
import { tempDir, testBytes, writeFile } from "../support/files.js"
import { makeTestServer, unusedPort } from "../support/httpServer.js"
import { postgresUrl, skipPostgres, wrongPasswordUrl } from "../support/postgres.js"
import { startWorker, waitFor, withQueue } from "../support/workers.js"

const sizeOf = (path: string) => {
  try {
    return NodeFs.statSync(path).size
  } catch {
    return 0
  }
}

const sameBytes = (path: string, bytes: Uint8Array) => NodeFs.readFileSync(path).equals(Buffer.from(bytes))

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

describe.skipIf(skipPostgres)("workers sharing jobs through PostgreSQL (end to end)", () => {
  it.scopedLive("three workers copy 30 faulty HTTP sources: byte-exact, each job completed exactly once", () =>
    withQueue(({ queue, url }) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const sources = yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            const bytes = testBytes(256 * KiB + i * 16 * KiB, 100 + i)
            // Every connection drops part-way, and the first requests are refused with 503.
            const server = yield* makeTestServer({ body: bytes, etag: `"o${i}"`, dropAfter: 96 * KiB + i * KiB })
            server.failNext(1 + (i % 2), 503, { "Retry-After": "0" })
            const destination = NodePath.join(dir, `object-${i}.bin`)
            const job = yield* queue.enqueue(server.url(), destination)
            return { bytes, destination, job }
          }))
        const startedAt = Date.now()
        const workers = yield* Effect.forEach(["w1", "w2", "w3"], (name) =>
          startWorker(url, name, ["--concurrency", "2", "--lease", "5s", "--checkpoint-every", "1"]))
        yield* waitFor(
          "every job done",
          Effect.map(queue.list, (jobs) => {
            const failed = jobs.find((job) =>
              job.state === "failed"
            )
            assert.isUndefined(failed, `job ${failed?.id} failed: ${failed?.lastError}`)
            return jobs.every((job) => job.state === "done") ? jobs : undefined
          }),
          60_000,
          50
        )
        const elapsed = Date.now() - startedAt
        for (const worker of workers) worker.signal("SIGTERM")
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.exited)))

        for (const { bytes, destination, job } of sources) {
          assert.isTrue(sameBytes(destination, bytes), `job ${job.id}: ${destination} is byte-exact`)
        }
        const done = workers.flatMap((w) => w.events().filter((e) => e.event === "done"))
        const completions = new Map<number, number>()
        for (const event of done) completions.set(event.job, (completions.get(event.job) ?? 0) + 1)
        assert.deepStrictEqual(
          [...completions.entries()].sort(([a], [b]) => a - b),
          sources.map(({ job }) => [job.id, 1] as [number, number]),
          "each job completed exactly once"
        )
        const byWorker = workers.map((w) => w.events().filter((e) => e.event === "done").length)
        assert.isAtLeast(byWorker.filter((n) => n > 0).length, 2, "the jobs were shared")
        const jobs = yield* queue.list
        assert.isTrue(jobs.every((job: Job) => job.state === "done" && job.offset === null))
        console.info(`30 faulty jobs, 3 workers × 2: ${seconds(elapsed)}; done per worker: ${byWorker.join(", ")}`)
      })
    ))

  it.scopedLive("a worker killed mid-job (SIGKILL): another takes the job over within the lease, output byte-exact", () =>
    withQueue(({ queue, url }) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(8 * MiB, 7)
        const server = yield* makeTestServer({ body: bytes, etag: "\"big\"" })
        const destination = NodePath.join(dir, "big.bin")
        const job = yield* queue.enqueue(server.url(), destination)
        const lease = ["--lease", "2s", "--checkpoint-every", "1"]
        const a = yield* startWorker(url, "A", [...lease, "--rate", "2MiB/s"])
        yield* waitFor("A to claim the job", () => a.events().find((e) => e.event === "claimed"))
        const b = yield* startWorker(url, "B", lease)
        yield* waitFor("B to start", () => b.events().find((e) => e.event === "started"))
        yield* waitFor("A to write 2 MiB", () => sizeOf(`${destination}.partial`) >= 2 * MiB ? true : undefined)
        const killedAt = Date.now()
        a.signal("SIGKILL")
        yield* Effect.promise(() => a.exited)
        const taken = yield* waitFor(
          "B to take the job over",
          Effect.map(queue.get(job.id), (row) => row.owner === "B" ? row : undefined),
          10_000,
          10
        )
        const claimed = yield* waitFor("B's claim event", () => b.events().find((e) => e.event === "claimed"))
        const takeoverMs = Date.parse(claimed.at) - killedAt
        const done = yield* waitFor("B to finish", () => b.events().find((e) => e.event === "done"))
        assert.deepInclude(yield* queue.get(job.id), { state: "done", owner: "B", epoch: 2 })
        assert.strictEqual(taken.epoch, 2)
        // The lease ends at most 2 s after the kill; then B's next poll (100 ms) claims it. Slack for a loaded machine.
        assert.isTrue(sameBytes(destination, bytes))
        assert.isAbove(done["resumedFrom"] as number, 0, "B resumed from A's checkpoint")
        console.info(`takeover after SIGKILL: ${seconds(takeoverMs)} (lease 2 s), resumed from ${done["resumedFrom"]}`)
      })
    ))

  it.scopedLive("a worker paused past its lease (SIGSTOP) writes nothing more once resumed: LeaseLost", () =>
    withQueue(({ queue, url }) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const bytes = testBytes(4 * MiB, 9)
        const server = yield* makeTestServer({ body: bytes, etag: "\"paused\"" })
        const destination = NodePath.join(dir, "paused.bin")
        const job = yield* queue.enqueue(server.url(), destination)
        const lease = ["--lease", "2s", "--checkpoint-every", "1"]
        // A writes one 64 KiB chunk every 250 ms, so it can be paused between two writes rather
        // than with a write already handed to the kernel (which no check in A could take back).
        const fixedChunks = ["--chunk-size", "64KiB", "--min-chunk", "64KiB", "--max-chunk", "64KiB"]
        const a = yield* startWorker(url, "A", [...lease, ...fixedChunks, "--rate", "256KiB/s"])
        yield* waitFor("A to claim the job", () => a.events().find((e) => e.event === "claimed"))
        const b = yield* startWorker(url, "B", lease)
        yield* waitFor("B to start", () => b.events().find((e) => e.event === "started"))
        const partial = `${destination}.partial`
        yield* waitFor("A to write 512 KiB", () => sizeOf(partial) >= 512 * KiB ? sizeOf(partial) : undefined)
        const before = sizeOf(partial)
        yield* waitFor("A's next write", () => sizeOf(partial) > before ? true : undefined, 5_000, 1)
        yield* Effect.sleep("60 millis")
        const stoppedAt = Date.now()
        a.signal("SIGSTOP")
        const taken = yield* waitFor(
          "B to take the job over",
          Effect.map(queue.get(job.id), (row) => row.owner === "B" ? row : undefined),
          10_000,
          10
        )
        const claimedByB = yield* waitFor("B's claim event", () => b.events().find((e) => e.event === "claimed"))
        const takeoverMs = Date.parse(claimedByB.at) - stoppedAt
        yield* waitFor("B to finish", () => b.events().find((e) => e.event === "done"))
        assert.isTrue(sameBytes(destination, bytes))
        const finished = NodeFs.statSync(destination)

        a.signal("SIGCONT")
        const lost = yield* waitFor(
          "A to report the lost lease",
          () => a.events().find((e) => e.event === "lease-lost"),
          10_000
        )
        // Give a stale write every chance to land before looking.
        yield* Effect.sleep("300 millis")
        assert.deepInclude(lost, { job: job.id, epoch: 1, worker: "A" })
        assert.isUndefined(a.events().find((e) => e.event === "done"), "A never completes the job")
        const after = NodeFs.statSync(destination)
        assert.strictEqual(after.size, bytes.length)
        assert.strictEqual(after.mtimeMs, finished.mtimeMs, "A wrote nothing after it resumed")
        assert.isTrue(sameBytes(destination, bytes))
        const row = yield* queue.get(job.id)
        assert.deepInclude(row, { state: "done", owner: "B", epoch: 2 })
        assert.strictEqual(taken.epoch, 2)
        console.info(`takeover after SIGSTOP: ${seconds(takeoverMs)} (lease 2 s); A stopped by: ${lost["by"]}`)
      })
    ))

  it.scopedLive("enqueue, jobs, and SIGTERM: the job is handed back with its checkpoint and resumed by the next worker", () =>
    withQueue(({ url }) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const small = testBytes(512 * KiB, 3)
        const big = testBytes(6 * MiB, 4)
        const smallPath = writeFile(dir, "small.bin", small)
        const bigPath = writeFile(dir, "big.bin", big)
        const outDir = NodePath.join(dir, "out")
        const enqueued = yield* Effect.promise(() =>
          runCli(["enqueue", smallPath, bigPath, "--out-dir", outDir, "--postgres", url])
        )
        assert.strictEqual(enqueued.code, 0, enqueued.stderr)
        assert.deepStrictEqual(enqueued.stdout.trim().split("\n"), [
          `job 1: ${smallPath} -> ${NodePath.join(outDir, "small.bin")}`,
          `job 2: ${bigPath} -> ${NodePath.join(outDir, "big.bin")}`
        ])
        const listed = yield* Effect.promise(() => runCli(["jobs", "--postgres", url]))
        assert.strictEqual(listed.code, 0, listed.stderr)
        const lines = listed.stdout.trim().split("\n")
        assert.match(lines[0]!, /^ID\s+STATE\s+OWNER\s+EPOCH\s+OFFSET\s+ATTEMPTS\s+SOURCE\s+LAST ERROR$/)
        assert.match(lines[1]!, /^1\s+queued\s+-\s+0\s+-\s+0\s+/)
        assert.strictEqual(lines.length, 3)

        const a = yield* startWorker(url, "A", ["--rate", "2MiB/s", "--checkpoint-every", "1", "--concurrency", "1"])
        const bigOut = NodePath.join(outDir, "big.bin")
        const bigPartial = `${bigOut}.partial`
        yield* waitFor("A to be part-way through big.bin", () => sizeOf(bigPartial) >= 1 * MiB ? true : undefined)
        a.signal("SIGTERM")
        const exit = yield* Effect.promise(() => a.exited)
        assert.strictEqual(exit, 143)
        assert.isFalse(NodeFs.existsSync(bigOut), "an unfinished copy never sits at the final path")
        assert.isDefined(a.events().find((e) => e.event === "released" && e.job === 2))
        const handedBack = yield* Effect.promise(() => runCli(["jobs", "2", "--json", "--postgres", url]))
        const row = JSON.parse(handedBack.stdout) as Job
        assert.deepInclude(row, { state: "queued", owner: null, attempts: 0, epoch: 1 })
        assert.isAbove(row.offset!, 0, "the checkpoint is kept")
        // The checkpoint never runs ahead of the output; it may lag by the one chunk written
        // but not yet acknowledged when the signal came (the resume cuts the output back to it).
        assert.isAtMost(row.offset!, sizeOf(bigPartial), "the last checkpoint vouches only for bytes written")
        assert.isAtMost(sizeOf(bigPartial) - row.offset!, 256 * KiB, "at most one chunk is read again")

        const b = yield* startWorker(url, "B")
        yield* waitFor("B to finish big.bin", () => b.events().find((e) => e.event === "done" && e.job === 2))
        assert.strictEqual(b.events().find((e) => e.event === "done")!["resumedFrom"], row.offset)
        assert.isTrue(sameBytes(bigOut, big))
        assert.isTrue(sameBytes(NodePath.join(outDir, "small.bin"), small))
      })
    ))

  it.scopedLive("a job with bad input fails with its error; a source that keeps failing goes back to the queue", () =>
    withQueue(({ queue, url }) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const server = yield* makeTestServer({ body: testBytes(64 * KiB, 5) })
        server.failNext(1000, 503)
        const missing = yield* queue.enqueue(NodePath.join(dir, "no-such-file.bin"), NodePath.join(dir, "out", "a.bin"))
        const flaky = yield* queue.enqueue(server.url(), NodePath.join(dir, "out", "b.bin"))
        const worker = yield* startWorker(url, "A", ["--retries", "1"])
        const [failed, requeued] = yield* waitFor(
          "both jobs to end their first attempt",
          Effect.map(
            Effect.all([queue.get(missing.id), queue.get(flaky.id)]),
            ([a, b]) => a.state === "failed" && b.attempts >= 1 ? [a, b] as const : undefined
          )
        )
        assert.deepInclude(failed, { state: "failed", attempts: 1, owner: "A" })
        assert.match(failed.lastError!, /no-such-file\.bin/)
        assert.strictEqual(requeued.lastError?.includes("503"), true, requeued.lastError ?? "no error")
        assert.isAtLeast(requeued.attempts, 1)
        // The queue records an outcome before the worker prints its event line.
        yield* waitFor("the worker's events", () => {
          const events = worker.events()
          return events.some((e) => e.event === "failed" && e.job === missing.id) &&
              events.some((e) => e.event === "requeued" && e.job === flaky.id && e["attempts"] === 1)
            ? true
            : undefined
        })
      })
    ))

  it.scopedLive("bad input: unreachable database, wrong password, bad URL, unknown job id: exit 2 and one line", () =>
    withQueue(({ url }) =>
      Effect.gen(function*() {
        const port = yield* unusedPort
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
          [["jobs", "--postgres", `postgres://reader:hunter2@127.0.0.1:${port}/jobs`], /ECONNREFUSED/],
          [["worker", "--postgres", `postgres://reader:hunter2@127.0.0.1:${port}/jobs`], /ECONNREFUSED/],
          [
            ["enqueue", "/data/a.bin", "--out-dir", "/tmp", "--postgres", wrongPasswordUrl(url)],
            /password authentication failed/
          ],
          [["jobs", "--postgres", "mysql://reader:hunter2@db/jobs"], /unsupported scheme mysql:/],
          [["jobs", "4242", "--postgres", url], /no job with id 4242/]
        ]
        const results = yield* Effect.forEach(cases, ([args]) => Effect.promise(() => runCli(args)), { concurrency: 5 })
        results.forEach((result, i) => {
          const [args, pattern] = cases[i]!
          assert.strictEqual(result.code, 2, `${args.join(" ")}: ${result.stderr}`)
          const lines = result.stderr.trim().split("\n")
          assert.strictEqual(lines.length, 1, result.stderr)
          assert.match(lines[0]!, /^streaming-reader: /)
          assert.match(lines[0]!, pattern)
          assert.notInclude(result.stderr, "hunter2")
          assert.notInclude(result.stderr, "certainly-not-the-password")
          assert.notInclude(result.stderr, new URL(postgresUrl!).password)
        })
      })
    ))
})
