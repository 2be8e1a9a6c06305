/**
 * HttpRanges: the byte-range headers of RFC 9110 §14 as this library reads and writes them: a
 * `Range: bytes=<start>-[<end>]` request (one range), the `Content-Range` of a 206 or a 416, and
 * `Content-Length`. Used by the HTTP source and by the servers of the demo and the tests.
 */

/** One range a request asks for: `start` to `end` inclusive, or to the end of the object when `end` is absent. */
export interface RequestedRange {
  readonly start: number
  readonly end: number | undefined
}

/** The range a 206 answer says it carries: `start` to `end` inclusive, of `total` bytes (`undefined` for `*`). */
export interface ContentRange {
  readonly start: number
  readonly end: number
  readonly total: number | undefined
}

/** The `Range` header of a request for the bytes from `offset` to the end. */
export const rangeFrom = (offset: number): string => `bytes=${offset}-`

/** The `Range` header asking for the bytes from `start` to `end` (exclusive). */
export const rangeBetween = (start: number, end: number): string => `bytes=${start}-${end - 1}`

/** Parses a `Range: bytes=start-[end]` request header (one range); `undefined` when absent or not of that form. */
export const parseRangeHeader = (header: string | undefined): RequestedRange | undefined => {
  if (header === undefined) return undefined
  const match = /^bytes=(\d+)-(\d*)$/.exec(header.trim())
  if (match === null) return undefined
  const start = Number(match[1])
  const end = match[2] === "" ? undefined : Number(match[2])
  return end !== undefined && end < start ? undefined : { start, end }
}

/** `Content-Range: bytes a-b/total` (total may be `*`); `undefined` when it is anything else. */
export const parseContentRange = (header: string | undefined): ContentRange | undefined => {
  if (header === undefined) return undefined
  const match = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(header.trim())
  if (match === null) return undefined
  const start = Number(match[1])
  const end = Number(match[2])
  const total = match[3] === "*" ? undefined : Number(match[3])
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined
  if (total !== undefined && (!Number.isSafeInteger(total) || end >= total)) return undefined
  return { start, end, total }
}

/**
 * What a server sends for `range` of an object of `size` bytes: `start` to `end` inclusive (the
 * end clamped to the object's), or `undefined` when the range starts past the end (a 416).
 */
export const servedRange = (
  range: RequestedRange,
  size: number
): { readonly start: number; readonly end: number } | undefined =>
  range.start >= size ? undefined : { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) }

/** The `Content-Range` of a 206 answer: `bytes start-end/total`, `*` for an unknown total. */
export const formatContentRange = (range: ContentRange): string =>
  `bytes ${range.start}-${range.end}/${range.total ?? "*"}`

/** The `Content-Range` of a 416 answer for an object of `total` bytes: `bytes *\/total`. */
export const formatUnsatisfiedRange = (total: number): string => `bytes */${total}`

/** The total of a 416's `Content-Range: bytes *\/total`; `undefined` when it is anything else. */
export const parseUnsatisfiedRange = (header: string | undefined): number | undefined => {
  if (header === undefined) return undefined
  const match = /^bytes\s+\*\/(\d+)$/i.exec(header.trim())
  return match === null ? undefined : parseContentLength(match[1])
}

/** A `Content-Length` (or any count of bytes in a header) as a safe integer; `undefined` when absent or unreadable. */
export const parseContentLength = (value: string | undefined): number | undefined => {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined
  const n = Number(value.trim())
  return Number.isSafeInteger(n) ? n : undefined
}
