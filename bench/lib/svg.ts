/**
 * Two hand-rolled SVG charts: horizontal bars with min–max whiskers (throughput by variant)
 * and line panels (RSS over time).
 */

const palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f"] as const

const escape = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const fmt = (n: number) => Number.isInteger(n) ? String(n) : n.toFixed(Math.abs(n) < 10 ? 1 : 0)

/** Round tick values from 0 (or `min`) up to at least `max`. */
const ticks = (max: number, min = 0, count = 6): ReadonlyArray<number> => {
  const range = max - min || 1
  const raw = range / count
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power
  const first = Math.floor(min / step) * step
  const values: Array<number> = []
  // Stop at the first tick within 1 % of the maximum (60.05 s of data ends at 60, not 80).
  for (let v = first; v < max * 0.99 + step; v += step) values.push(Number(v.toPrecision(12)))
  return values
}

/** One bar: a variant's median with its min and max; `undefined` median for a failed variant. */
export interface Bar {
  readonly group: string
  readonly label: string
  readonly median: number | undefined
  readonly min: number
  readonly max: number
  /** A second figure drawn as a dot on the bar's row (the second pass). */
  readonly dot?: number
}

/** A horizontal bar chart, bars grouped under their group's heading, with min–max whiskers. */
export const barChart = (title: string, unit: string, bars: ReadonlyArray<Bar>, dotLabel?: string): string => {
  const width = 960
  const labelWidth = 330
  const right = 90
  const rowHeight = 22
  const top = 56
  const groups = [...new Set(bars.map((bar) => bar.group))]
  const height = top + (bars.length + groups.length) * rowHeight + 40
  const maxValue = Math.max(
    1,
    ...bars.map((bar) => Math.max(Number.isFinite(bar.max) ? bar.max : 0, Number.isFinite(bar.dot) ? bar.dot! : 0))
  )
  const axis = ticks(maxValue)
  const scaleMax = axis[axis.length - 1]!
  const plotWidth = width - labelWidth - right
  const x = (value: number) => labelWidth + (value / scaleMax) * plotWidth
  const parts: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escape(title)}</text>`
  ]
  if (dotLabel !== undefined) {
    parts.push(
      `<circle cx="${labelWidth + 6}" cy="38" r="4" fill="white" stroke="#222"/>`,
      `<text x="${labelWidth + 16}" y="42">${escape(dotLabel)}</text>`
    )
  }
  const bottom = height - 30
  for (const tick of axis) {
    parts.push(
      `<line x1="${x(tick)}" y1="${top - 8}" x2="${x(tick)}" y2="${bottom}" stroke="#ddd"/>`,
      `<text x="${x(tick)}" y="${bottom + 14}" text-anchor="middle" fill="#555">${fmt(tick)}</text>`
    )
  }
  parts.push(`<text x="${labelWidth + plotWidth / 2}" y="${bottom + 28}" text-anchor="middle">${escape(unit)}</text>`)
  let row = 0
  groups.forEach((group, index) => {
    const color = palette[index % palette.length]!
    parts.push(`<text x="8" y="${top + row * rowHeight + 14}" font-weight="bold">${escape(group)}</text>`)
    row++
    for (const bar of bars.filter((b) => b.group === group)) {
      const y = top + row * rowHeight
      parts.push(`<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${escape(bar.label)}</text>`)
      if (bar.median === undefined || !Number.isFinite(bar.median)) {
        parts.push(`<text x="${labelWidth + 4}" y="${y + 14}" fill="#c00">failed</text>`)
      } else {
        parts.push(
          `<rect x="${labelWidth}" y="${y + 3}" width="${Math.max(1, x(bar.median) - labelWidth)}" height="${
            rowHeight - 6
          }" fill="${color}"/>`,
          `<line x1="${x(bar.min)}" y1="${y + rowHeight / 2}" x2="${x(bar.max)}" y2="${
            y + rowHeight / 2
          }" stroke="#222"/>`,
          `<line x1="${x(bar.min)}" y1="${y + 6}" x2="${x(bar.min)}" y2="${y + rowHeight - 6}" stroke="#222"/>`,
          `<line x1="${x(bar.max)}" y1="${y + 6}" x2="${x(bar.max)}" y2="${y + rowHeight - 6}" stroke="#222"/>`,
          `<text x="${Math.max(x(bar.max), bar.dot === undefined ? 0 : x(bar.dot)) + 8}" y="${y + 14}">${
            fmt(Math.round(bar.median))
          }</text>`
        )
        if (bar.dot !== undefined && Number.isFinite(bar.dot)) {
          parts.push(`<circle cx="${x(bar.dot)}" cy="${y + rowHeight / 2}" r="4" fill="white" stroke="#222"/>`)
        }
      }
      row++
    }
  })
  parts.push(`</svg>`)
  return parts.join("\n")
}

/** One line of a panel. */
export interface Line {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
  readonly dashed?: boolean
}

/** One panel of a line chart, with an optional horizontal reference line (a goal). */
export interface Panel {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  readonly lines: ReadonlyArray<Line>
  readonly reference?: { readonly y: number; readonly label: string }
}

/** Line panels stacked vertically, each with its own axes and legend. */
export const lineChart = (title: string, panels: ReadonlyArray<Panel>): string => {
  const width = 960
  const panelHeight = 300
  const left = 70
  const right = 190
  const height = 40 + panels.length * panelHeight
  const parts: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escape(title)}</text>`
  ]
  panels.forEach((panel, index) => {
    const top = 40 + index * panelHeight + 24
    const bottom = top + panelHeight - 80
    const plotRight = width - right
    const all = panel.lines.flatMap((line) => line.points)
    const xMax = Math.max(1, ...all.map(([px]) => px))
    const yValues = [...all.map(([, py]) => py), ...(panel.reference === undefined ? [] : [panel.reference.y])]
    const yMin = Math.min(0, ...yValues)
    const yAxis = ticks(Math.max(1, ...yValues), yMin)
    const xAxis = ticks(xMax)
    const xTop = xAxis[xAxis.length - 1]!
    const yBottom = yAxis[0]!
    const yTop = yAxis[yAxis.length - 1]!
    const x = (value: number) => left + (value / xTop) * (plotRight - left)
    const y = (value: number) => bottom - ((value - yBottom) / (yTop - yBottom || 1)) * (bottom - top)
    parts.push(`<text x="${left}" y="${top - 8}" font-weight="bold">${escape(panel.title)}</text>`)
    for (const tick of yAxis) {
      parts.push(
        `<line x1="${left}" y1="${y(tick)}" x2="${plotRight}" y2="${y(tick)}" stroke="#eee"/>`,
        `<text x="${left - 6}" y="${y(tick) + 4}" text-anchor="end" fill="#555">${fmt(tick)}</text>`
      )
    }
    for (const tick of xAxis) {
      parts.push(`<text x="${x(tick)}" y="${bottom + 16}" text-anchor="middle" fill="#555">${fmt(tick)}</text>`)
    }
    parts.push(
      `<line x1="${left}" y1="${bottom}" x2="${plotRight}" y2="${bottom}" stroke="#333"/>`,
      `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`,
      `<text x="${(left + plotRight) / 2}" y="${bottom + 32}" text-anchor="middle">${escape(panel.xLabel)}</text>`,
      `<text transform="translate(16 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle">${
        escape(panel.yLabel)
      }</text>`
    )
    if (panel.reference !== undefined) {
      const ry = y(panel.reference.y)
      parts.push(
        `<line x1="${left}" y1="${ry}" x2="${plotRight}" y2="${ry}" stroke="#c00" stroke-dasharray="6 4"/>`,
        `<text x="${plotRight + 6}" y="${ry + 4}" fill="#c00">${escape(panel.reference.label)}</text>`
      )
    }
    panel.lines.forEach((line, lineIndex) => {
      const color = palette[lineIndex % palette.length]!
      const points = line.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(" ")
      parts.push(
        `<polyline fill="none" stroke="${color}" stroke-width="1.5"${
          line.dashed === true ? " stroke-dasharray=\"4 3\"" : ""
        } points="${points}"/>`,
        `<rect x="${plotRight + 6}" y="${top + 20 + lineIndex * 18 - 9}" width="12" height="3" fill="${color}"/>`,
        `<text x="${plotRight + 22}" y="${top + 20 + lineIndex * 18 - 4}">${escape(line.name)}</text>`
      )
    })
  })
  parts.push(`</svg>`)
  return parts.join("\n")
}
