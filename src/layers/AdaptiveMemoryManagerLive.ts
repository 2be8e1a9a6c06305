/**
 * AdaptiveMemoryManagerLive: one byte budget for the whole process. Reservations that do not fit
 * wait in a FIFO queue (suspended on a `Deferred`, no polling) and are granted in order as bytes
 * are released, so a large ask is never starved by a stream of small ones.
 */
import { Deferred, Effect, Exit, Layer } from "effect"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import type { AdaptiveMemoryManagerShape, MemoryReservation } from "../services/AdaptiveMemoryManager.js"
import { MiB } from "../services/ReadOptions.js"

/** The budget's size. */
export interface AdaptiveMemoryManagerOptions {
  /** The hard limit in bytes, a positive integer; 50 MiB by default. */
  readonly limit?: number
}

/** The default hard limit: 50 MiB. */
export const defaultLimit = 50 * MiB

interface Waiter {
  readonly bytes: number
  readonly deferred: Deferred.Deferred<void>
  granted: boolean
}

/**
 * A budget of `limit` bytes. An ask above the limit is shrunk to the limit (granted once the
 * budget is empty) instead of waiting forever; an ask of zero or less is granted zero bytes.
 * The bookkeeping runs inside single synchronous steps, so it is atomic between fibers.
 */
export const make = (options: AdaptiveMemoryManagerOptions = {}): Effect.Effect<AdaptiveMemoryManagerShape> =>
  Effect.gen(function*() {
    const limit = options.limit ?? defaultLimit
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      return yield* Effect.dieMessage(`AdaptiveMemoryManager: limit must be a positive integer, got ${limit}`)
    }

    let inUse = 0
    const queue: Array<Waiter> = []

    /** Grants waiters from the head of the queue while they fit. */
    const pump = () => {
      while (queue.length > 0 && inUse + queue[0]!.bytes <= limit) {
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

    /** Waits in the queue for `bytes`; the budget is checked and the waiter enqueued in one step. */
    const waitFor = (bytes: number) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const deferred = yield* Deferred.make<void>()
          // No yield between the check and the enqueue: a release in between would otherwise be missed.
          if (queue.length === 0 && inUse + bytes <= limit) {
            inUse += bytes
            return reservation(bytes)
          }
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
        const bytes = asked > 0 ? Math.min(Math.ceil(asked), limit) : 0
        if (bytes === 0 || (queue.length === 0 && inUse + bytes <= limit)) {
          inUse += bytes
          return Effect.succeed(reservation(bytes))
        }
        return waitFor(bytes)
      })

    return AdaptiveMemoryManager.of({
      limit,
      reserve,
      inUse: Effect.sync(() => inUse)
    })
  })

/** The shared budget, `limit` bytes (50 MiB by default). */
export const layer = (options: AdaptiveMemoryManagerOptions = {}): Layer.Layer<AdaptiveMemoryManager> =>
  Layer.effect(AdaptiveMemoryManager, make(options))
