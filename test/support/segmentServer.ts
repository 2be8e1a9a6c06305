/**
 * A real HTTP server on 127.0.0.1 for reads over segments: serves one object with Range, a
 * strong ETag and If-Range / If-Match, paced per connection when asked, with a fault schedule
 * per request (drop the connection after some bytes, answer an error status), and counts what
 * it sent and how many connections were open at once.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import {
  formatContentRange,
  formatUnsatisfiedRange,
  parseRangeHeader,
  servedRange
} from "../../src/layers/sources/HttpRanges.js"
import { listenOnLoopback } from "./httpServer.js"

/** What one request to the object meets. */
export type SegmentFault =
  | { readonly _tag: "Drop"; readonly after: number }
  | { readonly _tag: "Status"; readonly status: number }

/** How the server answers; every field can be changed while it runs. */
export interface SegmentServeOptions {
  readonly body: Uint8Array
  /** The ETag sent (quotes included; `W/` for a weak one); none when `undefined`. */
  readonly etag: string | undefined
  /** Answer every request 200 with the whole body. */
  readonly ignoreRange: boolean
  /** Send `*` as the total in Content-Range. */
  readonly unknownTotal: boolean
  /** Disregard `If-Match` and `If-Range` (a server that serves whatever version it has now). */
  readonly ignoreConditionals: boolean
  /** Bytes per second per connection; unpaced when `undefined`. */
  readonly bytesPerSecond: number | undefined
  /** The fault the request with this index (0 for the first to the object) meets, if any. */
  readonly faultFor: (request: number) => SegmentFault | undefined
}

/** A running segment server. */
export interface SegmentServer {
  /** The object's URL. */
  readonly url: string
  /** Body bytes written to sockets so far. */
  readonly bytesSent: () => number
  /** Requests to the object so far. */
  readonly requests: () => number
  /** The `Range` header of every request so far, oldest first (`undefined` when absent). */
  readonly ranges: () => ReadonlyArray<string | undefined>
  /** The most requests to the object in progress at once so far. */
  readonly peakConcurrent: () => number
  /** When each request so far arrived and closed (ms, `performance.now()`; `end` undefined while in progress), oldest first. */
  readonly timeline: () => ReadonlyArray<{ readonly start: number; readonly end: number | undefined }>
  /** Changes how the server answers from the next request on. */
  readonly configure: (options: Partial<SegmentServeOptions>) => void
}

/** Starts a segment server; it closes with the scope. */
export const makeSegmentServer = (
  initial: Partial<SegmentServeOptions> & { readonly body: Uint8Array }
): Effect.Effect<SegmentServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    let options: SegmentServeOptions = {
      etag: "\"v1\"",
      ignoreRange: false,
      unknownTotal: false,
      ignoreConditionals: false,
      bytesPerSecond: undefined,
      faultFor: () => undefined,
      ...initial
    }
    let sent = 0
    let requests = 0
    let concurrent = 0
    let peak = 0
    const ranges: Array<string | undefined> = []
    const timeline: Array<{ readonly start: number; end: number | undefined }> = []

    const server = Http.createServer((req, res) => {
      const index = requests++
      ranges.push(req.headers.range)
      concurrent++
      peak = Math.max(peak, concurrent)
      const span: { readonly start: number; end: number | undefined } = { start: performance.now(), end: undefined }
      timeline.push(span)
      res.on("close", () => {
        concurrent--
        span.end = performance.now()
      })
      const { body, etag } = options
      const size = body.byteLength
      const fault = options.faultFor(index)
      if (fault?._tag === "Status") {
        res.writeHead(fault.status)
        return res.end()
      }
      const headers: Record<string, string | number> = { "content-type": "application/octet-stream" }
      if (etag !== undefined) headers["etag"] = etag
      if (!options.ignoreRange) headers["accept-ranges"] = "bytes"
      const strong = etag !== undefined && !etag.startsWith("W/")
      const ifMatch = options.ignoreConditionals ? undefined : req.headers["if-match"]
      if (ifMatch !== undefined && ifMatch !== "*" && (!strong || ifMatch !== etag)) {
        res.writeHead(412, headers)
        return res.end()
      }
      const ifRange = options.ignoreConditionals ? undefined : req.headers["if-range"]
      const range = options.ignoreRange ? undefined : parseRangeHeader(req.headers.range)
      const rangeApplies = range !== undefined && (ifRange === undefined || (strong && ifRange === etag))
      let start = 0
      let end = size - 1
      let status = 200
      if (rangeApplies) {
        const served = servedRange(range, size)
        if (served === undefined) {
          res.writeHead(416, { ...headers, "content-range": formatUnsatisfiedRange(size) })
          return res.end()
        }
        status = 206
        start = served.start
        end = served.end
        headers["content-range"] = formatContentRange({
          start,
          end,
          total: options.unknownTotal ? undefined : size
        })
      }
      headers["content-length"] = end - start + 1
      res.writeHead(status, headers)
      const payload = body.subarray(start, end + 1)
      const limit = fault?._tag === "Drop" ? Math.min(fault.after, payload.byteLength) : payload.byteLength
      const pace = options.bytesPerSecond
      const piece = pace === undefined ? 64 * 1024 : Math.max(1024, Math.floor(pace / 50))
      let position = 0
      let closed = false
      res.on("close", () => {
        closed = true
      })
      const writeNext = () => {
        if (closed) return
        if (position >= limit) {
          if (limit < payload.byteLength) res.socket?.destroy()
          else res.end()
          return
        }
        const bytes = payload.subarray(position, Math.min(limit, position + piece))
        position += bytes.byteLength
        sent += bytes.byteLength
        const drained = res.write(bytes)
        // The last bytes of a whole answer end it at once: a request is not counted in progress after its last byte.
        if (position >= payload.byteLength) return res.end()
        if (pace !== undefined) setTimeout(writeNext, (bytes.byteLength / pace) * 1000)
        else if (drained) setImmediate(writeNext)
        else res.once("drain", writeNext)
      }
      writeNext()
    })
    const port = yield* listenOnLoopback(server)
    const segmentServer: SegmentServer = {
      url: `http://127.0.0.1:${port}/object.bin`,
      bytesSent: () => sent,
      requests: () => requests,
      ranges: () => ranges,
      peakConcurrent: () => peak,
      timeline: () => timeline,
      configure: (changes) => {
        options = { ...options, ...changes }
      }
    }
    return segmentServer
  })

/** What each request meets, given a way to change how the server answers from the next request on. */
export type ChangingSchedule = (
  configure: (options: Partial<SegmentServeOptions>) => void
) => (request: number) => SegmentFault | undefined

/** Starts a segment server whose fault schedule may change how it answers, as an object changed mid-read. */
export const makeChangingServer = (
  initial: Partial<Omit<SegmentServeOptions, "faultFor">> & { readonly body: Uint8Array },
  schedule: ChangingSchedule
): Effect.Effect<SegmentServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    let configure: (options: Partial<SegmentServeOptions>) => void = () => undefined
    const server = yield* makeSegmentServer({
      ...initial,
      faultFor: (request) => schedule((options) => configure(options))(request)
    })
    configure = server.configure
    return server
  })
