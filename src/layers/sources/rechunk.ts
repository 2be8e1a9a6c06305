/**
 * Turns a source that yields pieces of whatever size it likes into one that yields at most the
 * size each pull asks for: the whole size while pieces keep coming, what has arrived when they
 * do not, so a slow source still makes progress at every pull.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type * as Fiber from "effect/Fiber"

const empty = new Uint8Array(0)

/**
 * How long (ms) a pull that already holds bytes waits for more before it returns them. Longer
 * than the pauses a busy process and a fast source have between pieces (network jitter, a
 * garbage collection: tens of ms were seen on loopback), so those still fill whole chunks; far
 * below any stall timeout (30 s by default, seconds in practice), so the bytes of a slow source
 * are handed out as progress instead of waiting for a chunk that takes longer than the timeout
 * to fill.
 */
export const defaultHoldMs = 50

/** How `rechunk` waits for pieces and what ends a piece still in flight between pulls. */
export interface RechunkOptions {
  /** The longest a pull holding bytes waits for more, in ms; `defaultHoldMs` by default. */
  readonly holdMs?: number
  /** The scope of the source: closing it interrupts a piece still in flight after a pull returned early. */
  readonly scope?: Scope.Scope
}

/** The pieces gathered for one pull. */
interface Job {
  readonly parts: Array<Uint8Array>
  readonly maxBytes: number
  have: number
  /** The pull took what had come and left: a piece that comes now is the next pull's. */
  stopped: boolean
  /** Called once the reader is done with the job. */
  notify: (() => void) | undefined
}

/** The pull waiting for more pieces, and how to tell it that its time is up. */
interface Waiting {
  readonly deadline: number
  readonly wake: () => void
}

/** Waits for one turn of the event loop's I/O (its check phase comes after the poll phase). */
const ioTurn = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Interrupts `fiber` and waits until it is done, with an observer rather than its mailbox. */
const interruptAndWait = (fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
  Effect.async<void>((resume) => {
    fiber.addObserver(() => resume(Effect.void))
    fiber.unsafeInterruptAsFork(fiber.id())
  })

/**
 * Wraps `pullNext` (the next piece, `undefined` at the end) into `pull(n, into?)`, which returns
 * between 1 and `n` bytes, or none at the end.
 *
 * A pull that holds nothing awaits the next piece directly, on its own fiber. Once it holds bytes,
 * the rest is gathered by a reading fiber; pieces that are already there are taken at once,
 * without waiting. When one is not there, the pull waits at most `holdMs` in all, then returns
 * what it holds; the piece being read stays in flight (it is never interrupted for this) and is
 * the first the next pull takes. Interrupting a pull interrupts the piece it waits for, as it
 * would a direct read, and keeps the bytes it held for the next pull; closing `scope` ends the
 * reading fiber. Only one piece is asked of `pullNext` at a time.
 *
 * Pieces are sliced with `subarray`; pieces that one pull spans are joined into `into` when it is
 * given (and long enough), else into a new array. When `pullNext` fails after a pull has gathered
 * some bytes, the pull returns them and the next pull fails with that error.
 */
export const rechunk = <E>(pullNext: Effect.Effect<Uint8Array | undefined, E>, options: RechunkOptions = {}) => {
  const holdMs = options.holdMs ?? defaultHoldMs
  const scope = options.scope
  let leftover: Uint8Array = empty
  let ended = false
  let failure: { readonly error: E } | undefined
  /** A defect of the reading fiber, raised by the pull that waited for it. */
  let defect: Cause.Cause<never> | undefined
  /** The runtime the reading fiber runs in: the first waiting pull's, captured once. */
  let runtime: Runtime.Runtime<never> | undefined
  /** The fiber reading pieces for `current`. */
  let reader: Fiber.RuntimeFiber<void> | undefined
  /** The job the reader works on: for the pull in progress, or one a pull stopped waiting for. */
  let current: Job | undefined
  let waiting: Waiting | undefined
  /** Wakes the waiting pull at its deadline; runs only while pulls wait, one for all of them. */
  let ticker: Fiber.RuntimeFiber<void> | undefined
  let guarded = false

  const finishJob = (job: Job) => {
    if (current === job) current = undefined
    const notify = job.notify
    job.notify = undefined
    notify?.()
  }

  const stopReader = Effect.suspend(() => {
    const fiber = reader
    return fiber === undefined ? Effect.void : interruptAndWait(fiber)
  })

  // Registered once, before the reading fiber first starts.
  const guard = Effect.suspend(() => {
    if (guarded || scope === undefined) return Effect.void
    guarded = true
    return Scope.addFinalizer(
      scope,
      Effect.zipRight(Effect.sync(() => ticker?.unsafeInterruptAsFork(ticker.id())), stopReader)
    )
  })

  // Sleeps until the deadline of the pull that waits now, wakes it once that has passed, and ends
  // when no pull waits. Deadlines only grow, so sleeping to the current one never oversleeps a later one.
  const tick: Effect.Effect<void> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const pull = waiting
    if (pull !== undefined && now < pull.deadline) {
      return Effect.zipRight(Effect.sleep(Duration.millis(pull.deadline - now)), tick)
    }
    ticker = undefined
    if (pull !== undefined) {
      waiting = undefined
      pull.wake()
    }
    return Effect.void
  })

  // Takes pieces into `job` until it has enough or the source ends or fails; a piece that comes
  // after the pull stopped taking them is the next pull's.
  const gather = (job: Job): Effect.Effect<void> =>
    Effect.matchEffect(pullNext, {
      onFailure: (error) =>
        Effect.sync(() => {
          failure = { error }
        }),
      onSuccess: (piece) => {
        if (piece === undefined) ended = true
        else if (job.stopped) leftover = piece
        else {
          if (piece.length > 0) job.parts.push(piece)
          job.have += piece.length
          if (job.have < job.maxBytes) return gather(job)
        }
        return Effect.void
      }
    })

  // Starts the reader of `job` on this stack, so pieces the source already has are taken before
  // this returns, without a wait or a scheduling round.
  const startJob = (job: Job, runtime: Runtime.Runtime<never>) => {
    current = job
    const fiber = Runtime.runFork(runtime)(Effect.interruptible(gather(job)))
    const observer = (exit: Exit.Exit<void>) => {
      if (reader === fiber) reader = undefined
      if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) defect = exit.cause
      finishJob(job)
    }
    const exit = fiber.unsafePoll()
    if (exit !== null) return observer(exit)
    reader = fiber
    fiber.addObserver(observer)
  }

  // Raises a defect of the reader, once.
  const raiseDefect = Effect.suspend(() => {
    const cause = defect
    defect = undefined
    return cause === undefined ? Effect.void : Effect.failCause(cause)
  })

  // `true` once the reader is done with `job`, `false` once `deadline` has passed.
  const doneBy = (job: Job, deadline: number, runtime: Runtime.Runtime<never>) =>
    Effect.async<boolean>((resume) => {
      if (current !== job) return resume(Effect.succeed(true))
      const entry: Waiting = {
        deadline,
        wake: () => {
          job.notify = undefined
          resume(Effect.succeed(false))
        }
      }
      job.notify = () => {
        if (waiting === entry) waiting = undefined
        resume(Effect.succeed(true))
      }
      waiting = entry
      if (ticker === undefined) ticker = Runtime.runFork(runtime)(tick)
      return Effect.sync(() => {
        job.notify = undefined
        if (waiting === entry) waiting = undefined
      })
    })

  // A pull that finds a piece still in flight holds nothing: it waits for the piece, then goes on.
  const afterJob = (job: Job) =>
    Effect.async<void>((resume) => {
      if (current !== job) return resume(Effect.void)
      job.notify = () => resume(Effect.void)
      return Effect.zipRight(Effect.sync(() => (job.notify = undefined)), stopReader)
    }).pipe(Effect.zipRight(raiseDefect))

  const assemble = (job: Job, into: Uint8Array | undefined) => {
    const { parts } = job
    const size = Math.min(job.have, job.maxBytes)
    if (parts.length === 0) return empty
    // A stopped job never has more than its size, so this never replaces a piece the reader kept.
    // The pieces are let go at once: kept until the next pull, they outlive young-generation
    // collections and make the collector work much harder on a fast source.
    if (parts.length === 1) {
      const part = parts[0]!
      parts.length = 0
      if (size < part.length) leftover = part.subarray(size)
      return part.subarray(0, size)
    }
    const out = into !== undefined && into.length >= size ? into.subarray(0, size) : new Uint8Array(size)
    let filled = 0
    for (const part of parts) {
      const n = Math.min(part.length, size - filled)
      out.set(n === part.length ? part : part.subarray(0, n), filled)
      filled += n
      if (n < part.length) leftover = part.subarray(n)
    }
    parts.length = 0
    return out
  }

  const collect = (maxBytes: number, into: Uint8Array | undefined): Effect.Effect<Uint8Array, E> => {
    const job: Job = {
      parts: leftover.length > 0 ? [leftover] : [],
      maxBytes,
      have: leftover.length,
      stopped: false,
      notify: undefined
    }
    leftover = empty
    // An interrupted pull keeps what it held for the next one, ahead of any piece that came since.
    const keep = Effect.sync(() => {
      job.stopped = true
      if (current === job) current = undefined
      const held = leftover.length > 0 ? [...job.parts, leftover] : job.parts
      if (held.length > 0) leftover = held.length === 1 ? held[0]! : Buffer.concat(held)
    })
    return Effect.gen(function*() {
      while (job.have === 0 && !ended) {
        const piece = yield* pullNext
        if (piece === undefined) ended = true
        else if (piece.length > 0) {
          job.parts.push(piece)
          job.have = piece.length
        }
      }
      if (job.have < maxBytes && !ended) {
        runtime ??= yield* Effect.runtime<never>()
        yield* guard
        startJob(job, runtime)
        if (current === job) {
          const now = yield* Clock.currentTimeMillis
          // After a busy stretch of the process an expired timer runs before the I/O that came
          // meanwhile: let that I/O in before deciding that nothing more has arrived.
          if (!(yield* doneBy(job, now + holdMs, runtime))) yield* ioTurn
          if (current === job) job.stopped = true
        }
        yield* raiseDefect
      }
      return assemble(job, into)
    }).pipe(Effect.onInterrupt(() => Effect.zipRight(current === job ? stopReader : Effect.void, keep)))
  }

  const pull = (maxBytes: number, into?: Uint8Array): Effect.Effect<Uint8Array, E> =>
    Effect.suspend(() => {
      if (leftover.length >= maxBytes) {
        const out = leftover.subarray(0, maxBytes)
        leftover = leftover.subarray(maxBytes)
        return Effect.succeed(out)
      }
      if (current !== undefined) return Effect.zipRight(afterJob(current), pull(maxBytes, into))
      if (failure !== undefined) {
        if (leftover.length === 0) return Effect.fail(failure.error)
        const out = leftover
        leftover = empty
        return Effect.succeed(out)
      }
      return collect(maxBytes, into)
    })
  return pull
}
