/**
 * The file destination: where a copy writes. It refuses outputs that are the source or are not
 * regular files, holds a lock so there is one writer per output, writes into a partial file
 * beside the output, records its own identity at each checkpoint so a resume only builds on
 * bytes it wrote, and renames the partial file into place only when the copy is complete and
 * verified.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { Checkpoint, OutputCheck } from "../services/CheckpointStore.js"
import { errorCode as errnoCode, fileSystemReason } from "./SystemErrors.js"

/** The partial file of an output `<out>` is `<out>.partial`. */
export const partialSuffix = ".partial"

/** The lock of an output `<out>` is `<out>.lock`: the process that writes it. */
export const lockSuffix = ".lock"

/** How many bytes before a checkpoint's offset its output check hashes. */
export const tailCheckBytes = 64 * 1024

/** The output cannot be used: it could not be opened or written, or it must not be touched. */
export class OutputFailed extends Schema.TaggedError<OutputFailed>()("OutputFailed", {
  path: Schema.String,
  reason: Schema.String,
  /** Whether the output was refused or could not be opened at all (bad input) rather than failing part-way. */
  atOpen: Schema.Boolean
}) {
  override get message() {
    return `cannot write ${this.path}: ${this.reason}`
  }
}

/** Another live process is writing the output; nothing was touched. */
export class OutputLocked extends Schema.TaggedError<OutputLocked>()("OutputLocked", {
  path: Schema.String,
  pid: Schema.Number,
  host: Schema.String
}) {
  override get message() {
    const holder = this.host === NodeOs.hostname() ? `process ${this.pid}` : `process ${this.pid} on ${this.host}`
    return `${this.path} is being written by ${holder}; not touching it (remove ${this.path}${lockSuffix} if that process is gone)`
  }
}

/** Every failure of a file destination. */
export type DestinationError = OutputFailed | OutputLocked

/** One output being written: positional writes into the partial file, then `commit` or `discard`. */
export interface FileDestination {
  /** The final path (symbolic links resolved). */
  readonly path: string
  /** The partial file the bytes go to until the copy is complete. */
  readonly partialPath: string
  /** How many bytes a resume at `checkpoint` can build on: its offset, or 0 when the partial file is not what it recorded. */
  readonly resumeOffset: (checkpoint: Checkpoint) => Effect.Effect<number>
  /**
   * Keeps the first `offset` bytes and cuts the rest; from 0, starts a new partial file. With
   * `keepPast`, nothing is cut: a resume over segments keeps the ranges it wrote past `offset`.
   */
  readonly startAt: (offset: number, keepPast?: boolean) => Effect.Effect<void, OutputFailed>
  /**
   * Starts writing `bytes` at `position` and returns how to wait for it, so that the caller can
   * hash, read and start the next write meanwhile. Waiting cannot be interrupted: once a copy
   * ends, no write of its own is still under way to land in the file after it.
   */
  readonly startWrite: (bytes: Uint8Array, position: number) => Effect.Effect<Effect.Effect<void, OutputFailed>>
  /**
   * What a checkpoint at `offset` records of this output: its bytes before `end`. With
   * `written` (the bytes just before `end` this copy wrote, a range of a read over segments),
   * the check covers no more of them and says where it ends.
   */
  readonly check: (end: number, written?: number) => Effect.Effect<OutputCheck>
  /** Flushes the partial file to disk (fsync). */
  readonly flush: Effect.Effect<void, OutputFailed>
  /** Feeds the first `length` bytes of the partial file to `update` (what a resumed copy already holds). */
  readonly readPrefix: (length: number, update: (bytes: Uint8Array) => void) => Effect.Effect<void, OutputFailed>
  /** Renames the partial file into place (with `durable`, after an fsync, and the directory synced after). */
  readonly commit: (durable: boolean) => Effect.Effect<void, OutputFailed>
  /** Removes the partial file (a copy whose checksum is wrong must not be kept). */
  readonly discard: Effect.Effect<void>
}

/** One short reason for a file system failure (the shared mapping of `SystemErrors`). */
export const errnoReason = fileSystemReason

const statOrUndefined = (path: string, follow: boolean): NodeFs.Stats | undefined => {
  try {
    return follow ? NodeFs.statSync(path) : NodeFs.lstatSync(path)
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return undefined
    throw error
  }
}

const kindOf = (stats: NodeFs.Stats): string =>
  stats.isDirectory()
    ? "is a directory"
    : stats.isCharacterDevice() || stats.isBlockDevice()
    ? "is a device, not a regular file"
    : stats.isFIFO()
    ? "is a named pipe, not a regular file"
    : stats.isSocket()
    ? "is a socket, not a regular file"
    : "is not a regular file"

const sameFile = (a: NodeFs.Stats | undefined, b: NodeFs.Stats | undefined) =>
  a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino

/** This process as a lock names it: pid, host, and the kernel's start time of the process when known. */
interface LockOwner {
  readonly pid: number
  readonly host: string
  readonly started?: string
}

/** The start time of process `pid` in clock ticks since boot (Linux), so a reused pid is not taken for the holder. */
const processStart = (pid: number): string | undefined => {
  try {
    const stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

const isAlive = (owner: LockOwner): boolean => {
  if (owner.host !== NodeOs.hostname()) return true
  try {
    process.kill(owner.pid, 0)
  } catch (error) {
    if (errnoCode(error) !== "EPERM") return false
  }
  const started = processStart(owner.pid)
  return owner.started === undefined || started === undefined || started === owner.started
}

const readOwner = (path: string): LockOwner | undefined => {
  try {
    const parsed: unknown = JSON.parse(NodeFs.readFileSync(path, "utf8"))
    if (typeof parsed !== "object" || parsed === null) return undefined
    const { host, pid, started } = parsed as Record<string, unknown>
    if (typeof pid !== "number" || typeof host !== "string") return undefined
    return typeof started === "string" ? { pid, host, started } : { pid, host }
  } catch {
    return undefined
  }
}

const self = (): LockOwner => {
  const started = processStart(process.pid)
  return started === undefined
    ? { pid: process.pid, host: NodeOs.hostname() }
    : { pid: process.pid, host: NodeOs.hostname(), started }
}

/**
 * Takes the lock file `lockPath` for this process. The lock is created whole (written to a
 * private file, then hard-linked into place, which fails when a lock exists), so nobody reads a
 * half-written lock. A lock whose process is gone (killed, or the machine restarted) is taken over.
 */
const acquireLock = (lockPath: string, outPath: string): Effect.Effect<void, DestinationError> =>
  Effect.flatMap(Random.nextInt, (unique) =>
    Effect.try({
      try: (): LockOwner | undefined => {
        const owner = self()
        const text = JSON.stringify(owner)
        const mine = `${lockPath}.${process.pid}.${unique.toString(36)}`
        NodeFs.writeFileSync(mine, text, { flag: "wx", mode: 0o644 })
        try {
          for (let attempt = 0; attempt < 5; attempt++) {
            try {
              NodeFs.linkSync(mine, lockPath)
              return undefined
            } catch (error) {
              if (errnoCode(error) !== "EEXIST") throw error
            }
            const holder = readOwner(lockPath)
            if (holder !== undefined && isAlive(holder)) return holder
            // The holder is gone: move its lock aside (only one taker can), then try again.
            const aside = `${lockPath}.stale.${process.pid}`
            try {
              NodeFs.renameSync(lockPath, aside)
              NodeFs.rmSync(aside, { force: true })
            } catch (error) {
              if (errnoCode(error) !== "ENOENT") throw error
            }
          }
          return readOwner(lockPath) ?? { pid: 0, host: "unknown" }
        } finally {
          NodeFs.rmSync(mine, { force: true })
        }
      },
      catch: (error) => new OutputFailed({ path: outPath, reason: `cannot lock: ${errnoReason(error)}`, atOpen: true })
    })).pipe(
      Effect.flatMap((holder) =>
        holder === undefined
          ? Effect.void
          : Effect.fail(new OutputLocked({ path: outPath, pid: holder.pid, host: holder.host }))
      )
    )

/** Gives the lock back, if it is still this process's. */
const releaseLock = (lockPath: string) =>
  Effect.sync(() => {
    const holder = readOwner(lockPath)
    if (holder !== undefined && holder.pid === process.pid && holder.host === NodeOs.hostname()) {
      NodeFs.rmSync(lockPath, { force: true })
    }
  })

/** The sha256 of the `length` bytes of `fd` before `offset`. */
const tailDigest = (fd: number, offset: number, length: number): string => {
  const buffer = Buffer.allocUnsafe(length)
  let filled = 0
  while (filled < length) {
    const read = NodeFs.readSync(fd, buffer, filled, length - filled, offset - length + filled)
    if (read === 0) break
    filled += read
  }
  return createHash("sha256").update(buffer.subarray(0, filled)).digest("hex")
}

/**
 * Opens the destination `out` for a copy of `sourcePath` (a local file, or `undefined` for other
 * sources). Refuses, as bad input and without touching anything, an output that is the source
 * (same path, a symbolic link either way or a hard link) or is not a regular file; fails with
 * `OutputLocked` when another live process writes it. The lock is held and the partial file open
 * until the scope closes. `lock: false` is for writers fenced otherwise (the job queue's epochs).
 */
export const open = (
  out: string,
  sourcePath: string | undefined,
  options: { readonly lock?: boolean } = {}
): Effect.Effect<FileDestination, DestinationError, Scope.Scope> =>
  Effect.gen(function*() {
    const requested = NodePath.resolve(out)
    const refuse = (reason: string) => new OutputFailed({ path: requested, reason, atOpen: true })
    const inspect = <A>(run: () => A) => Effect.try({ try: run, catch: (error) => refuse(errnoReason(error)) })

    const path = yield* inspect(() => {
      const link = statOrUndefined(requested, false)
      return link?.isSymbolicLink() === true && statOrUndefined(requested, true) !== undefined
        ? NodeFs.realpathSync(requested)
        : requested
    })
    const partialPath = `${path}${partialSuffix}`
    const lockPath = `${path}${lockSuffix}`
    const refusal = yield* inspect(() => {
      const final = statOrUndefined(path, true)
      if (final !== undefined && !final.isFile()) return `${path} ${kindOf(final)}`
      const partial = statOrUndefined(partialPath, false)
      if (partial !== undefined && !partial.isFile() && !partial.isSymbolicLink()) {
        return `${partialPath} ${kindOf(partial)}`
      }
      const source = sourcePath === undefined ? undefined : statOrUndefined(NodePath.resolve(sourcePath), true)
      if (sameFile(source, final) || sameFile(source, statOrUndefined(partialPath, true))) {
        return "the output is the source itself; choose another --out"
      }
      const parent = statOrUndefined(NodePath.dirname(path), true)
      if (parent === undefined) return "no such directory"
      if (!parent.isDirectory()) return "a parent is not a directory"
      return undefined
    })
    if (refusal !== undefined) return yield* refuse(refusal)

    if (options.lock !== false) yield* Effect.acquireRelease(acquireLock(lockPath, path), () => releaseLock(lockPath))

    // A partial file that is a symbolic link is not ours to follow: it is replaced.
    const existed = yield* inspect(() => {
      const partial = statOrUndefined(partialPath, false)
      if (partial?.isSymbolicLink() === true) NodeFs.rmSync(partialPath, { force: true })
      return partial?.isFile() === true
    })
    let fd = yield* Effect.acquireRelease(
      inspect(() => NodeFs.openSync(partialPath, NodeFs.constants.O_RDWR | NodeFs.constants.O_CREAT, 0o644)),
      () =>
        Effect.sync(() => {
          if (fd < 0) return
          // A copy that failed before writing anything leaves no empty partial file behind.
          const empty = !existed && NodeFs.fstatSync(fd).size === 0
          NodeFs.closeSync(fd)
          if (empty && !committed) NodeFs.rmSync(partialPath, { force: true })
        })
    )
    let created = false
    let committed = false

    const failed = (error: unknown) => new OutputFailed({ path, reason: errnoReason(error), atOpen: false })

    const destination: FileDestination = {
      path,
      partialPath,
      resumeOffset: (checkpoint) =>
        Effect.sync(() => {
          const output = checkpoint.output
          if (output === undefined) return 0
          const end = output.tailEnd ?? checkpoint.offset
          try {
            const stats = NodeFs.fstatSync(fd)
            if (stats.dev !== output.dev || stats.ino !== output.ino || stats.size < end) return 0
            if (output.tailLength > end) return 0
            return tailDigest(fd, end, output.tailLength) === output.tailSha256 ? checkpoint.offset : 0
          } catch {
            return 0
          }
        }),
      startAt: (offset, keepPast) =>
        Effect.try({
          try: () => {
            if (keepPast === true) return
            const size = NodeFs.fstatSync(fd).size
            if (offset === 0 && size > 0 && !created) {
              // A new partial file rather than truncating the old one to zero: ext4 flushes a file
              // truncated to zero when it is closed (`auto_da_alloc`), a third of a second per GiB.
              NodeFs.closeSync(fd)
              fd = -1
              NodeFs.rmSync(partialPath, { force: true })
              fd = NodeFs.openSync(partialPath, NodeFs.constants.O_RDWR | NodeFs.constants.O_CREAT, 0o644)
              created = true
            } else if (size !== offset) {
              NodeFs.ftruncateSync(fd, offset)
            }
          },
          catch: (error) => new OutputFailed({ path, reason: errnoReason(error), atOpen: true })
        }),
      startWrite: (bytes, position) =>
        Effect.sync(() => {
          let outcome: Effect.Effect<void, OutputFailed> | undefined
          let waiter: (() => void) | undefined
          const output = fd
          const loop = (done: number) =>
            NodeFs.write(output, bytes, done, bytes.length - done, position + done, (error, written) => {
              if (!error && done + written < bytes.length) return loop(done + written)
              outcome = error ? Effect.fail(failed(error)) : Effect.void
              waiter?.()
            })
          loop(0)
          return Effect.uninterruptible(Effect.async<void, OutputFailed>((resume) => {
            if (outcome !== undefined) return resume(outcome)
            waiter = () => resume(outcome!)
          }))
        }),
      check: (end, written) =>
        Effect.sync(() => {
          const stats = NodeFs.fstatSync(fd)
          const tailLength = Math.min(tailCheckBytes, end, written ?? end)
          const tailSha256 = tailDigest(fd, end, tailLength)
          return written === undefined
            ? { dev: stats.dev, ino: stats.ino, tailLength, tailSha256 }
            : { dev: stats.dev, ino: stats.ino, tailLength, tailSha256, tailEnd: end }
        }),
      flush: Effect.try({ try: () => NodeFs.fsyncSync(fd), catch: failed }),
      readPrefix: (length, update) =>
        Effect.tryPromise({
          try: async () => {
            if (length === 0) return
            const stream = NodeFs.createReadStream(partialPath, {
              start: 0,
              end: length - 1,
              highWaterMark: 1024 * 1024
            })
            for await (const chunk of stream) update(chunk as Buffer)
          },
          catch: (error) => new OutputFailed({ path, reason: errnoReason(error), atOpen: true })
        }),
      commit: (durable) =>
        Effect.try({
          try: () => {
            if (durable) NodeFs.fsyncSync(fd)
            const final = statOrUndefined(path, true)
            if (final !== undefined && !final.isFile()) throw new Error(`${path} ${kindOf(final)}`)
            NodeFs.renameSync(partialPath, path)
            committed = true
            if (durable) {
              const directory = NodeFs.openSync(NodePath.dirname(path), "r")
              try {
                NodeFs.fsyncSync(directory)
              } finally {
                NodeFs.closeSync(directory)
              }
            }
          },
          catch: failed
        }),
      discard: Effect.sync(() => NodeFs.rmSync(partialPath, { force: true }))
    }
    return destination
  })
