/**
 * A plain `node:http` file server on 127.0.0.1 for the HTTP scenarios, in its own process so
 * it does not share an event loop with the client measured. Serves `<root>/<name>` with
 * Range (206, Content-Range, 416), ETag and Last-Modified; `?delayMs=D` writes the body in
 * 64 KiB pieces and waits D ms before each (injected latency per response chunk); `?faults=1`
 * answers about one request in ten with a 503 and cuts the connection (`socket.destroy`) after
 * a pseudo-random 2–8 MiB of each response body it does not refuse (a fixed seed: the same
 * sequence of faults each run), so a reader has to resume with Range requests.
 * Usage: `node bench/runners/server.js <root>`; prints `listening <port>` once ready.
 */
import * as Http from "node:http"
import * as NodeFs from "node:fs"
import * as NodeFsPromises from "node:fs/promises"
import * as NodePath from "node:path"
import { pipeline } from "node:stream/promises"
import { setTimeout as sleep } from "node:timers/promises"

/** Size of each delayed piece of a body. */
const delayedPiece = 64 * 1024

const root = process.argv[2] ?? "."

/** Share of fault-mode requests answered with a 503. */
const unavailableShare = 0.1
/** Fault-mode bodies are cut after this many bytes at least, and at most. */
const cutRange = [2 * 1024 * 1024, 8 * 1024 * 1024] as const
/** Size of each piece a fault-mode body is written in. */
const faultyPiece = 256 * 1024

/** A small seeded generator (mulberry32) of numbers in [0, 1): the faults of one server. */
const seeded = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const faultDraw = seeded(0x5eed)

/** Resolves once the response can take more bytes, or at once if it was closed. */
const drained = (response: Http.ServerResponse) =>
  new Promise<void>((resolve) => {
    const done = () => {
      response.off("drain", done)
      response.off("close", done)
      resolve()
    }
    response.on("drain", done)
    response.on("close", done)
  })

const writeDelayed = async (
  path: string,
  start: number,
  end: number,
  delayMs: number,
  response: Http.ServerResponse
) => {
  const handle = await NodeFsPromises.open(path, "r")
  try {
    let position = start
    while (position <= end && !response.destroyed) {
      await sleep(delayMs)
      const length = Math.min(delayedPiece, end - position + 1)
      const piece = Buffer.allocUnsafe(length)
      const { bytesRead } = await handle.read(piece, 0, length, position)
      if (bytesRead === 0) break
      position += bytesRead
      if (!response.write(piece.subarray(0, bytesRead))) await drained(response)
    }
    response.end()
  } finally {
    await handle.close()
  }
}

/** Resolves once `piece` is handed to the socket, or at once if the response was closed. */
const written = (response: Http.ServerResponse, piece: Uint8Array) =>
  new Promise<void>((resolve) => {
    if (response.destroyed) return resolve()
    response.write(piece, () => resolve())
  })

/** Writes bytes `start`..`end` of `path`, then destroys the connection once `cutAfter` bytes are out. */
const writeCut = async (path: string, start: number, end: number, cutAfter: number, response: Http.ServerResponse) => {
  const handle = await NodeFsPromises.open(path, "r")
  try {
    const stop = Math.min(end + 1, start + cutAfter)
    let position = start
    while (position < stop && !response.destroyed) {
      const length = Math.min(faultyPiece, stop - position)
      const piece = Buffer.allocUnsafe(length)
      const { bytesRead } = await handle.read(piece, 0, length, position)
      if (bytesRead === 0) break
      position += bytesRead
      await written(response, piece.subarray(0, bytesRead))
    }
    if (position > end) response.end()
    else response.socket?.destroy()
  } finally {
    await handle.close()
  }
}

const serve = async (request: Http.IncomingMessage, response: Http.ServerResponse) => {
  const url = new URL(request.url ?? "/", "http://127.0.0.1")
  const path = NodePath.join(root, NodePath.basename(url.pathname))
  const info = await NodeFsPromises.stat(path).catch(() => undefined)
  if (info === undefined || !info.isFile()) {
    response.writeHead(404).end()
    return
  }
  const size = info.size
  const faults = url.searchParams.get("faults") === "1"
  if (faults && request.method !== "HEAD" && faultDraw() < unavailableShare) {
    response.writeHead(503, { "content-length": 0, "retry-after": "0" }).end()
    return
  }
  const headers: Record<string, string | number> = {
    "accept-ranges": "bytes",
    "content-type": "application/octet-stream",
    "etag": `"${size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`,
    "last-modified": info.mtime.toUTCString()
  }
  let start = 0
  let end = size - 1
  let status = 200
  const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? "")
  if (range !== null) {
    start = Number(range[1])
    end = range[2] === "" ? size - 1 : Math.min(Number(range[2]), size - 1)
    if (start >= size) {
      response.writeHead(416, { ...headers, "content-range": `bytes */${size}` }).end()
      return
    }
    status = 206
    headers["content-range"] = `bytes ${start}-${end}/${size}`
  }
  headers["content-length"] = end - start + 1
  response.writeHead(status, headers)
  if (request.method === "HEAD" || end < start) {
    response.end()
    return
  }
  const delayMs = Number(url.searchParams.get("delayMs") ?? "0")
  if (faults) {
    await writeCut(path, start, end, cutRange[0] + Math.floor(faultDraw() * (cutRange[1] - cutRange[0])), response)
  } else if (delayMs > 0) await writeDelayed(path, start, end, delayMs, response)
  else await pipeline(NodeFs.createReadStream(path, { start, end, highWaterMark: 256 * 1024 }), response)
}

const server = Http.createServer((request, response) => {
  serve(request, response).catch(() => response.destroy())
})
server.keepAliveTimeout = 60_000
server.listen(0, "127.0.0.1", () => {
  const address = server.address()
  process.stdout.write(`listening ${typeof address === "object" && address !== null ? address.port : 0}\n`)
})
