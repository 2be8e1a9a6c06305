/**
 * ResourceCleanupManager: resources registered with a priority are released in priority order,
 * each within a time bound; failures are reported, never swallowed. A scope releases its own
 * resources when it closes (nested scopes close first, as Effect's scopes do); the emergency path
 * releases the reusable resources of every open scope of the process, in one priority order.
 */
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** A finalizer failed or ran past its time bound. */
export class CleanupFailed extends Schema.TaggedError<CleanupFailed>()("CleanupFailed", {
  resource: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `cleanup of ${this.resource} failed: ${this.reason}`
  }
}

/** How a resource is released. */
export interface CleanupRegistration {
  /** Name for logs and reports. */
  readonly name: string
  /** Higher priorities are released first. */
  readonly priority: number
  /** Releases the resource. */
  readonly release: Effect.Effect<void, unknown>
  /** Longest the release may take. */
  readonly timeout?: Duration.DurationInput
  /**
   * May be released early under critical pressure without breaking a live read (pooled buffers,
   * idle connections). Its release then runs at each emergency and again when the scope closes,
   * so it must be repeatable.
   */
  readonly emergency?: boolean
}

/** Orders and bounds cleanup. */
export interface ResourceCleanupManagerShape {
  /** Registers a resource, released when the scope closes (or earlier, in an emergency, when allowed). */
  readonly register: (registration: CleanupRegistration) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Releases every emergency-releasable resource of every open scope now, one after another by
   * priority across all of them, each within its time bound; returns their names in release order.
   */
  readonly emergencyRelease: Effect.Effect<ReadonlyArray<string>>
  /** Finalizer failures so far. */
  readonly failures: Effect.Effect<ReadonlyArray<CleanupFailed>>
}

/** Orders and bounds cleanup. */
export class ResourceCleanupManager extends Context.Tag("streaming-reader/ResourceCleanupManager")<
  ResourceCleanupManager,
  ResourceCleanupManagerShape
>() {}
