import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { createHash, randomInt } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { cliEntry } from "../support/cli.js"
import { tempDir } from "../support/files.js"
import type { HostileServer } from "../support/hostileServer.js"
import { makeHostileServer } from "../support/hostileServer.js"

// `FUZZ_SEED=<n>` replays a run; otherwise each run draws new schedules.
const baseSeed = process.env["FUZZ_SEED"] === undefined ? randomInt(1, 2 ** 31) : Number(process.env["FUZZ_SEED"])
const batches = 5
const sourcesPerBatch = 12
const singles = 2
const killAfterMs = 20_000

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly killed: boolean
}

// Runs the built command line, killed (and reported as such) when it outlives `killAfterMs`.
const runBounded = (args: ReadonlyArray<string>, cwd: string) =>
  Effect.async<Run>((resume) => {
    const child = spawn(process.execPath, [cliEntry, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      child.kill("SIGKILL")
    }, killAfterMs)
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("close", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, stdout, stderr, killed }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const options = ["--json", "--quiet", "--retries", "3", "--stall-timeout", "2s", "--checkpoint-every", "1"]

const report = (server: HostileServer, run: Run, why: string) =>
  [
    `seed ${server.seed} (replay the run with FUZZ_SEED=${baseSeed}): ${why}`,
    `exit ${run.code}; stderr: ${run.stderr.trim()}`,
    ...server.answers().map(({ answer, request }, i) => `  ${i + 1}. ${request} -> ${answer}`)
  ].join("\n")

interface Summary {
  readonly source: string
  readonly bytes: number
  readonly sha256: string
}

// The sources a run reports done, by URL; each must be the object byte for byte.
const judge = (run: Run, servers: ReadonlyArray<HostileServer>, outputOf: (server: HostileServer) => string) => {
  const first = servers[0]!
  assert.isFalse(run.killed, report(first, run, `the command line hung (killed after ${killAfterMs} ms)`))
  assert.isNotNull(run.code, report(first, run, "the command line died of a signal"))
  const done = new Map<string, Summary>()
  for (const line of run.stdout.split("\n").filter((text) => text.trim() !== "")) {
    assert.isTrue(line.startsWith("{"), report(first, run, `a line on stdout that is not a --json summary: ${line}`))
    const summary = JSON.parse(line) as Summary
    done.set(summary.source, summary)
  }
  for (const server of servers) {
    const summary = done.get(server.url)
    if (run.code === 0) assert.isDefined(summary, report(server, run, "exit 0 without a summary for this source"))
    if (summary === undefined) continue
    const output = NodeFs.readFileSync(outputOf(server))
    assert.strictEqual(output.length, server.object.length, report(server, run, "reported done with a wrong length"))
    assert.isTrue(output.equals(server.object), report(server, run, "reported done with wrong bytes"))
    assert.strictEqual(summary.bytes, server.object.length, report(server, run, "wrong byte count in --json"))
    assert.strictEqual(summary.sha256, sha256(server.object), report(server, run, "wrong sha256 in --json"))
  }
  return servers.filter((server) => done.has(server.url))
}

describe("fuzz: the command line against hostile servers", () => {
  it.live(
    `never exits 0 with a wrong output, never hangs (base seed ${baseSeed})`,
    () =>
      Effect.gen(function*() {
        // Many sources in one process (`--out-dir`), then a second run that resumes those that failed.
        const batch = (index: number) =>
          Effect.scoped(Effect.gen(function*() {
            const dir = yield* tempDir
            const outDir = NodePath.join(dir, "out")
            const state = NodePath.join(dir, "state.db")
            const servers = yield* Effect.forEach(
              Array.from({ length: sourcesPerBatch }, (_, i) => baseSeed + index * sourcesPerBatch + i),
              makeHostileServer
            )
            const outputOf = (server: HostileServer) => NodePath.join(outDir, `o${server.seed}.bin`)
            const args = (of: ReadonlyArray<HostileServer>) => [
              "read",
              ...of.map((server) => server.url),
              "--out-dir",
              outDir,
              "--state",
              state,
              "--concurrency",
              String(sourcesPerBatch),
              ...options
            ]
            const first = yield* runBounded(args(servers), dir)
            const doneFirst = judge(first, servers, outputOf)
            const rest = servers.filter((server) => !doneFirst.includes(server))
            if (rest.length === 0) return servers.length
            const second = yield* runBounded(args(rest), dir)
            return doneFirst.length + judge(second, rest, outputOf).length
          }))

        // One source with `--out`, where the exit code alone says whether the copy is done.
        const single = (index: number) =>
          Effect.scoped(Effect.gen(function*() {
            const dir = yield* tempDir
            const server = yield* makeHostileServer(baseSeed + batches * sourcesPerBatch + index)
            const out = NodePath.join(dir, "copy.bin")
            const run = yield* runBounded([
              "read",
              server.url,
              "--out",
              out,
              "--state",
              NodePath.join(dir, "s.db"),
              ...options
            ], dir)
            return judge(run, [server], () => out).length
          }))

        const done = yield* Effect.all(
          [
            ...Array.from({ length: batches }, (_, i) => batch(i)),
            ...Array.from({ length: singles }, (_, i) => single(i))
          ],
          { concurrency: 2 }
        )
        const schedules = batches * sourcesPerBatch + singles
        const finished = done.reduce((sum, n) => sum + n, 0)
        // Most schedules leave an honest answer often enough to finish: a fuzz that never finishes proves nothing.
        assert.isAtLeast(finished, Math.floor(schedules / 4), `only ${finished} of ${schedules} schedules finished`)
      }),
    120_000
  )
})
