/**
 * AdaptiveChunkSizerLive: per-read chunk sizing from measured latency and the pressure level of
 * the BackpressureController.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AdaptiveChunkSizer } from "../services/AdaptiveChunkSizer.js"
import type { AdaptiveChunkSizerShape, ChunkObservation, ChunkSizing } from "../services/AdaptiveChunkSizer.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { PressureLevel } from "../services/BackpressureController.js"
import { KiB } from "../services/ReadOptions.js"

/** How fast a chunk should arrive. */
export interface AdaptiveChunkSizerOptions {
  /** The latency, in ms, a chunk should stay under; 20 ms by default. */
  readonly targetLatencyMs?: number
}

/** Chunk sizes are multiples of this (unless pinned to a bound that is not). */
export const granule = 4 * KiB

/** Bounds of one read, made whole and consistent: integers, 1 <= min <= max. */
const normalize = (bounds: { readonly min: number; readonly max: number }) => {
  const min = Number.isFinite(bounds.min) ? Math.max(1, Math.floor(bounds.min)) : 1
  const max = Number.isFinite(bounds.max) ? Math.max(min, Math.floor(bounds.max)) : Math.max(min, 256 * KiB)
  return { min, max }
}

const clamp = (size: number, min: number, max: number) => Math.min(max, Math.max(min, size))

/**
 * The next size after one observation, from the current size, the observation, the pressure level
 * and the target latency. The control law, with `projected(s) = latencyMs * s / bytes` (the
 * latency a chunk of `s` bytes would have at the observed speed):
 *
 * - pressure `critical`: the minimum;
 * - a chunk shorter than the current size and than it was asked for (all that had arrived from a
 *   slow source, what the rate limiter granted, or the last bytes of the source): what came,
 *   rounded up to 4 KiB, never more than the current size, halved as well under `high` pressure. Its latency is not used: it is
 *   mostly time spent waiting for the source, not time per byte, and the size comes back by
 *   doubling once chunks are full and fast again;
 * - pressure `high`, or `projected(size) > target`: halve (rounded down to 4 KiB);
 * - pressure `none`/`low` and `projected(2 * size) <= target`: double (rounded up to 4 KiB), so
 *   a page-cached file reaches the maximum within a few chunks;
 * - otherwise (the doubled chunk would miss the target): keep the size.
 *
 * An observation of zero bytes (end of source) only applies the pressure rules. The result is
 * always clamped to [min, max]; it is a multiple of 4 KiB or exactly min or max.
 */
export const nextSize = (
  state: { readonly size: number; readonly min: number; readonly max: number },
  observation: ChunkObservation,
  pressure: PressureLevel,
  targetLatencyMs: number
): number => {
  const { max, min, size } = state
  const halve = () => clamp(Math.floor(size / 2 / granule) * granule, min, max)
  const double = () => clamp(Math.ceil(size * 2 / granule) * granule, min, max)
  if (pressure === "critical") return min
  const bytes = observation.bytes
  if (bytes > 0 && bytes < Math.min(size, observation.asked ?? size)) {
    const came = clamp(Math.min(size, Math.ceil(bytes / granule) * granule), min, max)
    return pressure === "high" ? Math.min(came, halve()) : came
  }
  if (pressure === "high") return halve()
  if (!(bytes > 0) || !Number.isFinite(observation.latencyMs)) return size
  const msPerByte = Math.max(0, observation.latencyMs) / bytes
  if (msPerByte * size > targetLatencyMs) return halve()
  if (msPerByte * size * 2 <= targetLatencyMs) return double()
  return size
}

/** A chunk sizer following the pressure level of the BackpressureController. */
export const make = (
  options: AdaptiveChunkSizerOptions = {}
): Effect.Effect<AdaptiveChunkSizerShape, never, BackpressureController> =>
  Effect.gen(function*() {
    const controller = yield* BackpressureController
    const targetLatencyMs = options.targetLatencyMs ?? 20

    return AdaptiveChunkSizer.of({
      make: Effect.fn("AdaptiveChunkSizer.make")(function*(bounds: {
        readonly initial: number
        readonly min: number
        readonly max: number
      }) {
        const { max, min } = normalize(bounds)
        const initial = Number.isFinite(bounds.initial) ? Math.round(bounds.initial / granule) * granule : min
        let size = clamp(initial, min, max)
        const sizing: ChunkSizing = {
          // Both run once per chunk: one read of the latest level, no span, no generator.
          next: Effect.map(controller.current, (pressure) => {
            if (pressure === "critical") size = min
            return size
          }),
          observe: (observation: ChunkObservation) =>
            Effect.map(controller.current, (pressure) => {
              size = nextSize({ size, min, max }, observation, pressure, targetLatencyMs)
            })
        }
        return sizing
      })
    })
  })

/** The chunk sizer, with a 20 ms latency target. */
export const layer: Layer.Layer<AdaptiveChunkSizer, never, BackpressureController> = Layer.effect(
  AdaptiveChunkSizer,
  make()
)
