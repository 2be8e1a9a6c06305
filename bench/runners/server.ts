/**
 * A plain `node:http` file server on 127.0.0.1 for the HTTP scenarios, in its own process so
 * it does not share an event loop with the client measured. Serves `<root>/<name>` with
 * Range (206, Content-Range, 416), ETag and Last-Modified; `?delayMs=D` writes the body in
 * 64 KiB pieces and waits D ms before each (injected latency per response chunk).
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

const serve = async (request: Http.IncomingMessage, response: Http.ServerResponse) => {
  const url = new URL(request.url ?? "/", "http://127.0.0.1")
  const path = NodePath.join(root, NodePath.basename(url.pathname))
  const info = await NodeFsPromises.stat(path).catch(() => undefined)
  if (info === undefined || !info.isFile()) {
    response.writeHead(404).end()
    return
  }
  const size = info.size
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
  if (delayMs > 0) await writeDelayed(path, start, end, delayMs, response)
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
