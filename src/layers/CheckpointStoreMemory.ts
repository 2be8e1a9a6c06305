/**
 * CheckpointStoreMemory: checkpoints in a `Ref`, for tests and single-process reads that need no persistence.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { CheckpointStore } from "../services/CheckpointStore.js"
import type { Checkpoint, CheckpointKey, CheckpointStoreShape } from "../services/CheckpointStore.js"

const keyOf = (key: CheckpointKey) => Data.struct({ source: key.source, destination: key.destination })

/** An in-memory checkpoint store; every layer build starts empty. */
export const make: Effect.Effect<CheckpointStoreShape> = Effect.gen(function*() {
  const entries = yield* Ref.make(HashMap.empty<CheckpointKey, Checkpoint>())
  return CheckpointStore.of({
    save: Effect.fn("CheckpointStore.save")(function*(checkpoint: Checkpoint) {
      yield* Ref.update(entries, HashMap.set(keyOf(checkpoint.key), checkpoint))
    }),
    load: Effect.fn("CheckpointStore.load")(function*(key: CheckpointKey) {
      return HashMap.get(yield* Ref.get(entries), keyOf(key))
    }),
    delete: Effect.fn("CheckpointStore.delete")(function*(key: CheckpointKey) {
      yield* Ref.update(entries, HashMap.remove(keyOf(key)))
    })
  })
})

/** The in-memory checkpoint store. */
export const layer: Layer.Layer<CheckpointStore> = Layer.effect(CheckpointStore, make)
