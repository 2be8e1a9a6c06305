/**
 * The data the scenarios read: files of random bytes written once into a temp dir, flushed
 * to disk (so no write-back runs during a measurement) and read once (so they are page-cached).
 */
import { createHash, randomFillSync } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeFsPromises from "node:fs/promises"

const block = 16 * 1024 * 1024

/** Writes `size` random bytes to `path`, flushes them to disk and gives their sha256 (hex). */
export const makeRandomFile = async (path: string, size: number): Promise<string> => {
  const handle = await NodeFsPromises.open(path, "w")
  const hash = createHash("sha256")
  try {
    const buffer = Buffer.allocUnsafe(Math.min(block, size))
    let written = 0
    while (written < size) {
      const length = Math.min(buffer.length, size - written)
      randomFillSync(buffer, 0, length)
      hash.update(buffer.subarray(0, length))
      await handle.write(buffer, 0, length, written)
      written += length
    }
    await handle.sync()
  } finally {
    await handle.close()
  }
  return hash.digest("hex")
}

/** Reads the whole file once, so it is in the page cache. */
export const warm = async (path: string): Promise<void> => {
  const handle = await NodeFsPromises.open(path, "r")
  try {
    const buffer = Buffer.allocUnsafe(block)
    let position = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, block, position)
      if (bytesRead === 0) return
      position += bytesRead
    }
  } finally {
    await handle.close()
  }
}

/** The sha256 (hex) of a whole file, read synchronously (to check a run's output after it ended). */
export const fileSha256 = (path: string): string => {
  const hash = createHash("sha256")
  const fd = NodeFs.openSync(path, "r")
  try {
    const buffer = Buffer.allocUnsafe(block)
    for (;;) {
      const bytesRead = NodeFs.readSync(fd, buffer, 0, block, null)
      if (bytesRead === 0) return hash.digest("hex")
      hash.update(buffer.subarray(0, bytesRead))
    }
  } finally {
    NodeFs.closeSync(fd)
  }
}

/**
 * Removes a file or directory if it is there; tries again for a while when a child that was
 * just killed still had a file open or was still writing into the directory.
 */
export const remove = (path: string): void =>
  NodeFs.rmSync(path, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
