/**
 * BufferPool: the buffers reads hand out with `reuseBuffers`, shared by every read of one
 * reader. Free buffers are kept by exact size, up to a byte cap; beyond it they are left to
 * the garbage collector. A buffer in use is always covered by a memory reservation of its size,
 * so the budget bounds the buffers in use and the cap bounds the ones kept.
 */

/** A pool of reusable buffers. */
export interface BufferPool {
  /** A buffer of exactly `size` bytes: a free one, or a new one. */
  readonly take: (size: number) => Uint8Array
  /** Gives a buffer back; it is kept when the cap allows. */
  readonly give: (buffer: Uint8Array) => void
  /** Drops every free buffer (the emergency path); returns the bytes dropped. */
  readonly clear: () => number
  /** Bytes held in free buffers. */
  readonly freeBytes: () => number
}

/** A pool that keeps at most `maxFreeBytes` in free buffers. */
export const makeBufferPool = (maxFreeBytes: number): BufferPool => {
  const free = new Map<number, Array<Uint8Array>>()
  let freeBytes = 0
  return {
    take: (size) => {
      const buffer = free.get(size)?.pop()
      if (buffer === undefined) return Buffer.allocUnsafeSlow(size)
      freeBytes -= size
      return buffer
    },
    give: (buffer) => {
      if (freeBytes + buffer.byteLength > maxFreeBytes) return
      const list = free.get(buffer.byteLength)
      if (list === undefined) free.set(buffer.byteLength, [buffer])
      else list.push(buffer)
      freeBytes += buffer.byteLength
    },
    clear: () => {
      const dropped = freeBytes
      free.clear()
      freeBytes = 0
      return dropped
    },
    freeBytes: () => freeBytes
  }
}
