/**
 * The demo's HTTP server: serves one large deterministic object on 127.0.0.1 without holding
 * it in memory (every byte is computed from its offset), with Range / 206 / Content-Range, a
 * strong ETag and Content-Length, and a plan of faults: dropped connections, 503 answers with
 * `Retry-After: 1`, and one stall.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import * as Http from "node:http"
import type { Socket } from "node:net"
import {
  formatContentRange,
  formatUnsatisfiedRange,
  parseRangeHeader,
  servedRange
} from "../layers/sources/HttpRanges.js"

/** Bytes in one generated block; each block is computed from its index alone. */
export const blockSize = 64 * 1024

/** The path the object is served at. */
export const objectPath = "/demo.bin"

/** The faults the server injects, as byte offsets of the object; each fires once. */
export interface FaultPlan {
  /** Offsets at which the connection is destroyed mid-body. */
  readonly dropAt: ReadonlyArray<number>
  /** The first request whose range starts at or past each offset is answered 503 with `Retry-After: 1`. */
  readonly unavailableFrom: ReadonlyArray<number>
  /** Offsets at which the server stops writing the body until the client gives up. */
  readonly stallAt: ReadonlyArray<number>
}

/** The default plan for an object of `size` bytes: drops at 12 %, 30 % and 85 %, 503s from 10 % and 35 %, a stall at 60 %. */
export const defaultFaultPlan = (size: number): FaultPlan => {
  const at = (fraction: number) => Math.floor(size * fraction)
  return { dropAt: [at(0.12), at(0.3), at(0.85)], unavailableFrom: [at(0.1), at(0.35)], stallAt: [at(0.6)] }
}

/** No faults at all. */
export const noFaults: FaultPlan = { dropAt: [], unavailableFrom: [], stallAt: [] }

/** What the server served and did, one entry per fault that fired. */
export interface FaultEvent {
  readonly kind: "drop" | "unavailable" | "stall"
  /** The byte offset the fault fired at (for `unavailable`: where the refused range started). */
  readonly offset: number
  /** The ordinal of the request it fired in, from 1. */
  readonly request: number
}

/** How the server is made. */
export interface DemoServerOptions {
  /** Size of the object in bytes (default 256 MiB). */
  readonly size?: number
  /** The object's seed: another seed is another object (default 1). */
  readonly seed?: number
  /** The faults injected (default `defaultFaultPlan(size)`). */
  readonly faults?: FaultPlan
}

/** A running demo server. */
export interface DemoServer {
  /** The object's URL. */
  readonly url: string
  /** The object's size in bytes. */
  readonly size: number
  /** The object's strong ETag (quotes included). */
  readonly etag: string
  /** The sha256 of the whole object, hex; computed once, block by block, the first time it is asked for. */
  readonly sha256: Effect.Effect<string>
  /** How many requests for the object arrived. */
  readonly requests: () => number
  /** The faults that fired so far, oldest first. */
  readonly faults: () => ReadonlyArray<FaultEvent>
  /** How many TCP connections are open right now. */
  readonly openConnections: () => number
}

/** Fills `out` (a multiple of 4 bytes long, 4-byte aligned) with block `index` of the object with `seed`. */
export const fillBlock = (index: number, seed: number, out: Uint8Array): void => {
  const words = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2)
  let x = (Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0 || 1
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x
  }
}

/** Blocks generated per write: one buffer of this many blocks per `write` call. */
const blocksPerWrite = 4

/** The object's bytes `[start, end)` (at most `blocksPerWrite` blocks, from a block's start) generated into `buffer`. */
const generate = (seed: number, start: number, end: number, buffer: Buffer): Buffer => {
  const first = Math.floor(start / blockSize)
  const last = Math.floor((end - 1) / blockSize)
  for (let block = first; block <= last; block++) {
    fillBlock(block, seed, buffer.subarray((block - first) * blockSize, (block - first + 1) * blockSize))
  }
  const from = start - first * blockSize
  return buffer.subarray(from, from + end - start)
}

/** The sha256 of the object, hashed block by block with one reused buffer, yielding between slices. */
const hashObject = (seed: number, size: number): Effect.Effect<string> =>
  Effect.gen(function*() {
    const hash = createHash("sha256")
    const slice = 16 * blockSize
    const buffer = Buffer.allocUnsafeSlow(slice)
    for (let offset = 0; offset < size; offset += slice) {
      const length = Math.min(slice, size - offset)
      const blocks = Math.ceil(length / blockSize)
      for (let k = 0; k < blocks; k++) {
        fillBlock(offset / blockSize + k, seed, buffer.subarray(k * blockSize, (k + 1) * blockSize))
      }
      hash.update(buffer.subarray(0, length))
      yield* Effect.yieldNow()
    }
    return hash.digest("hex")
  })

/** Serves the object on 127.0.0.1 (a free port) until the scope closes; closing destroys every socket. */
export const makeDemoServer = (options: DemoServerOptions = {}): Effect.Effect<DemoServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const size = options.size ?? 256 * 1024 * 1024
    const seed = options.seed ?? 1
    const plan = options.faults ?? defaultFaultPlan(size)
    const etag = `"demo-${seed.toString(16)}-${size.toString(16)}"`
    const lastModified = new Date(Date.UTC(2024, 0, 1)).toUTCString()
    const pendingDrops = [...plan.dropAt].sort((a, b) => a - b)
    const pendingStalls = [...plan.stallAt].sort((a, b) => a - b)
    const pendingUnavailable = [...plan.unavailableFrom].sort((a, b) => a - b)
    const events: Array<FaultEvent> = []
    const sockets = new Set<Socket>()
    let requests = 0

    /** The first pending drop or stall in `(start, end)`; it stays pending until it fires. */
    const nextFault = (start: number, end: number) => {
      const within = (offset: number) => offset > start && offset < end
      const drop = pendingDrops.find(within)
      const stall = pendingStalls.find(within)
      if (drop === undefined && stall === undefined) return undefined
      return stall === undefined || (drop !== undefined && drop <= stall)
        ? { kind: "drop" as const, offset: drop! }
        : { kind: "stall" as const, offset: stall }
    }

    /** Marks a fault fired: it is no longer pending and is recorded. */
    const fire = (fault: { readonly kind: "drop" | "stall"; readonly offset: number }, request: number) => {
      const pending = fault.kind === "drop" ? pendingDrops : pendingStalls
      const index = pending.indexOf(fault.offset)
      if (index !== -1) pending.splice(index, 1)
      events.push({ ...fault, request })
    }

    /** Generated buffers whose writes have been flushed, ready to be filled again. */
    const freeBuffers: Array<Buffer> = []

    const serve = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
      const path = new URL(req.url ?? "/", "http://127.0.0.1").pathname
      if (path !== objectPath) {
        res.writeHead(404)
        return res.end()
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" })
        return res.end()
      }
      requests += 1
      const request = requests
      const headers: Record<string, string | number> = {
        "content-type": "application/octet-stream",
        "accept-ranges": "bytes",
        etag,
        "last-modified": lastModified
      }
      const range = parseRangeHeader(req.headers.range)
      const ifRange = req.headers["if-range"]
      const rangeApplies = range !== undefined && (ifRange === undefined || ifRange === etag)
      let status = 200
      let start = 0
      let end = size
      if (rangeApplies) {
        const served = servedRange(range, size)
        if (served === undefined) {
          res.writeHead(416, { ...headers, "content-range": formatUnsatisfiedRange(size) })
          return res.end()
        }
        status = 206
        start = served.start
        end = served.end + 1
        headers["content-range"] = formatContentRange({ ...served, total: size })
      }
      const unavailableIndex = pendingUnavailable.findIndex((offset) => start >= offset)
      if (unavailableIndex !== -1) {
        pendingUnavailable.splice(unavailableIndex, 1)
        events.push({ kind: "unavailable", offset: start, request })
        res.writeHead(503, { "retry-after": "1", "content-length": 0 })
        return res.end()
      }
      headers["content-length"] = end - start
      res.writeHead(status, headers)
      if (req.method === "HEAD") return res.end()

      // A fault planned inside this range fires when the body reaches it; a request the client
      // abandons before then leaves it pending for a later request.
      const fault = nextFault(start, end)
      const limit = fault?.offset ?? end
      let position = start
      const writeMore = () => {
        while (position < limit) {
          const next = Math.min(limit, (Math.floor(position / blockSize) + blocksPerWrite) * blockSize)
          const buffer = freeBuffers.pop() ?? Buffer.allocUnsafeSlow(blocksPerWrite * blockSize)
          const bytes = generate(seed, position, next, buffer)
          position = next
          if (!res.write(bytes, () => void freeBuffers.push(buffer))) return void res.once("drain", writeMore)
        }
        if (fault === undefined) return void res.end()
        fire(fault, request)
        // a drop flushes what was written, then cuts the connection mid-body; a stall says
        // nothing more, so the client's stall timeout ends the attempt
        if (fault.kind === "drop") res.write(new Uint8Array(0), () => req.socket.destroy())
      }
      writeMore()
    }

    const server = Http.createServer(serve)
    /** Called whenever a socket closes (set while the server shuts down). */
    let onSocketClosed = () => {}
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => {
        sockets.delete(socket)
        onSocketClosed()
      })
    })

    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.once("error", (error) => resume(Effect.die(error)))
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          if (address === null || typeof address === "string") return resume(Effect.dieMessage("no TCP address"))
          resume(Effect.succeed(address.port))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          let serverClosed = false
          let done = false
          onSocketClosed = () => {
            if (serverClosed && sockets.size === 0 && !done) {
              done = true
              resume(Effect.void)
            }
          }
          for (const socket of sockets) socket.destroy()
          server.close(() => {
            serverClosed = true
            onSocketClosed()
          })
        })
    )

    const sha256 = yield* Effect.cached(hashObject(seed, size))

    const demoServer: DemoServer = {
      url: `http://127.0.0.1:${port}${objectPath}`,
      size,
      etag,
      sha256,
      requests: () => requests,
      faults: () => events.slice(),
      openConnections: () => sockets.size
    }
    return demoServer
  })
