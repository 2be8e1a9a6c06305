/**
 * Ingests newline-delimited records (`id,name,amount` lines) from a file or an HTTP(S) URL into
 * a SQLite table, in batches, resumably: kill it at any point (`kill -9`, a power cut), run the
 * same command again, and the table ends up holding every record of the source exactly once.
 *
 *   npx tsx examples/ingest-to-sqlite.ts <source file or URL> <database.sqlite> [--batch N] [--rate BYTES_PER_SEC]
 *
 * The reader's checkpoints live in the same database file (the library's SQLite checkpoint
 * store, table `checkpoints`), kept under this database's `records` table as destination.
 *
 * Why no record is lost or stored twice:
 *
 * - Acknowledged implies durable. Records are inserted in batches of `--batch` rows, one SQLite
 *   transaction per batch, and only after a batch has committed does the program call
 *   `session.acknowledge(end)`, with `end` the byte just after the last record of that batch.
 *   A checkpoint records only acknowledged bytes, so every byte before a checkpoint belongs to
 *   a committed record (or a blank line or the header): a resume, which starts at the
 *   checkpoint, skips nothing that is not already in the table.
 * - Re-reading is idempotent. Checkpoints are saved only every few chunks, so a crash can come
 *   after a batch committed and before a checkpoint covering it was saved; the resumed run then
 *   reads those records again. Each row's primary key is the record's byte offset in the source,
 *   and rows go in with `INSERT ... ON CONFLICT DO NOTHING`, so a record read again finds its row
 *   and adds nothing. Together: at least once (first point), at most once (second), so exactly once.
 * - A resume starts on a record boundary. Acknowledged offsets are always the end of a whole
 *   line, so a resumed read begins at the first byte of a record even when that byte is in the
 *   middle of a chunk; a record cut by a chunk boundary is carried over and parsed whole.
 *
 * The last record may lack its newline; it is inserted at the end of the source. One database
 * holds the records of one source (a different source is refused). Fields are plain: no quoting,
 * `id` an integer, `amount` a decimal with at most two places (stored as integer cents); a line
 * `id,name,amount` at byte 0 is a header and skipped, blank lines are skipped, `\r\n` is accepted.
 * On success it prints one summary line on stdout; a failure is one line on stderr and exit 1.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Cause, Console, Data, Effect, Layer, Stream } from "effect"
import * as NodePath from "node:path"
import { parseArgs } from "node:util"
import { EnhancedStack, parseSize, PlatformLive, redactUrl, StreamingReader } from "../src/index.js"
import type { SourceChunk } from "../src/index.js"

/** A line of the source that is not a valid `id,name,amount` record. */
class MalformedRecord extends Data.TaggedError("MalformedRecord")<{
  readonly offset: number
  readonly reason: string
}> {
  override get message() {
    return `malformed record at byte ${this.offset}: ${this.reason}`
  }
}

/** The database already holds the records of another source. */
class OtherSource extends Data.TaggedError("OtherSource")<{
  readonly database: string
  readonly holds: string
  readonly source: string
}> {
  override get message() {
    return `${this.database} holds the records of ${this.holds}, not ${this.source}; use another database`
  }
}

/** One record as stored: its byte offset in the source (the key) and its fields. */
type RecordRow = {
  readonly source_offset: number
  readonly id: number
  readonly name: string
  readonly amount_cents: number
}

/** What one run did, for the summary line. */
interface IngestSummary {
  /** Rows this run added to the table. */
  readonly inserted: number
  /** Records this run read that were already in the table (committed before a crash, not yet checkpointed). */
  readonly alreadyPresent: number
  /** The byte the read started from: 0, or the checkpoint it resumed from. */
  readonly resumedFrom: number
  /** The rows in the table at the end. */
  readonly total: number
}

/** How one run is set up. */
interface IngestOptions {
  /** A file path (made absolute) or an http(s) URL. */
  readonly source: string
  /** The database file, absolute. */
  readonly database: string
  /** Rows per transaction. */
  readonly batch: number
  /** A cap on the read rate in bytes per second. */
  readonly rate?: number
}

const header = "id,name,amount"
const idPattern = /^-?\d{1,15}$/
const amountPattern = /^(-?)(\d{1,13})(?:\.(\d{1,2}))?$/
const utf8 = new TextDecoder("utf-8", { fatal: true })
const newline = 0x0a
const carriageReturn = 0x0d

/** Rows per INSERT statement, so that a statement stays well under SQLite's limit of bound parameters. */
const rowsPerStatement = 500

/**
 * Parses the line `bytes` (without its `\n`) found at `offset`: a row, `undefined` for a blank
 * line or the header, or why it is not a record.
 */
const parseRecord = (bytes: Uint8Array, offset: number): RecordRow | undefined | MalformedRecord => {
  const line = bytes.length > 0 && bytes[bytes.length - 1] === carriageReturn ? bytes.subarray(0, -1) : bytes
  if (line.length === 0) return undefined
  let text: string
  try {
    text = utf8.decode(line)
  } catch {
    return new MalformedRecord({ offset, reason: "not UTF-8" })
  }
  if (offset === 0 && text === header) return undefined
  const fields = text.split(",")
  if (fields.length !== 3) return new MalformedRecord({ offset, reason: `${fields.length} fields, expected 3` })
  const [id, name, amount] = fields as [string, string, string]
  if (!idPattern.test(id)) return new MalformedRecord({ offset, reason: `id ${JSON.stringify(id)} is not an integer` })
  const match = amountPattern.exec(amount)
  if (match === null) {
    return new MalformedRecord({ offset, reason: `amount ${JSON.stringify(amount)} is not a decimal` })
  }
  const cents = Number(match[2]) * 100 + Number((match[3] ?? "").padEnd(2, "0"))
  return { source_offset: offset, id: Number(id), name, amount_cents: match[1] === "-" ? -cents : cents }
}

/** The number of rows a write statement changed, from the driver's raw result. */
const changesOf = (result: unknown): number =>
  typeof result === "object" && result !== null && "changes" in result && typeof result.changes === "number"
    ? result.changes
    : 0

/** The source as stored in the database: a URL without its credentials, or the absolute path. */
const sourceName = (source: string): string => {
  if (!/^https?:\/\//i.test(source)) return source
  try {
    return redactUrl(new URL(source))
  } catch {
    return source
  }
}

/** Reads `options.source` into the `records` table of `options.database`, resuming from its checkpoint. */
const ingest = Effect.fn("ingest")(function*(options: IngestOptions) {
  const reader = yield* StreamingReader
  const sql = yield* SqlClient.SqlClient

  yield* sql`CREATE TABLE IF NOT EXISTS records (
    source_offset INTEGER PRIMARY KEY,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    amount_cents INTEGER NOT NULL
  )`
  yield* sql`CREATE TABLE IF NOT EXISTS ingest_source (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    source TEXT NOT NULL
  )`

  // Checked before the read opens, so a refused source leaves no checkpoint behind; claimed
  // once it opened, so a source that cannot be read (a typo) does not claim the database.
  const name = sourceName(options.source)
  const claimedBy = Effect.map(
    sql<{ readonly source: string }>`SELECT source FROM ingest_source`,
    (rows) => rows[0]?.source
  )
  const refuseOther = (holds: string | undefined) =>
    holds === undefined || holds === name
      ? Effect.void
      : Effect.fail(new OtherSource({ database: options.database, holds, source: name }))
  yield* Effect.flatMap(claimedBy, refuseOther)
  const session = yield* reader.open(options.source, {
    destination: `${options.database}#records`,
    ...(options.rate === undefined ? {} : { rate: options.rate })
  })
  yield* sql`INSERT INTO ingest_source (only, source) VALUES (1, ${name}) ON CONFLICT DO NOTHING`
  yield* Effect.flatMap(claimedBy, refuseOther)
  yield* Console.error(`ingest-to-sqlite: reading ${session.source} from byte ${session.startOffset}`)

  /** The bytes of a record not yet ended by a newline, and where they start in the source. */
  let carry: Uint8Array = new Uint8Array(0)
  let carryOffset = session.startOffset
  /** Rows parsed and not yet committed, and the end of the last line they (or skipped lines) cover. */
  let pending: Array<RecordRow> = []
  let pendingEnd = session.startOffset
  let acknowledged = session.startOffset
  let inserted = 0
  let alreadyPresent = 0

  const insertBatch = (rows: ReadonlyArray<RecordRow>) =>
    sql.withTransaction(
      Effect.reduce(
        Array.from({ length: Math.ceil(rows.length / rowsPerStatement) }, (_, i) =>
          rows.slice(i * rowsPerStatement, (i + 1) * rowsPerStatement)),
        0,
        (changed, slice) =>
          Effect.map(
            sql`INSERT INTO records ${sql.insert(slice)} ON CONFLICT (source_offset) DO NOTHING`.raw,
            (result) =>
              changed + changesOf(result)
          )
      )
    )

  /** Commits the pending rows in one transaction, then acknowledges every byte up to `pendingEnd`. */
  const commit = Effect.gen(function*() {
    if (pending.length > 0) {
      const changed = yield* insertBatch(pending)
      inserted += changed
      alreadyPresent += pending.length - changed
      pending = []
    }
    if (pendingEnd > acknowledged) {
      yield* session.acknowledge(pendingEnd)
      acknowledged = pendingEnd
    }
  })

  /** Adds the line `bytes` at `offset`, ending at `end`, to the pending batch; whether the batch is full. */
  const take = (bytes: Uint8Array, offset: number, end: number): boolean | MalformedRecord => {
    const row = parseRecord(bytes, offset)
    if (row instanceof MalformedRecord) return row
    if (row !== undefined) pending.push(row)
    pendingEnd = end
    return pending.length >= options.batch
  }

  const onChunk = (chunk: SourceChunk) =>
    Effect.gen(function*() {
      if (chunk.offset !== carryOffset + carry.length) {
        return yield* Effect.dieMessage(`chunk at byte ${chunk.offset}, expected ${carryOffset + carry.length}`)
      }
      const data = carry.length === 0 ? chunk.bytes : Buffer.concat([carry, chunk.bytes])
      const base = carryOffset
      let start = 0
      for (let at = data.indexOf(newline); at !== -1; at = data.indexOf(newline, start)) {
        const full = take(data.subarray(start, at), base + start, base + at + 1)
        if (full instanceof MalformedRecord) return yield* full
        start = at + 1
        if (full) yield* commit
      }
      // A copy: the tail must outlive the chunk it came from.
      carry = data.slice(start)
      carryOffset = base + start
    })

  yield* Stream.runForEach(session.chunks, onChunk)
  if (carry.length > 0) {
    const last = take(carry, carryOffset, carryOffset + carry.length)
    if (last instanceof MalformedRecord) return yield* last
  }
  yield* commit

  const count = yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM records`
  const summary: IngestSummary = { inserted, alreadyPresent, resumedFrom: session.startOffset, total: count[0]?.n ?? 0 }
  return summary
}, Effect.scoped)

/** The summary line: rows inserted, rows found already there, where the read started, rows in the table. */
const summaryLine = (summary: IngestSummary): string =>
  `ingest-to-sqlite: inserted ${summary.inserted} rows (${summary.alreadyPresent} already present), ` +
  `resumed from byte ${summary.resumedFrom}, ${summary.total} rows in the table`

const usage =
  "usage: npx tsx examples/ingest-to-sqlite.ts <source file or URL> <database.sqlite> [--batch N] [--rate BYTES_PER_SEC]"

/** The options given on the command line, or why they are not usable. */
const parseCommandLine = (argv: ReadonlyArray<string>): IngestOptions | string => {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { batch: { type: "string" }, rate: { type: "string" } }
    })
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  const [source, database, ...rest] = parsed.positionals
  if (source === undefined || database === undefined || rest.length > 0) return usage
  const batch = Number(parsed.values.batch ?? "1000")
  if (!Number.isSafeInteger(batch) || batch < 1) return `--batch must be a positive integer, got ${parsed.values.batch}`
  const rateText = parsed.values.rate?.replace(/\/s$/i, "")
  const rate = rateText === undefined ? undefined : parseSize(rateText)
  if (rateText !== undefined && (rate === undefined || rate < 1)) {
    return `--rate must be a byte count per second (e.g. 500000 or 2MiB), got ${parsed.values.rate}`
  }
  return {
    source: /^https?:\/\//i.test(source) ? source : NodePath.resolve(source),
    database: NodePath.resolve(database),
    batch,
    ...(rate === undefined ? {} : { rate })
  }
}

/** The first line of a failure's message. */
const failureLine = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const text = error instanceof Error ? error.message : String(error)
  return text.split("\n")[0] ?? text
}

const options = parseCommandLine(process.argv.slice(2))
if (typeof options === "string") {
  process.stderr.write(`ingest-to-sqlite: ${options}\n`)
  process.exit(2)
}

// The checkpoint store migrates its table under a write lock; better-sqlite3 waits for a lock by
// blocking the event loop, so the records' client opens only once the store is built.
const MainLive = SqliteClient.layer({ filename: options.database }).pipe(
  Layer.provideMerge(EnhancedStack({ statePath: options.database })),
  Layer.provide(PlatformLive)
)

ingest(options).pipe(
  Effect.flatMap((summary) => Console.log(summaryLine(summary))),
  Effect.provide(MainLive),
  Effect.tapErrorCause((cause) =>
    Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(`ingest-to-sqlite: ${failureLine(cause)}`)
  ),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
