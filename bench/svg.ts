/**
 * A very small SVG bar-chart writer for bench/REPORT.md: plain SVG 1.1 with inline attributes and a white background,
 * so GitHub renders it as an image in either colour theme. No browser, no dependency.
 */
export interface Bar {
  label: string
  value: number
  /** Whisker for the repetitions' spread. */
  min?: number
  max?: number
  /** A per-bar reference (the strategy's own database ceiling), drawn as a short line over the bar. */
  marker?: { label: string, value: number }
  /** Replaces the bar when the run failed its checks. */
  failed?: boolean
  /** Fill colour; default: a palette colour by position. */
  color?: string
}

/** One entry of the legend line under the plot: a filled box, a solid line (the per-bar marker) or a dashed line. */
export interface LegendEntry {
  label: string
  color: string
  kind: 'box' | 'line' | 'dash'
}

export interface ReferenceLine {
  label: string
  value: number
}

export interface BarChart {
  title: string
  unit: string
  bars: Bar[]
  /** Drawn across the whole plot (the HTTP floor). */
  lines?: ReferenceLine[]
  /** Replaces the default legend (its own ceiling, HTTP floor). */
  legend?: LegendEntry[]
}

const DEFAULT_LEGEND: LegendEntry[] = [
  { label: 'its own database ceiling (same SQL via pg.Pool)', color: '#b3261e', kind: 'line' },
  { label: 'HTTP floor (no database) · whiskers: min–max', color: '#555', kind: 'dash' },
]
/** Rough width of a legend label at 11 px (the SVG has no text measuring). */
const LEGEND_CHAR_PX = 5.6

const WIDTH = 720
/** Room a bar's label needs: a chart with many bars grows wider instead of overlapping them. */
const MIN_SLOT = 92
const HEIGHT = 380
const MARGIN = { top: 48, right: 190, bottom: 56, left: 72 }
/** A reference line more than this many times the highest bar is drawn at the top of the plot, labelled off scale. */
const OFF_SCALE_FACTOR = 2.5
const COLORS = ['#4269d0', '#efb118', '#3ca951', '#ff725c', '#a463f2']

export function escapeXml (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

export function formatNumber (value: number): string {
  if (!Number.isFinite(value)) return '—'
  if (value === 0) return '0'
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US')
  if (Math.abs(value) >= 10) return value.toFixed(1)
  return value.toFixed(2)
}

/** A rounded step so that the axis shows about five ticks. */
export function niceStep (max: number): number {
  if (!(max > 0)) return 1
  const raw = max / 5
  const power = 10 ** Math.floor(Math.log10(raw))
  const fraction = raw / power
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power
}

export function barChart (chart: BarChart): string {
  const width = Math.max(WIDTH, MARGIN.left + MARGIN.right + MIN_SLOT * chart.bars.length)
  const plotW = width - MARGIN.left - MARGIN.right
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom
  const barValues = chart.bars.flatMap((bar) => [bar.failed === true ? 0 : bar.value, bar.max ?? 0, bar.marker?.value ?? 0]).filter(Number.isFinite)
  const barTop = Math.max(...barValues, 0)
  // A reference line far above every bar (the floor's req/s) would flatten the bars: it is drawn at the top, marked off scale.
  const offScale = (value: number): boolean => barTop > 0 && value > barTop * OFF_SCALE_FACTOR
  const lineValues = (chart.lines ?? []).map((line) => line.value).filter((value) => Number.isFinite(value) && !offScale(value))
  const highest = Math.max(barTop, ...lineValues, 0) * 1.08
  const step = niceStep(highest)
  const top = Math.max(step, Math.ceil(highest / step) * step)
  const y = (value: number): number => MARGIN.top + plotH - (Math.min(Math.max(0, value), top) / top) * plotH
  const slot = plotW / Math.max(1, chart.bars.length)
  const barW = Math.min(90, slot * 0.5)
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEIGHT}" viewBox="0 0 ${width} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`)
  out.push(`<rect width="${width}" height="${HEIGHT}" fill="#ffffff"/>`)
  out.push(`<text x="${MARGIN.left}" y="24" font-size="15" font-weight="bold" fill="#222">${escapeXml(chart.title)}</text>`)
  for (let tick = 0; tick <= top + step / 2; tick += step) {
    const ty = y(tick).toFixed(1)
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${ty}" y2="${ty}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${MARGIN.left - 8}" y="${ty}" dy="4" text-anchor="end" fill="#555">${escapeXml(formatNumber(tick))}</text>`)
  }
  out.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#555">${escapeXml(chart.unit)}</text>`)
  chart.bars.forEach((bar, index) => {
    const cx = MARGIN.left + slot * index + slot / 2
    const x = cx - barW / 2
    const color = bar.color ?? COLORS[index % COLORS.length]!
    if (bar.failed === true) {
      out.push(`<text x="${cx}" y="${y(0) - 8}" text-anchor="middle" font-weight="bold" fill="#c00">FAILED</text>`)
    } else {
      const by = y(bar.value)
      out.push(`<rect x="${x.toFixed(1)}" y="${by.toFixed(1)}" width="${barW.toFixed(1)}" height="${(y(0) - by).toFixed(1)}" fill="${color}"/>`)
      if (bar.min !== undefined && bar.max !== undefined && bar.max > bar.min) {
        out.push(`<line x1="${cx}" x2="${cx}" y1="${y(bar.max).toFixed(1)}" y2="${y(bar.min).toFixed(1)}" stroke="#222" stroke-width="1.5"/>`)
        for (const v of [bar.min, bar.max]) out.push(`<line x1="${cx - 6}" x2="${cx + 6}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#222" stroke-width="1.5"/>`)
      }
      const labelY = y(Math.max(bar.value, bar.max ?? 0, bar.marker?.value ?? 0)) - 8
      out.push(`<text x="${cx}" y="${labelY.toFixed(1)}" text-anchor="middle" fill="#222" font-weight="bold">${escapeXml(formatNumber(bar.value))}</text>`)
    }
    if (bar.marker !== undefined && Number.isFinite(bar.marker.value)) {
      const my = y(bar.marker.value).toFixed(1)
      out.push(`<line x1="${(x - 10).toFixed(1)}" x2="${(x + barW + 10).toFixed(1)}" y1="${my}" y2="${my}" stroke="#b3261e" stroke-width="3"/>`)
      out.push(`<text x="${(x + barW + 12).toFixed(1)}" y="${my}" dy="4" fill="#b3261e" font-size="11">${escapeXml(`${bar.marker.label} ${formatNumber(bar.marker.value)}`)}</text>`)
    }
    out.push(`<text x="${cx}" y="${MARGIN.top + plotH + 20}" text-anchor="middle" fill="#222">${escapeXml(bar.label)}</text>`)
  })
  for (const line of chart.lines ?? []) {
    const above = offScale(line.value)
    const ly = (above ? MARGIN.top - 6 : y(line.value)).toFixed(1)
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${ly}" y2="${ly}" stroke="#555" stroke-width="2" stroke-dasharray="7 5"/>`)
    out.push(`<text x="${MARGIN.left + plotW + 8}" y="${ly}" dy="4" fill="#333">${escapeXml(`${line.label} ${formatNumber(line.value)}${above ? ' ↑ off scale' : ''}`)}</text>`)
  }
  out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${y(0)}" y2="${y(0)}" stroke="#222"/>`)
  // Legend
  const legendY = HEIGHT - 14
  let legendX = MARGIN.left
  for (const entry of chart.legend ?? DEFAULT_LEGEND) {
    if (entry.kind === 'box') {
      out.push(`<rect x="${legendX}" y="${legendY - 10}" width="12" height="12" fill="${entry.color}"/>`)
      legendX += 18
    } else {
      const dash = entry.kind === 'dash' ? ' stroke-dasharray="7 5"' : ''
      out.push(`<line x1="${legendX}" x2="${legendX + 24}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${entry.color}" stroke-width="${entry.kind === 'dash' ? 2 : 3}"${dash}/>`)
      legendX += 30
    }
    out.push(`<text x="${legendX}" y="${legendY}" fill="#333" font-size="11">${escapeXml(entry.label)}</text>`)
    legendX += Math.ceil(entry.label.length * LEGEND_CHAR_PX) + 16
  }
  out.push('</svg>')
  return out.join('\n') + '\n'
}
