/**
 * ResourceCleanupManagerLive: one finalizer per scope releases that scope's resources by priority
 * (higher first, then last registered first), each within its time bound; failures are kept,
 * logged and counted, and never stop the other releases.
 *
 * Why a manager and not plain `Scope` finalizers: a finalizer is reachable only from its own
 * scope, so under critical pressure nothing could release the reusable memory of the other reads.
 * The manager keeps one process-wide registry of open scopes and their resources, so the emergency
 * path releases every read's reusable resources in one priority order, each bounded in time.
 * Hierarchy is Effect's: a read's attempt scopes close before the read's scope.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { BackpressureController } from "../services/BackpressureController.js"
import { CleanupFailed, ResourceCleanupManager } from "../services/ResourceCleanupManager.js"
import type { CleanupRegistration, ResourceCleanupManagerShape } from "../services/ResourceCleanupManager.js"

/** How long a release may take when its registration names no timeout. */
export const defaultReleaseTimeout: Duration.Duration = Duration.seconds(5)

/** How many of the most recent failures `failures` keeps, so a long-lived process does not grow without bound. */
export const maxKeptFailures = 1_000

/** Counts finalizers that failed or ran past their time bound. */
export const cleanupFailureCount = Metric.counter("streaming_reader_cleanup_failures", {
  description: "resource releases that failed or timed out",
  incremental: true
})

interface Entry {
  readonly registration: CleanupRegistration
  readonly order: number
}

/** Release order: higher priority first; within a priority, the last registered first. */
const releaseOrder = (a: Entry, b: Entry): number =>
  b.registration.priority - a.registration.priority || b.order - a.order

const messageOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" &&
    error.message !== ""
    ? error.message
    : String(error)

const describeCause = (cause: Cause.Cause<unknown>): string => {
  if (Cause.isInterruptedOnly(cause)) return "interrupted"
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return messageOf(failure.value)
  return `defect: ${messageOf(Cause.squash(cause))}`
}

type Outcome = Exit.Exit<void, unknown> | "timeout"

/**
 * Runs `release` in its own fiber, interruptible even when the caller is not (finalizers run
 * uninterruptibly, and possibly on an interrupted fiber), and stops waiting after `timeout`.
 */
const bounded = (release: Effect.Effect<void, unknown>, timeout: Duration.Duration): Effect.Effect<Outcome> =>
  Effect.gen(function*() {
    const outcome = yield* Deferred.make<Outcome>()
    const worker = yield* Effect.forkDaemon(
      Effect.interruptible(release).pipe(Effect.exit, Effect.flatMap((exit) => Deferred.succeed(outcome, exit)))
    )
    const timer = yield* Effect.forkDaemon(
      Effect.interruptible(Effect.sleep(timeout)).pipe(Effect.zipRight(Deferred.succeed(outcome, "timeout")))
    )
    const result = yield* Deferred.await(outcome)
    yield* Fiber.interruptFork(timer)
    if (result === "timeout") yield* Fiber.interruptFork(worker)
    return result
  })

/** Builds the cleanup manager; its registries live as long as the layer. */
export const make: Effect.Effect<ResourceCleanupManagerShape> = Effect.gen(function*() {
  const failures = yield* Ref.make<ReadonlyArray<CleanupFailed>>([])
  const registries = new Map<Scope.Scope, Array<Entry>>()
  let registered = 0

  const report = (failure: CleanupFailed) =>
    Effect.logWarning(failure.message).pipe(
      Effect.annotateLogs({ resource: failure.resource }),
      Effect.zipRight(Ref.update(failures, (all) => [...all, failure].slice(-maxKeptFailures))),
      Effect.zipRight(Metric.increment(cleanupFailureCount))
    )

  const releaseOne = (registration: CleanupRegistration) => {
    const timeout = registration.timeout === undefined ? defaultReleaseTimeout : Duration.decode(registration.timeout)
    return bounded(registration.release, timeout).pipe(
      Effect.flatMap((outcome) =>
        outcome === "timeout"
          ? report(
            new CleanupFailed({ resource: registration.name, reason: `timed out after ${Duration.format(timeout)}` })
          )
          : Exit.isFailure(outcome)
          ? report(new CleanupFailed({ resource: registration.name, reason: describeCause(outcome.cause) }))
          : Effect.void
      ),
      Effect.withSpan("ResourceCleanupManager.release", { attributes: { resource: registration.name } })
    )
  }

  /** Releases `entries` one after another in release order; each is bounded and none stops the rest. */
  const releaseAll = (entries: ReadonlyArray<Entry>) =>
    Effect.forEach([...entries].sort(releaseOrder), (entry) => releaseOne(entry.registration), { discard: true })

  const register = Effect.fn("ResourceCleanupManager.register")(function*(registration: CleanupRegistration) {
    const scope = yield* Effect.scope
    const entry: Entry = { registration, order: registered++ }
    const existing = registries.get(scope)
    if (existing !== undefined) {
      existing.push(entry)
      return
    }
    const entries: Array<Entry> = [entry]
    registries.set(scope, entries)
    yield* Scope.addFinalizer(
      scope,
      Effect.suspend(() => {
        registries.delete(scope)
        return releaseAll(entries.splice(0))
      })
    )
  }, Effect.uninterruptible)

  // Emergency resources stay registered: their scope releases them again when it closes.
  const emergencyRelease: Effect.Effect<ReadonlyArray<string>> = Effect.suspend(() => {
    const reusable: Array<Entry> = []
    for (const entries of registries.values()) {
      for (const entry of entries) if (entry.registration.emergency === true) reusable.push(entry)
    }
    reusable.sort(releaseOrder)
    return Effect.forEach(reusable, (entry) => releaseOne(entry.registration), { discard: true }).pipe(
      Effect.as(reusable.map((entry) => entry.registration.name))
    )
  }).pipe(Effect.uninterruptible, Effect.withSpan("ResourceCleanupManager.emergencyRelease"))

  return ResourceCleanupManager.of({
    register,
    emergencyRelease,
    failures: Ref.get(failures)
  })
})

/** The cleanup manager. */
export const layer: Layer.Layer<ResourceCleanupManager> = Layer.effect(ResourceCleanupManager, make)

/**
 * Runs the emergency path each time the pressure level becomes `critical`: resources marked
 * `emergency` (reusable buffers, idle connections) of every read are released, by priority across
 * all reads and each within its time bound, without breaking live reads.
 */
export const emergencyOnCriticalPressure: Layer.Layer<never, never, ResourceCleanupManager | BackpressureController> =
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const cleanup = yield* ResourceCleanupManager
      const pressure = yield* BackpressureController
      yield* pressure.level.changes.pipe(
        Stream.changes,
        Stream.filter((level) => level === "critical"),
        Stream.runForEach(() =>
          Effect.flatMap(
            cleanup.emergencyRelease,
            (released) =>
              Effect.logWarning(`critical pressure: released ${released.length} reusable resources`).pipe(
                Effect.annotateLogs({ released: released.join(", ") })
              )
          )
        ),
        Effect.forkScoped
      )
    })
  )
