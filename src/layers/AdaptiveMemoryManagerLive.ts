/**
 * AdaptiveMemoryManagerLive: one byte budget for the whole process. Reservations that do not fit
 * wait in a FIFO queue (suspended on a `Deferred`, no polling) and are granted in order as bytes
 * are released, so a large ask is never starved by a stream of small ones. The budget in force
 * follows the MemoryMonitor: fast RSS growth tightens it (see `tightenedLimit`), read from the
 * monitor every `interval` in a scoped fiber, so a reservation only compares two numbers.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import type { AdaptiveMemoryManagerShape, MemoryReservation } from "../services/AdaptiveMemoryManager.js"
import { MemoryMonitor } from "../services/MemoryMonitor.js"
import { MiB } from "../services/ReadOptions.js"

/** The budget's size and how it follows RSS growth. */
export interface AdaptiveMemoryManagerOptions {
  /** The hard limit in bytes, a positive integer; 50 MiB by default. */
  readonly limit?: number
  /** RSS growth, in MB/s, up to which the whole limit is in force; 5 by default (the controller's `low`). */
  readonly growthAllowanceMbPerSec?: number
  /** The share of the limit the budget never tightens below, in (0, 1]; 1/4 by default. */
  readonly minShare?: number
  /** Time between two readings of the monitor's growth rate; 500 ms by default. */
  readonly interval?: Duration.DurationInput
}

/** The default hard limit: 50 MiB. */
export const defaultLimit = 50 * MiB

/** The default RSS growth, in MB/s, that leaves the whole limit in force. */
export const defaultGrowthAllowanceMbPerSec = 5

/** The default share of the limit that fast growth never tightens the budget below. */
export const defaultMinShare = 0.25

/**
 * The budget in force at an RSS growth of `growthMbPerSec`: the whole `limit` up to `allowance`;
 * above it `limit * allowance / growth` (twice the allowance halves the budget), never below
 * `minShare * limit`, in whole bytes and at least 1.
 */
export const tightenedLimit = (limit: number, growthMbPerSec: number, allowance: number, minShare: number): number => {
  if (!(growthMbPerSec > allowance)) return limit
  const share = Math.max(minShare, allowance / growthMbPerSec)
  return Math.max(1, Math.floor(limit * share))
}

interface Waiter {
  readonly bytes: number
  readonly deferred: Deferred.Deferred<void>
  granted: boolean
}

/**
 * A budget of `limit` bytes whose part in force follows the monitor's RSS growth. An ask above
 * the limit is shrunk to the limit; an ask above the budget in force is granted once nothing else
 * is reserved (never waiting forever); an ask of zero or less is granted zero bytes. The
 * bookkeeping runs inside single synchronous steps, so it is atomic between fibers.
 */
export const make = (
  options: AdaptiveMemoryManagerOptions = {}
): Effect.Effect<AdaptiveMemoryManagerShape, never, MemoryMonitor | Scope.Scope> =>
  Effect.gen(function*() {
    const limit = options.limit ?? defaultLimit
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      return yield* Effect.dieMessage(`AdaptiveMemoryManager: limit must be a positive integer, got ${limit}`)
    }
    const allowance = options.growthAllowanceMbPerSec ?? defaultGrowthAllowanceMbPerSec
    const minShare = options.minShare ?? defaultMinShare
    if (!(allowance > 0) || !(minShare > 0 && minShare <= 1)) {
      return yield* Effect.dieMessage(
        `AdaptiveMemoryManager: growthAllowanceMbPerSec must be positive and minShare in (0, 1], got ${allowance} and ${minShare}`
      )
    }
    const monitor = yield* MemoryMonitor
    const interval = Duration.decode(options.interval ?? "500 millis")

    let inUse = 0
    let effective = limit
    const queue: Array<Waiter> = []

    /** Whether `bytes` more fit the budget in force; with nothing reserved, any ask (at most `limit`) fits. */
    const fits = (bytes: number) => inUse + bytes <= effective || inUse === 0

    /** Grants waiters from the head of the queue while they fit. */
    const pump = () => {
      while (queue.length > 0 && fits(queue[0]!.bytes)) {
        const waiter = queue.shift()!
        inUse += waiter.bytes
        waiter.granted = true
        Deferred.unsafeDone(waiter.deferred, Exit.void)
      }
    }

    const reservation = (bytes: number): MemoryReservation => {
      let released = false
      return {
        bytes,
        release: Effect.sync(() => {
          if (released) return
          released = true
          inUse -= bytes
          pump()
        })
      }
    }

    /** The bytes an ask is granted: whole, at most the limit, none for an ask of zero or less. */
    const grantOf = (asked: number) => asked > 0 ? Math.min(Math.ceil(asked), limit) : 0

    /** Takes `bytes` from the budget at once. */
    const take = (bytes: number) => {
      inUse += bytes
      return reservation(bytes)
    }

    /** Waits in the queue for `bytes`; the budget is checked and the waiter enqueued in one step. */
    const waitFor = (bytes: number) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const deferred = yield* Deferred.make<void>()
          // No yield between the check and the enqueue: a release in between would otherwise be missed.
          if (queue.length === 0 && fits(bytes)) return take(bytes)
          const waiter: Waiter = { bytes, deferred, granted: false }
          queue.push(waiter)
          yield* restore(Deferred.await(waiter.deferred)).pipe(
            Effect.onInterrupt(() =>
              Effect.sync(() => {
                if (waiter.granted) {
                  inUse -= bytes
                } else {
                  const index = queue.indexOf(waiter)
                  if (index >= 0) queue.splice(index, 1)
                }
                pump()
              })
            )
          )
          return reservation(bytes)
        })
      )

    // Runs once per chunk: the common case (the budget has room, nobody waits) is one synchronous step.
    const reserve = (asked: number): Effect.Effect<MemoryReservation> =>
      Effect.suspend(() => {
        const bytes = grantOf(asked)
        return bytes === 0 || (queue.length === 0 && fits(bytes)) ? Effect.succeed(take(bytes)) : waitFor(bytes)
      })

    /** Sets the budget in force from the monitor's growth rate; a looser budget lets waiters in. */
    const follow = Effect.map(monitor.growthMbPerSec, (growthMbPerSec) => {
      const next = tightenedLimit(limit, growthMbPerSec, allowance, minShare)
      const loosened = next > effective
      effective = next
      if (loosened) pump()
    })
    yield* follow
    yield* follow.pipe(
      Effect.schedule(Schedule.spaced(interval)),
      Effect.interruptible,
      Effect.forkScoped
    )

    return AdaptiveMemoryManager.of({
      limit,
      effectiveLimit: Effect.sync(() => effective),
      reserve,
      unsafeTryReserve: (asked) => {
        const bytes = grantOf(asked)
        return bytes === 0 || (queue.length === 0 && inUse + bytes <= effective) ? take(bytes) : undefined
      },
      inUse: Effect.sync(() => inUse),
      unsafeInUse: () => inUse
    })
  })

/** The shared budget, `limit` bytes (50 MiB by default), tightened while the monitor sees RSS grow fast. */
export const layer = (
  options: AdaptiveMemoryManagerOptions = {}
): Layer.Layer<AdaptiveMemoryManager, never, MemoryMonitor> => Layer.scoped(AdaptiveMemoryManager, make(options))
