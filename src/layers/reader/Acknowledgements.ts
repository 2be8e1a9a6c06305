/**
 * Acknowledgement and checkpoints: the consumer says which bytes it has durably handled, and
 * only those are ever checkpointed. A checkpoint is saved once `checkpointEvery` chunks have
 * been acknowledged since the last one, when the read stops part-way, and is deleted once every
 * byte of a finished read is acknowledged.
 */
import type { Hash } from "node:crypto"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { SourceIdentity } from "../../services/ByteSource.js"
import type {
  ByteRange,
  CheckpointKey,
  CheckpointStoreError,
  CheckpointStoreShape,
  OutputCheck
} from "../../services/CheckpointStore.js"
import type { ReadStart } from "../../services/StreamingReader.js"
import { addRange } from "./SegmentPlan.js"

/** The acknowledgements of one read. */
export interface Acknowledgements {
  /** Bytes handed to the consumer: the end of the last chunk emitted. */
  readonly emitted: () => number
  /** Every byte before this offset is acknowledged. */
  readonly acknowledged: () => number
  /**
   * Records a chunk handed to the consumer. `hashBefore` is the source's prefix digest before
   * it, kept for a source without a strong validator, so a checkpoint inside it has its digest.
   */
  readonly emit: (bytes: Uint8Array, hashBefore: Hash | undefined) => void
  /** Records a chunk of a read over segments handed to the consumer, which may lie past others not yet handed out. */
  readonly emitRange: (end: number) => void
  /** See `ReadSession.acknowledge`. */
  readonly acknowledge: (end: number, output?: OutputCheck) => Effect.Effect<void, CheckpointStoreError>
  /** See `ReadSession.acknowledgeRange`. */
  readonly acknowledgeRange: (
    start: number,
    end: number,
    output?: OutputCheck
  ) => Effect.Effect<void, CheckpointStoreError>
  /** Forgets the ranges a resume started with: the read hands out every byte from its start again. */
  readonly dropRanges: () => void
  /** Whether acknowledging one more range saves a checkpoint. */
  readonly rangeCheckpointDue: () => boolean
  /** See `ReadSession.checkpointDue`. */
  readonly checkpointDue: (end: number) => boolean
  /** Saves a checkpoint of what is acknowledged, when it moved since the last one (or `output` is new). */
  readonly checkpoint: (output?: OutputCheck) => Effect.Effect<void, CheckpointStoreError>
  /** The source has no more bytes: the checkpoint goes once all of them are acknowledged. */
  readonly finish: Effect.Effect<void, CheckpointStoreError>
  /** Where a later read resumes. */
  readonly resumePoint: () => ReadStart
}

/** What the acknowledgements of a read need. */
export interface AcknowledgementsContext {
  readonly store: CheckpointStoreShape
  /** Where checkpoints are kept; none when `undefined`. */
  readonly key: CheckpointKey | undefined
  readonly checkpointEvery: number
  readonly startOffset: number
  /** The sha256 of the source's first `startOffset` bytes, for a source without a strong validator. */
  readonly startPrefixSha256: string | undefined
  /** Ranges past `startOffset` handled before (a resume over segments). */
  readonly startRanges: ReadonlyArray<ByteRange>
  /** The version of the source being read. */
  readonly identity: () => SourceIdentity | undefined
  /** The size of the last chunk read, recorded to start a resume with. */
  readonly chunkSize: () => number
}

/** A chunk emitted but not yet acknowledged whole, kept for its prefix digest. */
interface HashedChunk {
  readonly offset: number
  readonly bytes: Uint8Array
  readonly hashBefore: Hash
}

/** Makes the acknowledgements of one read. */
export const makeAcknowledgements = (context: AcknowledgementsContext): Acknowledgements => {
  const { key, store } = context
  let emitted = context.startOffset
  let acknowledged = context.startOffset
  let savedOffset = context.startOffset
  let savedOutput: OutputCheck | undefined
  const startPrefix = context.startPrefixSha256
  /** The ends of the chunks emitted and not yet acknowledged whole, oldest first from `head`. */
  let ends: Array<number> = []
  let hashed: Array<HashedChunk | undefined> = []
  let head = 0
  let sinceCheckpoint = 0
  /** The chunk the acknowledged offset falls in or ends, for a prefix digest there. */
  let acknowledgedChunk: HashedChunk | undefined
  let finished = false
  let complete = false
  /** Ranges past `acknowledged` acknowledged too (a read over segments), sorted, disjoint, not touching it. */
  const ranges: Array<ByteRange> = context.startRanges.filter((range) => range.start > acknowledged)
    .map((range) => ({ start: range.start, end: range.end }))

  /** Moves `acknowledged` over the ranges it now touches. */
  const absorbRanges = () => {
    while (ranges.length > 0 && ranges[0]!.start <= acknowledged) {
      acknowledged = Math.max(acknowledged, ranges.shift()!.end)
    }
  }

  const prefixSha256 = (): string | undefined => {
    const chunk = acknowledgedChunk
    if (chunk === undefined) return startPrefix
    return chunk.hashBefore.copy().update(chunk.bytes.subarray(0, acknowledged - chunk.offset)).digest("hex")
  }

  const save = (output: OutputCheck | undefined) =>
    Effect.suspend(() => {
      const identity = context.identity()
      if (key === undefined || identity === undefined || complete) return Effect.void
      const offset = acknowledged
      const prefix = prefixSha256()
      return Effect.flatMap(Clock.currentTimeMillis, (updatedAt) =>
        store.save({
          key,
          offset,
          identity,
          chunkSize: context.chunkSize(),
          updatedAt,
          ...(output === undefined ? {} : { output }),
          ...(prefix === undefined ? {} : { prefixSha256: prefix }),
          ...(ranges.length === 0 ? {} : { ranges: ranges.map((range) => ({ start: range.start, end: range.end })) })
        })).pipe(
          Effect.tap(() => {
            savedOffset = offset
            savedOutput = output
            sinceCheckpoint = 0
          }),
          Effect.withSpan("StreamingReader.checkpoint", { attributes: { offset } })
        )
    })

  /** Every byte of a finished read is acknowledged: its checkpoint is no longer needed. */
  const completeIfDone = Effect.suspend(() => {
    if (!finished || complete || acknowledged < emitted || ranges.length > 0) return Effect.void
    complete = true
    return key === undefined ? Effect.void : store.delete(key)
  })

  /** After an acknowledgement: the checkpoint goes when a finished read is all acknowledged, else one is saved when due. */
  const afterAcknowledging = (output: OutputCheck | undefined) =>
    finished && acknowledged >= emitted && ranges.length === 0
      ? completeIfDone
      : key !== undefined && sinceCheckpoint >= context.checkpointEvery
      ? save(output)
      : Effect.void

  const chunksEndingBy = (end: number): number => {
    let count = 0
    for (let index = head; index < ends.length && ends[index]! <= end; index++) count++
    return count
  }

  return {
    emitted: () => emitted,
    acknowledged: () => acknowledged,
    emit: (bytes, hashBefore) => {
      // Without checkpoints or prefix digests, the ends of chunks are never asked for: none is kept.
      if (key === undefined && hashBefore === undefined) {
        emitted += bytes.length
        return
      }
      if (hashBefore !== undefined) {
        while (hashed.length < ends.length) hashed.push(undefined)
        hashed.push({ offset: emitted, bytes, hashBefore })
      }
      emitted += bytes.length
      ends.push(emitted)
    },
    emitRange: (end) => {
      emitted = Math.max(emitted, end)
    },
    acknowledgeRange: (start, end, output) =>
      Effect.suspend(() => {
        if (end <= start) return Effect.void
        if (start <= acknowledged) {
          acknowledged = Math.max(acknowledged, end)
          absorbRanges()
        } else {
          addRange(ranges, start, end)
        }
        sinceCheckpoint++
        return afterAcknowledging(output)
      }),
    dropRanges: () => {
      ranges.splice(0)
    },
    rangeCheckpointDue: () => key !== undefined && sinceCheckpoint + 1 >= context.checkpointEvery,
    checkpointDue: (end) =>
      key !== undefined && end > acknowledged && sinceCheckpoint + chunksEndingBy(end) >= context.checkpointEvery,
    acknowledge: (end, output) =>
      Effect.suspend(() => {
        if (end <= acknowledged) return Effect.void
        if (end > emitted) {
          return Effect.dieMessage(`acknowledged offset ${end} is past the ${emitted} bytes emitted`)
        }
        while (head < ends.length && ends[head]! <= end) {
          acknowledgedChunk = hashed[head] ?? acknowledgedChunk
          head++
          sinceCheckpoint++
        }
        if (head < hashed.length && hashed[head] !== undefined && hashed[head]!.offset < end) {
          acknowledgedChunk = hashed[head]
        }
        if (head > 1024 && head * 2 > ends.length) {
          ends = ends.slice(head)
          hashed = hashed.slice(head)
          head = 0
        }
        acknowledged = end
        return afterAcknowledging(output)
      }),
    checkpoint: (output) =>
      Effect.suspend(() =>
        acknowledged === savedOffset && (output === undefined || output === savedOutput) ? Effect.void : save(output)
      ),
    finish: Effect.suspend(() => {
      finished = true
      return completeIfDone
    }),
    resumePoint: () => {
      const identity = context.identity()
      const prefix = prefixSha256()
      return {
        offset: acknowledged,
        ...(identity === undefined ? {} : { identity }),
        ...(prefix === undefined ? {} : { prefixSha256: prefix }),
        ...(ranges.length === 0 ? {} : { ranges: ranges.map((range) => ({ start: range.start, end: range.end })) })
      }
    }
  }
}
