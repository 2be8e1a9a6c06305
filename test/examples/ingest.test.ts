import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { tempDir } from "../support/files.js"

const repoRoot = NodePath.resolve(import.meta.dirname, "../..")
const example = NodePath.join(repoRoot, "examples/ingest-to-sqlite.ts")

/** One record of the generated source as the table should hold it. */
interface Expected {
  readonly offset: number
  readonly id: number
  readonly name: string
  readonly cents: number
}

/** Names with multi-byte characters, so chunk boundaries also fall inside a character. */
const names = ["alice", "Zoë", "Łukasz", "名前", "bob", "Ærøskøbing", "carol-ann", "😀smile"]

/**
 * A CSV source of `count` records (a header, a few `\r\n` line ends and blank lines, the last
 * record without its newline) and the rows it must give, keyed by byte offset.
 */
const makeSource = (count: number) => {
  const parts: Array<Buffer> = []
  const expected: Array<Expected> = []
  let offset = 0
  const push = (text: string) => {
    const bytes = Buffer.from(text, "utf8")
    parts.push(bytes)
    offset += bytes.length
  }
  push("id,name,amount\n")
  for (let i = 0; i < count; i++) {
    const id = i * 7 + 3
    const name = `${names[i % names.length]}${i % 13}`
    const cents = ((i * 7919) % 2_000_001) - 1_000_000
    const sign = cents < 0 ? "-" : ""
    const amount = `${sign}${Math.floor(Math.abs(cents) / 100)}.${String(Math.abs(cents) % 100).padStart(2, "0")}`
    expected.push({ offset, id, name, cents })
    const end = i === count - 1 ? "" : i % 101 === 0 ? "\r\n" : "\n"
    push(`${id},${name},${amount}${end}`)
    if (i % 997 === 0 && i !== count - 1) push("\n")
  }
  return { bytes: Buffer.concat(parts), expected }
}

/** The sha256 of rows in offset order, one line each. */
const digest = (rows: Iterable<Expected>) => {
  const hash = createHash("sha256")
  for (const row of rows) hash.update(`${row.offset}|${row.id}|${row.name}|${row.cents}\n`)
  return hash.digest("hex")
}

/** What a finished run of the example printed and how it ended. */
interface RunResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Starts the example as a child process; it is killed with the scope if still running. */
const startExample = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["--import", "tsx", example, ...args], {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      const exited = new Promise<RunResult>((resolve, reject) => {
        child.on("error", reject)
        child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
      })
      const kill = () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      }
      return { kill, exited: Effect.promise(() => exited), stderr: () => stderr }
    }),
    (child) => Effect.sync(child.kill)
  )

/** Runs the example to its end. */
const runExample = (args: ReadonlyArray<string>) =>
  Effect.scoped(Effect.flatMap(startExample(args), (child) => child.exited))

/** A connection to the example's database, to watch it while the example writes. */
const openDatabase = (filename: string) =>
  SqliteClient.make({ filename, disableWAL: true }).pipe(Effect.provide(Reactivity.layer))

/** What the database holds at one moment. */
interface DbState {
  readonly rows: number
  /** The saved checkpoint's offset; undefined when there is none. */
  readonly checkpoint: number | undefined
  /** Rows at or after the checkpoint: committed but not yet covered by it. */
  readonly beyondCheckpoint: number
}

const tablesReady = (sql: SqlClient) =>
  Effect.map(
    sql<{ readonly n: number }>`SELECT count(*) AS n FROM sqlite_master WHERE name IN ('records', 'checkpoints')`,
    (rows) => rows[0]?.n === 2
  )

const stateOf = (sql: SqlClient) =>
  Effect.gen(function*() {
    const rows = (yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM records`)[0]?.n ?? 0
    const checkpoints = yield* sql<{ readonly byte_offset: number }>`SELECT byte_offset FROM checkpoints`
    assert.isAtMost(checkpoints.length, 1, "one checkpoint for the one source")
    const checkpoint = checkpoints[0]?.byte_offset
    const beyond = checkpoint === undefined
      ? rows
      : (yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM records WHERE source_offset >= ${checkpoint}`)[0]
        ?.n ?? 0
    const state: DbState = { rows, checkpoint, beyondCheckpoint: beyond }
    return state
  }).pipe(Effect.orDie)

/** Polls (real time, at most 40 s: a loaded machine starts the example slowly) until `ready` holds for the database's state, and returns that state. */
const waitFor = (what: string, database: string, ready: (state: DbState) => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 40_000
    // The example switches the file to WAL mode first; a connection opened before that could hold it up.
    while (!NodeFs.existsSync(`${database}-wal`)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${database}`)
      yield* Effect.sleep(20)
    }
    const sql = yield* openDatabase(database)
    while (true) {
      if (yield* Effect.orDie(tablesReady(sql))) {
        const state = yield* stateOf(sql)
        if (ready(state)) return state
      }
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep(20)
    }
  }).pipe(Effect.scoped)

/** The database's state now. */
const stateNow = (database: string) => Effect.scoped(Effect.flatMap(openDatabase(database), stateOf))

/** Every row of the table, in offset order. */
const allRows = (database: string) =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* openDatabase(database)
    const rows = yield* sql<{
      readonly source_offset: number
      readonly id: number
      readonly name: string
      readonly amount_cents: number
    }>`SELECT source_offset, id, name, amount_cents FROM records ORDER BY source_offset`
    const sums = yield* sql<{ readonly n: number; readonly ids: number; readonly cents: number }>`
      SELECT count(*) AS n, sum(id) AS ids, sum(amount_cents) AS cents FROM records`
    return {
      rows: rows.map((row): Expected => ({
        offset: row.source_offset,
        id: row.id,
        name: row.name,
        cents: row.amount_cents
      })),
      sums: sums[0]!
    }
  })).pipe(Effect.orDie)

/** The numbers of the example's summary line. */
const parseSummary = (stdout: string) => {
  const match = /inserted (\d+) rows \((\d+) already present\), resumed from byte (\d+), (\d+) rows in the table/.exec(
    stdout
  )
  assert.isNotNull(match, `no summary line in ${JSON.stringify(stdout)}`)
  const [, inserted, present, resumedFrom, total] = match!.map(Number) as [number, number, number, number, number]
  return { inserted, present, resumedFrom, total }
}

/** Kills the run when the database holds a checkpoint past `after` and rows committed beyond it; returns the state after the kill. */
const killPartWay = (database: string, args: ReadonlyArray<string>, after: number) =>
  Effect.scoped(Effect.gen(function*() {
    const child = yield* startExample(args)
    yield* waitFor(
      `a checkpoint past byte ${after} with rows committed beyond it`,
      database,
      (state) => state.checkpoint !== undefined && state.checkpoint > after && state.beyondCheckpoint > 0
    )
    child.kill()
    const killed = yield* child.exited
    assert.strictEqual(killed.signal, "SIGKILL", `the run ended before it was killed: ${killed.stdout}${killed.stderr}`)
    assert.strictEqual(killed.stdout, "", "a killed run prints no summary")
    return { state: yield* stateNow(database), stderr: killed.stderr }
  }))

/** Checks a state left by a kill: partial, and everything before the checkpoint is in the table. */
const assertPartial = (
  state: DbState,
  source: { readonly bytes: Buffer; readonly expected: ReadonlyArray<Expected> },
  rowsBefore: (offset: number) => number
) => {
  assert.isDefined(state.checkpoint)
  const checkpoint = state.checkpoint!
  assert.isAbove(checkpoint, 0)
  assert.isBelow(checkpoint, source.bytes.length, "the checkpoint is part-way")
  assert.isBelow(state.rows, source.expected.length, "the table is partial")
  assert.strictEqual(source.bytes[checkpoint - 1], 0x0a, "the checkpoint is at the start of a line")
  assert.isAbove(state.beyondCheckpoint, 0, "rows were committed after the checkpoint (they will be read again)")
  assert.strictEqual(
    state.rows - state.beyondCheckpoint,
    rowsBefore(checkpoint),
    "every record before the checkpoint is in the table"
  )
}

/** Checks the table holds every record of the source exactly once, with its fields. */
const assertComplete = (database: string, expected: ReadonlyArray<Expected>) =>
  Effect.gen(function*() {
    const { rows, sums } = yield* allRows(database)
    assert.strictEqual(rows.length, expected.length)
    assert.strictEqual(sums.n, expected.length)
    assert.strictEqual(sums.ids, expected.reduce((total, row) => total + row.id, 0))
    assert.strictEqual(sums.cents, expected.reduce((total, row) => total + row.cents, 0))
    assert.deepStrictEqual(rows.slice(0, 3), expected.slice(0, 3))
    assert.deepStrictEqual(rows.slice(-3), expected.slice(-3))
    assert.strictEqual(digest(rows), digest(expected))
    const state = yield* stateNow(database)
    assert.strictEqual(state.checkpoint, undefined, "the checkpoint is deleted once the source is done")
  })

describe("examples/ingest-to-sqlite (end to end)", () => {
  const records = 200_000
  const source = makeSource(records)
  const offsets = source.expected.map((row) => row.offset)
  /** How many records start before `offset`. */
  const rowsBefore = (offset: number) => {
    let low = 0
    let high = offsets.length
    while (low < high) {
      const mid = (low + high) >>> 1
      if (offsets[mid]! < offset) low = mid + 1
      else high = mid
    }
    return low
  }
  const slow = ["--batch", "400", "--rate", "1000000"]

  it.scopedLive(
    "killed twice at different points, then resumed: every record in the table exactly once",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const input = NodePath.join(dir, "records.csv")
        NodeFs.writeFileSync(input, source.bytes)
        const database = NodePath.join(dir, "ingest.sqlite")

        const first = yield* killPartWay(database, [input, database, ...slow], 0)
        assertPartial(first.state, source, rowsBefore)
        const second = yield* killPartWay(database, [input, database, ...slow], first.state.checkpoint!)
        assertPartial(second.state, source, rowsBefore)
        assert.include(
          second.stderr,
          `from byte ${first.state.checkpoint}`,
          "the second run resumed from the first kill's checkpoint"
        )
        assert.isAbove(second.state.rows, first.state.rows)

        const done = yield* runExample([input, database, "--batch", "1000"])
        assert.strictEqual(done.code, 0, done.stderr)
        const summary = parseSummary(done.stdout)
        assert.strictEqual(summary.resumedFrom, second.state.checkpoint)
        assert.strictEqual(summary.present, second.state.beyondCheckpoint)
        assert.strictEqual(summary.inserted, records - second.state.rows)
        yield* assertComplete(database, source.expected)
      }),
    90_000
  )

  it.scopedLive(
    "refuses a malformed record with one line naming its byte offset, keeping what came before",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const input = NodePath.join(dir, "bad.csv")
        NodeFs.writeFileSync(input, "1,a,1.00\n2,b,2.5\n3,c,three\n4,d,4\n")
        const database = NodePath.join(dir, "bad.sqlite")
        const failed = yield* runExample([input, database, "--batch", "1"])
        assert.strictEqual(failed.code, 1)
        assert.strictEqual(failed.stdout, "")
        assert.include(
          failed.stderr,
          "ingest-to-sqlite: malformed record at byte 17: amount \"three\" is not a decimal"
        )
        const { rows } = yield* allRows(database)
        assert.deepStrictEqual(rows, [
          { offset: 0, id: 1, name: "a", cents: 100 },
          { offset: 9, id: 2, name: "b", cents: 250 }
        ])
        const state = yield* stateNow(database)
        assert.strictEqual(state.checkpoint, 17, "the failed read saved what was acknowledged")

        const other = NodePath.join(dir, "other.csv")
        NodeFs.writeFileSync(other, "5,e,5\n")
        const refused = yield* runExample([other, database])
        assert.strictEqual(refused.code, 1)
        assert.include(refused.stderr, `holds the records of ${input}, not ${other}`)
        assert.deepStrictEqual(yield* stateNow(database), state, "a refused source changes nothing")
      }),
    90_000
  )
})
